"""Entra ID stand-in: the client-credentials token endpoint, discovery documents, token checks.

Tokens are opaque random strings remembered with their audience, expiry and client. They
survive ``reset`` (clients keep cached tokens across tests) as long as their client exists.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from reconciler.sim.protocol import ApiError, Request, Response
from reconciler.sim.world import ARM_RESOURCE, DEVOPS_RESOURCE, World

TOKEN_LIFETIME_S = 3600


@dataclass(frozen=True, slots=True)
class Token:
    audience: str
    expires: float
    client_id: str


class TokenStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}

    def issue(self, audience: str, client_id: str, now: float) -> str:
        value = secrets.token_urlsafe(32)
        with self._lock:
            if len(self._tokens) > 50_000:  # forget expired ones now and then
                self._tokens = {k: t for k, t in self._tokens.items() if t.expires > now}
            self._tokens[value] = Token(audience, now + TOKEN_LIFETIME_S, client_id)
        return value

    def get(self, value: str) -> Token | None:
        with self._lock:
            return self._tokens.get(value)

    def expire(self, value: str | None = None, now: float = 0.0) -> None:
        """Let one token (or every token) expire now: clients must fetch new ones."""
        with self._lock:
            for key in [value] if value is not None else list(self._tokens):
                token = self._tokens.get(key)
                if token is not None:
                    self._tokens[key] = Token(token.audience, now, token.client_id)


def _aad_error(status: int, error: str, code: int, description: str) -> ApiError:
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {description}",
        "error_codes": [code],
        "timestamp": "",
        "trace_id": secrets.token_hex(16),
        "correlation_id": secrets.token_hex(16),
    }
    return ApiError(Response(status, body))


def discovery(req: Request, world: World, tenant: str) -> Response:
    base = f"{req.base_url}/{tenant}"
    return Response(
        200,
        {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{req.base_url}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        },
    )


def instance_discovery(req: Request) -> Response:
    host = req.base_url.split("://", 1)[-1]
    return Response(
        200,
        {
            "tenant_discovery_endpoint": f"{req.base_url}/common/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        },
    )


def issue_token(req: Request, world: World, store: TokenStore, tenant: str) -> Response:
    form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
    client_id = form.get("client_id", "")
    secret = form.get("client_secret", "")
    auth = req.headers.get("authorization", "")
    if auth.lower().startswith("basic "):  # client_secret_basic
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
    if tenant.lower() not in (world.tenant_id.lower(), "organizations"):
        raise _aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
    if form.get("grant_type") != "client_credentials":
        raise _aad_error(
            400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
        )
    client = world.clients.get(client_id.lower())
    if client is None:
        raise _aad_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{world.tenant_id}'.",
        )
    if not secrets.compare_digest(client.secret, secret):
        raise _aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
    scopes = form.get("scope", "").split()
    resource = next((s for s in scopes if s.endswith("/.default")), "")
    if not resource:
        raise _aad_error(
            400,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
        )
    audience = resource[: -len("/.default")].rstrip("/")
    if audience.lower() not in (ARM_RESOURCE, DEVOPS_RESOURCE, "api://azureadtokenexchange"):
        raise _aad_error(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {audience} was not found in the tenant named {world.tenant_id}.",
        )
    token = store.issue(audience, client.client_id, req.now)
    req.caller = client.client_id
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_S,
        "ext_expires_in": TOKEN_LIFETIME_S,
        "access_token": token,
    }
    return Response(200, body, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})


def bearer(req: Request) -> str | None:
    auth = req.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


def check_arm(req: Request, world: World, store: TokenStore) -> None:
    """Authenticate an ARM request (sets the caller) or raise ARM's 401."""
    value = bearer(req)
    token = store.get(value) if value else None
    problem: tuple[str, str] | None = None
    if value is None:
        problem = (
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )
    elif token is None:
        problem = ("InvalidAuthenticationToken", "The access token is invalid.")
    elif token.expires <= req.now:
        problem = (
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.",
        )
    elif token.audience.lower() != ARM_RESOURCE:
        problem = (
            "InvalidAuthenticationTokenAudience",
            f"The access token has been obtained for wrong audience or resource '{token.audience}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.",
        )
    if problem:
        code, message = problem
        raise ApiError(
            Response(
                401,
                {"error": {"code": code, "message": message}},
                {
                    "WWW-Authenticate": f'Bearer authorization_uri="{req.base_url}/{world.tenant_id}", error="invalid_token", error_description="{message.split(".")[0]}"'
                },
            )
        )
    assert token is not None
    _set_caller(req, world, token.client_id)


def _set_caller(req: Request, world: World, client_id: str) -> None:
    client = world.clients.get(client_id.lower())
    req.client = client
    req.caller = client_id
    req.caller_object_id = client.object_id if client else client_id


_SIGN_IN = b"""<!DOCTYPE html>
<html><head><title>Azure DevOps Services | Sign In</title></head>
<body><p>Sign in to your account to continue to Azure DevOps.</p></body></html>
"""


def check_devops(req: Request, world: World, store: TokenStore) -> None:
    """Authenticate an Azure DevOps request, or answer as the service does: a 203 sign-in page,
    or 401 with TF400813 when the client sent ``X-TFS-FedAuthRedirect: Suppress`` (or PATCHes)."""
    value = bearer(req)
    if value is not None:
        token = store.get(value)
        if (
            token is not None
            and token.expires > req.now
            and token.audience.lower() == DEVOPS_RESOURCE
        ):
            _set_caller(req, world, token.client_id)
            return
    auth = req.headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            _, _, pat = base64.b64decode(auth[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            pat = ""
        if pat and pat in world.pats:
            req.caller = f"pat:{world.pats[pat]}"
            req.caller_object_id = req.caller
            return
    headers = {
        "WWW-Authenticate": f'Bearer authorization_uri=https://login.microsoftonline.com/{world.tenant_id}, Basic realm="{req.base_url}/"'
    }
    if req.headers.get("x-tfs-fedauthredirect", "").lower() == "suppress" or req.method == "PATCH":
        from reconciler.sim.protocol import ado_body

        raise ApiError(
            Response(
                401,
                ado_body(
                    "TF400813: The user '' is not authorized to access this resource.",
                    "UnauthorizedRequestException",
                ),
                headers,
            )
        )
    raise ApiError(Response(203, _SIGN_IN, {}, content_type="text/html; charset=utf-8"))
