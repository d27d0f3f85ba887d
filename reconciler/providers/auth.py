"""Credentials: which azure-identity credential to use, and the Azure DevOps authorization.

Tokens never leave this module except inside an ``Authorization`` header: they are never
printed, logged or put in an error message.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from reconciler.errors import AuthError, ConfigError
from reconciler.model import DEVOPS_RESOURCE_ID
from reconciler.providers.target import (
    AZURE,
    CLOUDS,
    Service,
    Target,
    check_token_destination,
    is_devops_host,
)

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential

ARM_SCOPE: Final = "https://management.azure.com/.default"
DEVOPS_SCOPE: Final = f"{DEVOPS_RESOURCE_ID}/.default"
PAT_ENV: Final = "AZURE_DEVOPS_EXT_PAT"
AUTH_MODES: Final = ("auto", "pipelines", "cli", "environment", "managed-identity", "default")
# AzurePipelinesCredential needs all of these (set by AzureCLI@2 and by mapping System.AccessToken)
PIPELINE_VARS: Final = (
    "SYSTEM_OIDCREQUESTURI",
    "AZURESUBSCRIPTION_CLIENT_ID",
    "AZURESUBSCRIPTION_TENANT_ID",
    "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID",
    "SYSTEM_ACCESSTOKEN",
)
# refresh a cached token this long before it expires
_REFRESH_MARGIN: Final = 300.0


def arm_scope(target: Target) -> str:
    """The ARM token scope: the cloud's management endpoint; the public one for a connection
    file (the simulator answers as the public cloud does)."""
    return f"{CLOUDS[target.cloud].arm_url}/.default" if target.is_cloud else ARM_SCOPE


def make_credential(
    target: Target | None, mode: str = "auto", *, environ: Mapping[str, str] | None = None
) -> CachedCredential:
    """The credential for ``target`` (None: the public cloud), bound to it.

    By the target's kind, never its name: a ``FILE`` target gets only its own client secret
    credential, against its own authority (``--auth`` other than ``auto`` is a ``ConfigError``:
    it chooses among real-cloud credentials, which a connection file never gets); a ``CLOUD``
    target gets the real credential ``mode`` picks, against that cloud's login host."""
    from azure.identity import (
        AzureCliCredential,
        AzurePipelinesCredential,
        ChainedTokenCredential,
        ClientSecretCredential,
        DefaultAzureCredential,
        EnvironmentCredential,
        ManagedIdentityCredential,
    )

    env = os.environ if environ is None else environ
    if mode not in AUTH_MODES:
        raise ConfigError(f"unknown --auth mode {mode!r}; choose one of {', '.join(AUTH_MODES)}")
    chosen = target or AZURE
    credential: TokenCredential
    if not chosen.is_cloud:
        if mode != "auto":
            raise ConfigError(
                f"--auth {mode} chooses a real Azure credential, and the target "
                f"{chosen.name!r} is a connection file, which only ever signs in with its own "
                "client credentials: drop --auth, or drop the connection file (--target / "
                "$RECONCILER_TARGET) to use the real services"
            )
        # the file's own client, its secret sent only to the file's own authority
        credential = ClientSecretCredential(
            chosen.tenant_id,
            chosen.client_id,
            chosen.client_secret,
            authority=chosen.authority,
            disable_instance_discovery=True,
            connection_verify=chosen.ca_bundle,
        )
    elif mode == "pipelines" or (mode == "auto" and all(env.get(v) for v in PIPELINE_VARS)):
        authority = CLOUDS[chosen.cloud].login_host
        missing = [v for v in PIPELINE_VARS if not env.get(v)]
        if missing:
            raise ConfigError(
                "--auth pipelines needs these environment variables: "
                + ", ".join(missing)
                + " (run inside an AzureCLI@2 task and map SYSTEM_ACCESSTOKEN: "
                "$(System.AccessToken))"
            )
        credential = AzurePipelinesCredential(
            tenant_id=env["AZURESUBSCRIPTION_TENANT_ID"],
            client_id=env["AZURESUBSCRIPTION_CLIENT_ID"],
            service_connection_id=env["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"],
            system_access_token=env["SYSTEM_ACCESSTOKEN"],
            authority=authority,
        )
    elif mode == "cli":
        # the Azure CLI signs in to the cloud `az cloud set` chose
        credential = AzureCliCredential()
    elif mode == "environment":
        credential = EnvironmentCredential(authority=CLOUDS[chosen.cloud].login_host)
    elif mode == "managed-identity":
        credential = ManagedIdentityCredential(client_id=env.get("AZURE_CLIENT_ID") or None)
    elif mode == "default":
        credential = DefaultAzureCredential(authority=CLOUDS[chosen.cloud].login_host)
    else:
        credential = ChainedTokenCredential(
            AzureCliCredential(),
            EnvironmentCredential(authority=CLOUDS[chosen.cloud].login_host),
            ManagedIdentityCredential(client_id=env.get("AZURE_CLIENT_ID") or None),
        )
    return CachedCredential(credential, target=chosen)


class CachedCredential:
    """Shares one token per scope between every client of a run.

    Each management client caches its own token, and ``AzureCliCredential`` does not cache at
    all (one ``az`` process per request for a token), so without this a run would ask once per
    subscription and client type.
    """

    def __init__(
        self,
        inner: TokenCredential,
        *,
        target: Target | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._inner = inner
        # the target this credential's tokens belong to (clients refuse to send them elsewhere)
        self.target = target
        self._now = now
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], AccessToken] = {}

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        if claims or tenant_id:
            # a claims challenge (CAE) or another tenant: always ask afresh
            return self._inner.get_token(
                *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
            )
        key = tuple(sorted(scopes))
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.expires_on - self._now() > _REFRESH_MARGIN:
                return token
            token = self._inner.get_token(*scopes, enable_cae=enable_cae, **kwargs)
            self._tokens[key] = token
            return token

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class DevOpsAuth:
    """The ``Authorization`` header for Azure DevOps: an Entra token from the same credential,
    or, only when no Entra token can be had, the PAT in ``$AZURE_DEVOPS_EXT_PAT``.

    ``target`` is where the credential's tokens belong: every header is for one URL, checked
    by ``check_token_destination`` before a token is fetched. The PAT fallback happens only for
    a ``CLOUD`` target and only for an ``https://`` URL on ``dev.azure.com`` or
    ``*.visualstudio.com``; otherwise the Entra failure is the error."""

    def __init__(
        self,
        credential: TokenCredential,
        *,
        target: Target,
        environ: Mapping[str, str] | None = None,
        warn: Callable[[str], None] = _warn,
    ) -> None:
        bound = getattr(credential, "target", None)
        if bound is not None and bound != target:
            raise ConfigError(
                f"a credential for {bound.name} cannot be used for Azure DevOps at {target.name}"
            )
        self._credential = credential
        self._target = target
        self._env = os.environ if environ is None else environ
        self._warn = warn
        self._lock = threading.Lock()
        self._pat_header: str | None = None

    @property
    def using_pat(self) -> bool:
        return self._pat_header is not None

    def header(self, url: str) -> str:
        """The ``Authorization`` value for a request to ``url``; raises ``PermanentError``
        (``TokenRefused``) when no token of this target may go there, ``AuthError`` when none
        can be had."""
        check_token_destination(self._target, Service.DEVOPS, url)
        pat_allowed = self._target.is_cloud and is_devops_host(url)
        if self._pat_header is not None and pat_allowed:
            return self._pat_header
        try:
            token = self._credential.get_token(DEVOPS_SCOPE)
        except Exception as exc:
            reason = describe_credential_error(exc)
            pat = self._env.get(PAT_ENV) if pat_allowed else None
            if not pat:
                raise AuthError(
                    f"cannot get an Entra token for Azure DevOps ({DEVOPS_RESOURCE_ID}): {reason}",
                    status=401,
                ) from None
            with self._lock:
                if self._pat_header is None:
                    self._warn(
                        f"no Entra token for Azure DevOps ({reason}); falling back to the "
                        f"personal access token in {PAT_ENV}. Prefer workload identity: a PAT "
                        "is the secret this setup exists to remove."
                    )
                    raw = base64.b64encode(f":{pat}".encode()).decode("ascii")
                    self._pat_header = f"Basic {raw}"
                return self._pat_header
        return f"Bearer {token.token}"


# what a person can do when no credential signs in (README "Common options")
CREDENTIAL_FIX: Final = (
    "to fix: run `az login` (on a workstation); inside an Azure Pipelines job run in an "
    "AzureCLI@2 task with --auth pipelines and SYSTEM_ACCESSTOKEN mapped; against the local "
    "simulator pass --target FILE (or set RECONCILER_TARGET)"
)
_CREDENTIAL_NAMES: Final = (
    "AzurePipelinesCredential",
    "AzureCliCredential",
    "EnvironmentCredential",
    "ManagedIdentityCredential",
    "DefaultAzureCredential",
    "SharedTokenCacheCredential",
    "AzurePowerShellCredential",
    "AzureDeveloperCliCredential",
    "WorkloadIdentityCredential",
    "VisualStudioCodeCredential",
)


def describe_credential_error(exc: BaseException) -> str:
    """The reason azure-identity gives (its messages hold no token), made short.

    One line for a single credential's failure. A chain's failure (``ChainedTokenCredential``,
    ``DefaultAzureCredential``, the ``--auth auto`` chain) becomes one line per credential
    tried, without the links the SDK repeats after each, then what to do about it. The
    message layout is azure-identity's (``Attempted credentials:`` then a tab-indented
    ``Name: reason`` per credential, azure-identity 1.x).
    """
    message = str(getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip()
    lines = message.splitlines() or [type(exc).__name__]
    tried = [line.strip() for line in lines if line.startswith("\t") and ":" in line]
    if tried:
        shown = "\n".join(f"  {line[:300]}" for line in tried)
        return f"no credential could sign in; tried:\n{shown}\n  {CREDENTIAL_FIX}"
    first = lines[0][:500]
    if first.startswith(_CREDENTIAL_NAMES):
        return f"{first}\n  {CREDENTIAL_FIX}"
    return first


def tenant_from_token(token: str) -> str | None:
    """The ``tid`` claim of a JWT access token (no signature check: only to learn the tenant)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        return None
    tid = claims.get("tid") if isinstance(claims, dict) else None
    return tid if isinstance(tid, str) else None


def discover_tenant(
    target: Target, credential: TokenCredential, *, environ: Mapping[str, str] | None = None
) -> str:
    """The Entra tenant new service connections must name."""
    if target.tenant_id:
        return target.tenant_id
    env = os.environ if environ is None else environ
    for name in ("AZURESUBSCRIPTION_TENANT_ID", "AZURE_TENANT_ID"):
        if env.get(name):
            return env[name]
    try:
        token = credential.get_token(arm_scope(target))
    except Exception as exc:
        raise AuthError(
            f"cannot get an Entra token for Azure Resource Manager: "
            f"{describe_credential_error(exc)}",
            status=401,
        ) from None
    tid = tenant_from_token(token.token)
    if not tid:
        raise ConfigError("cannot tell the Entra tenant: set AZURE_TENANT_ID")
    return tid


# -- whom the run signed in as -----------------------------------------------------------


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT access token, unverified (only to name the caller); {} if opaque."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def describe_sign_in(token: str, target: Target) -> str:
    """One line naming whom a run signed in as and against what; never the token itself.

    From the token's claims where it is a JWT (Entra access tokens are: ``upn`` or
    ``unique_name`` for a user, ``appid``/``azp`` for an application, ``oid`` its object id,
    ``tid`` the tenant; learn.microsoft.com/entra/identity-platform/access-token-claims-reference).
    The simulator's tokens are opaque: its connection file names the client and tenant.
    """
    claims = token_claims(token)
    if not target.is_cloud:
        return (
            f"signed in to the simulator ({target.name}, tenant {target.tenant_id}) "
            f"as application {target.client_id}"
        )
    user = next(
        (str(claims[k]) for k in ("upn", "unique_name", "preferred_username") if claims.get(k)),
        "",
    )
    app = str(claims.get("appid") or claims.get("azp") or "")
    oid = str(claims.get("oid") or "")
    if user:
        who = f"user {user}"
    elif app:
        who = f"application {app}"
    else:
        who = "an unnamed principal"
    if oid:
        who += f" (object id {oid})"
    tenant = str(claims.get("tid") or target.tenant_id or "unknown")
    return f"signed in to {target.name} (tenant {tenant}) as {who}"


class AnnouncedCredential:
    """Wraps the run's credential: on the first token, writes ``describe_sign_in`` once to
    stderr; after a failure, callers queued behind it get the same failure at once for
    ``_FAILURE_MEMORY`` seconds instead of each asking (and failing) again."""

    _FAILURE_MEMORY: Final = 30.0

    def __init__(
        self,
        inner: TokenCredential,
        target: Target,
        *,
        write: Callable[[str], object] | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._target = target
        self._write = write or sys.stderr.write
        self._now = now
        self._lock = threading.Lock()
        self._announced = False
        self._failure: tuple[float, tuple[str, ...], BaseException] | None = None

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        # one caller at a time, as CachedCredential below serialises them anyway: a caller
        # queued behind a failure must see it
        with self._lock:
            failure = self._failure
            recent = failure is not None and self._now() - failure[0] < self._FAILURE_MEMORY
            if (
                failure is not None
                and recent
                and (failure[1] == scopes or _unreachable(failure[2]))
            ):
                raise failure[2]
            try:
                token = self._inner.get_token(*scopes, **kwargs)
            except Exception as exc:
                self._failure = (self._now(), scopes, exc)
                raise
            if not self._announced:
                self._announced = True
                self._write(describe_sign_in(token.token, self._target) + "\n")
            return token

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()


def _unreachable(exc: BaseException) -> bool:
    """The token endpoint itself could not be reached: every scope would fail the same way."""
    text = str(exc).lower()
    return any(s in text for s in ("connection refused", "failed to resolve", "name or service"))


def quiet_sdk_logging() -> None:
    """azure-identity logs every failed attempt, a chain's whole text each time, as warnings:
    the error the run ends with says it once (``describe_credential_error``)."""
    import logging

    logging.getLogger("azure.identity").setLevel(logging.CRITICAL)
