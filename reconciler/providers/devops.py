"""Azure DevOps REST: organisation data, projects, pipelines, service endpoints, pipeline
permissions and the audit log, over ``requests``.

Every method returns the parsed JSON and raises only ``errors.py`` types. Azure DevOps answers
bad credentials with a 203 and an HTML sign-in page: that is an ``AuthError``, never a JSON
parse crash. ``X-TFS-FedAuthRedirect: Suppress`` asks for a 401 instead where it can.
"""

from __future__ import annotations

import contextlib
import json
import threading
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode

import requests

from reconciler.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    PermanentError,
    ProviderError,
    TransientError,
)
from reconciler.providers.auth import DevOpsAuth
from reconciler.providers.http import Retry, once, retry_after
from reconciler.providers.rest import Response, Transport, request_line
from reconciler.providers.target import Target

if TYPE_CHECKING:
    from collections.abc import Mapping

API_VERSION: Final = "7.1"
# connectionData is a preview-only resource: the real service refuses a plain "7.1"
CONNECTION_DATA_API_VERSION: Final = "7.1-preview"
PIPELINE_PERMISSIONS_API_VERSION: Final = "7.1-preview.1"
# the profile resource is preview-only in 7.1 [doc: rest/api/azure/devops/profile/profiles/get]
PROFILE_API_VERSION: Final = "7.1-preview.3"
# the audit log is preview-only [spec: vsts-rest-api-specs specification/audit/7.1/audit.json]
AUDIT_API_VERSION: Final = "7.1-preview.1"
DUPLICATE_CONNECTION: Final = "DuplicateServiceConnectionException"
# The in-place conversion: not in the REST reference; the evidence and the chosen form are in
# docs/research/convert-authentication-scheme.md. Everything about it is in
# DevOpsClient.convert_authentication_scheme, so a correction is one change.
CONVERT_OPERATION: Final = "ConvertAuthenticationScheme"
CONVERT_API_VERSION: Final = API_VERSION
CONVERTING_STATUS: Final = "converting_scheme"
_DELETE_REFUSED_TEXT: Final = "cannot delete this service connection while federated credentials"
_MAX_PAGES: Final = 1000


class AuditLogUnavailable(PermanentError):
    """The organisation's audit log cannot be read: no audit service for this target
    (``NoAuditService``), the caller lacks "View audit log" (``AuditLogForbidden``, HTTP 401 or
    403), or the organisation or its audit service is not found (``AuditLogNotFound``, 404;
    auditing needs an organisation backed by Microsoft Entra ID). A reader falls back to
    reading in full and says why (``str(error)``)."""


def is_delete_refused(exc: BaseException) -> bool:
    """Azure DevOps refuses to delete a workload identity connection while a federated
    credential for it exists; the refusal outlives the credential for a moment."""
    return isinstance(exc, ProviderError) and _DELETE_REFUSED_TEXT in str(exc).lower()


class DevOpsClient:
    def __init__(
        self,
        target: Target,
        auth: DevOpsAuth,
        *,
        session: requests.Session,
        timeout: tuple[float, float] = (15.0, 60.0),
        slots: threading.BoundedSemaphore | None = None,
    ) -> None:
        self._base = target.devops_url.rstrip("/")
        self._vssps = target.vssps_url.rstrip("/")
        self._audit = target.audit_url.rstrip("/")
        # requests in flight, shared with the other clients of the run (see connect)
        self._slots: AbstractContextManager[Any] = slots or contextlib.nullcontext()
        self._auth = auth
        self._session = session
        self._timeout = timeout
        self._verify: str | bool = target.ca_bundle or True
        # the shared session's pools without its per-request environment lookups (rest.py)
        self._rest = Transport(
            session, verify=self._verify, timeout=timeout, service="Azure DevOps"
        )

    # -- plumbing ------------------------------------------------------------------------

    def _url(self, org: str, path: str, *, project: str | None = None, item: str = "") -> str:
        """``{base}/{org}[/{project}]/{path}[/{item}]`` with the names percent-encoded."""
        url = f"{self._base}/{quote(org, safe='')}"
        if project is not None:
            url += f"/{quote(project, safe='')}"
        url += f"/{path}"
        if item:
            url += f"/{quote(item, safe='')}"
        return url

    def _send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        api_version: str = API_VERSION,
    ) -> Response:
        query = {"api-version": api_version, **(params or {})}
        data = json.dumps(body).encode() if body is not None else None
        response = self._request(method, url, what=what, query=query, data=data)
        try:
            _check(response, what)
        except ProviderError as exc:
            exc.request = request_line(method, url)
            raise
        return response

    def _request(
        self, method: str, url: str, *, what: str, query: Mapping[str, str], data: bytes | None
    ) -> Response:
        headers = {
            # checked against the target's Azure DevOps hosts before any token is fetched
            "Authorization": self._auth.header(url),
            "Accept": "application/json",
            "X-TFS-FedAuthRedirect": "Suppress",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        with self._slots:
            return self._rest.request(
                method, f"{url}?{urlencode(query)}", headers=headers, body=data, what=what
            )

    def _json(self, method: str, url: str, *, what: str, **kwargs: Any) -> Any:
        response = self._send(method, url, what=what, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise PermanentError(
                f"Azure DevOps sent a response that is not JSON while {what} "
                f"(HTTP {response.status_code}, {response.headers.get('Content-Type', '?')})",
                code="InvalidResponse",
                status=response.status_code,
            ) from None

    def _list_paged(
        self,
        url: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        retry: Retry = once,
    ) -> list[dict[str, Any]]:
        """A ``{count, value}`` list, following ``x-ms-continuationtoken`` page by page."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(_MAX_PAGES):
            query = dict(params or {})
            if token:
                query["continuationToken"] = token
            response = retry(partial(self._send, "GET", url, what=what, params=query))
            body = _parse(response, what)
            if isinstance(body, dict):
                items.extend(body.get("value") or [])
            next_token = response.headers.get("x-ms-continuationtoken")
            if not next_token or next_token == token:
                return items
            token = next_token
        raise PermanentError(f"too many pages while {what}", code="InvalidResponse")

    # -- organisation, projects, pipelines -------------------------------------------------

    def connection_data(self, org: str) -> dict[str, Any]:
        """``instanceId`` is the organisation id (the vstoken issuer names it)."""
        what = f"reading organisation {org}"
        body = self._json(
            "GET",
            self._url(org, "_apis/connectionData"),
            what=what,
            api_version=CONNECTION_DATA_API_VERSION,
        )
        if not isinstance(body, dict) or not body.get("instanceId"):
            raise PermanentError(f"{what}: no instanceId in connectionData", code="InvalidResponse")
        return body

    def list_projects(self, org: str, *, retry: Retry = once) -> list[dict[str, Any]]:
        return self._list_paged(
            self._url(org, "_apis/projects"), what=f"listing projects of {org}", retry=retry
        )

    def list_pipelines(
        self, org: str, project: str, *, retry: Retry = once
    ) -> list[dict[str, Any]]:
        return self._list_paged(
            self._url(org, "_apis/pipelines", project=project),
            what=f"listing pipelines of {org}/{project}",
            retry=retry,
        )

    # -- the audit log (auditservice.dev.azure.com) ----------------------------------------

    def list_audit_log(
        self,
        org: str,
        since: datetime,
        until: datetime | None = None,
        *,
        batch_size: int = 1000,
        retry: Retry = once,
    ) -> list[dict[str, Any]]:
        """The organisation's audit entries with ``since <= timestamp <= until``, newest first,
        every page.

        ``GET {audit}/{org}/_apis/audit/auditlog?startTime=&endTime=&batchSize=
        &continuationToken=&skipAggregation=true&api-version=7.1-preview.1`` [doc: learn.
        microsoft.com/rest/api/azure/devops/audit/audit-log/query; spec: audit/7.1/audit.json;
        estate-and-ci.md §4], following ``continuationToken`` while ``hasMore``; each page is
        retried on its own. Times are sent as ISO 8601 UTC (``until`` defaults to the
        service's now); ``batch_size`` entries a page.

        Each entry is a ``DecoratedAuditLogEntry`` dict: ``id``, ``timestamp`` (ISO 8601),
        ``actionId`` (``Library.ServiceConnectionCreated|Modified|Deleted|Shared...``,
        ``Pipelines.ResourceAuthorizedForPipeline``...), ``data`` (``ConnectionId``,
        ``ConnectionName``, ``ProjectId``, ``ResourceId``, ``PipelineId``... by action), the
        actor (``actorDisplayName``, ``actorUPN`` for users, ``actorClientId`` for service
        principals, ``actorUserId``), ``projectId``, ``scopeId`` (the organisation id) and
        ``details``. Reading the log is itself audited (``AuditLog.AccessLog``). Entries are
        kept 90 days and exist only for times the organisation's "Log Audit Events" policy was
        on (off by default): an empty answer does not prove that nothing changed.

        Raises ``AuditLogUnavailable`` when the log cannot be read (see there), and the
        project's other errors for the rest."""
        if not self._audit:
            raise AuditLogUnavailable(
                "this target names no Azure DevOps audit service (audit_url), so the audit log "
                "cannot be read",
                code="NoAuditService",
            )
        what = f"reading the audit log of {org}"
        url = f"{self._audit}/{quote(org, safe='')}/_apis/audit/auditlog"
        params = {
            "startTime": _audit_time(since),
            "batchSize": str(batch_size),
            "skipAggregation": "true",
        }
        if until is not None:
            params["endTime"] = _audit_time(until)
        entries: list[dict[str, Any]] = []
        token = ""
        for _ in range(_MAX_PAGES):
            query = dict(params, continuationToken=token) if token else params
            try:
                response = retry(
                    partial(
                        self._send,
                        "GET",
                        url,
                        what=what,
                        params=query,
                        api_version=AUDIT_API_VERSION,
                    )
                )
            except ProviderError as exc:
                raise _audit_unavailable(exc, org) from exc
            body = _expect_object(_parse(response, what), what)
            page = body.get("decoratedAuditLogEntries") or []
            entries.extend(e for e in page if isinstance(e, dict))
            next_token = str(body.get("continuationToken") or "")
            if not body.get("hasMore") or not next_token or next_token == token:
                return entries
            token = next_token
        raise PermanentError(f"too many pages while {what}", code="InvalidResponse")

    # -- organisations the caller belongs to (app.vssps.visualstudio.com) ------------------

    def list_member_organizations(self) -> list[dict[str, Any]]:
        """Every organisation the signed-in identity is a member of, as
        ``{"accountId", "accountName", ...}``: its profile id from
        ``GET {vssps}/_apis/profile/profiles/me``, then ``GET {vssps}/_apis/accounts?memberId=``
        [spec: apispecs/devops/account/7.1; azure-contracts.md §3.4]. Two requests.

        Raises ``PermanentError`` (code ``NoVsspsUrl``) when the target names no such host."""
        if not self._vssps:
            raise PermanentError(
                "the target names no Azure DevOps accounts host (vssps_url in the connection "
                "file), so organisations cannot be listed",
                code="NoVsspsUrl",
            )
        what = "reading the signed-in identity's Azure DevOps profile"
        profile = self._json(
            "GET",
            f"{self._vssps}/_apis/profile/profiles/me",
            what=what,
            api_version=PROFILE_API_VERSION,
        )
        member = profile.get("id") if isinstance(profile, dict) else None
        if not member:
            raise PermanentError(f"{what}: no id in the profile", code="InvalidResponse")
        what = "listing the Azure DevOps organisations the signed-in identity belongs to"
        body = self._json(
            "GET", f"{self._vssps}/_apis/accounts", what=what, params={"memberId": str(member)}
        )
        if not isinstance(body, dict):
            raise PermanentError(f"{what}: the answer is not an object", code="InvalidResponse")
        return [a for a in body.get("value") or [] if isinstance(a, dict)]

    # -- service endpoints -----------------------------------------------------------------

    def list_endpoints(
        self, org: str, project: str, *, names: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The project's azurerm connections, including those not ready yet or failed."""
        params = {"type": "azurerm", "includeFailed": "true"}
        if names:
            params["endpointNames"] = ",".join(names)
        body = self._json(
            "GET",
            self._url(org, "_apis/serviceendpoint/endpoints", project=project),
            what=f"listing service connections of {org}/{project}",
            params=params,
        )
        return list(body.get("value") or []) if isinstance(body, dict) else []

    def get_endpoint(self, org: str, project: str, endpoint_id: str) -> dict[str, Any]:
        body = self._json(
            "GET",
            self._url(org, "_apis/serviceendpoint/endpoints", project=project, item=endpoint_id),
            what=f"reading service connection {endpoint_id}",
        )
        if body is None:
            # the service answers an unknown id with 200 and a null body
            raise NotFoundError(
                f"service connection {endpoint_id} does not exist in {org}/{project}",
                code="ServiceEndpointNotFound",
                status=200,
            )
        if not isinstance(body, dict):
            raise PermanentError("unexpected service connection body", code="InvalidResponse")
        return body

    def create_endpoint(self, org: str, body: dict[str, Any]) -> dict[str, Any]:
        result = self._json(
            "POST",
            self._url(org, "_apis/serviceendpoint/endpoints"),
            what=f"creating service connection {body.get('name')}",
            body=body,
        )
        return _expect_object(result, "created service connection")

    def update_endpoint(self, org: str, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT of the whole object; the id (and with it pipeline permissions) is kept."""
        result = self._json(
            "PUT",
            self._url(org, "_apis/serviceendpoint/endpoints", item=endpoint_id),
            what=f"updating service connection {body.get('name') or endpoint_id}",
            body=body,
        )
        return _expect_object(result, "updated service connection")

    def convert_authentication_scheme(
        self,
        org: str,
        project: str,
        endpoint: Mapping[str, Any],
        *,
        issuer_type: str | None = None,
    ) -> dict[str, Any]:
        """Convert a connection in place, keeping its id, project references and pipeline
        permissions; returns the connection as the service answers.

        ``endpoint`` is the connection as read (``get_endpoint``/``list_endpoints``); ``project``
        (name or id) must be the project it was created in, whose reference is sent.

        - ``issuer_type=None``: a secret-based ``ServicePrincipal`` connection becomes
          ``WorkloadIdentityFederation``; the service drops the secret, generates the issuer
          and subject, and sets ``data.revertSchemeDeadline`` (a revert is possible until then).
        - ``issuer_type="EntraID"``: a ``WorkloadIdentityFederation`` connection on the Azure
          DevOps issuer moves to the Microsoft Entra issuer (new issuer and subject).

        Request: ``PUT {org}/{project}/_apis/serviceendpoint/endpoints/{id}
        ?operation=ConvertAuthenticationScheme&api-version=7.1`` with the minimal body
        ``{"id", "type", "authorization": {"scheme"[, "parameters":
        {"workloadIdentityFederationIssuerType": "EntraID"}]},
        "serviceEndpointProjectReferences": [the project's reference as read]}``: the service
        refuses a conversion body whose other properties differ from the connection's, so
        sending less is safest. Evidence [docs/research/convert-authentication-scheme.md]: the
        service's decompiled ``ConvertServiceEndpointForCollection`` (Azure DevOps Server 2022),
        Microsoft's conversion scripts (geekzter/azure-identity-scripts
        ``convert_azurerm_service_connection_to_oidc*.ps1``), petitess/powershell
        ``Invoke-RestMethod05.ps1``. The ``issuer_type`` form is a hypothesis: no public source
        shows the portal's request; ``tests/live/test_live_convert.py`` checks it.

        The service first checks that the identity can sign in with the new issuer and subject;
        when it cannot yet (a managed identity without the matching federated credential) it
        answers 202 with the connection unchanged and ``operationStatus`` ``{"state":
        "InProgress", "statusMessage": "converting_scheme"}`` (see ``conversion_pending``):
        write the credential, then call again. Not idempotent: after a ``TransientError`` read
        the connection before repeating (a second conversion of a converted connection is a
        400). Errors: ``PermanentError`` with the service's ``typeKey`` as code (400
        ``ArgumentException`` for a refused form, ``InvalidServiceEndpointRequestException``),
        ``NotFoundError`` (404 ``ServiceEndpointNotFoundException``), ``AuthError``,
        ``TransientError`` (429, 5xx), as every call here."""
        endpoint_id = str(endpoint.get("id") or "")
        if not endpoint_id:
            raise PermanentError("the service connection to convert has no id", code="NoId")
        wanted = project.lower()
        references = [
            ref
            for ref in endpoint.get("serviceEndpointProjectReferences") or []
            if isinstance(ref, dict)
            and wanted
            in (
                str((ref.get("projectReference") or {}).get("id") or "").lower(),
                str((ref.get("projectReference") or {}).get("name") or "").lower(),
            )
        ]
        if not references:
            raise PermanentError(
                f"service connection {endpoint.get('name') or endpoint_id} has no reference to "
                f"project {project}",
                code="ProjectReferenceMissing",
            )
        authorization: dict[str, Any] = {"scheme": "WorkloadIdentityFederation"}
        if issuer_type is not None:
            authorization["parameters"] = {"workloadIdentityFederationIssuerType": issuer_type}
        body = {
            "id": endpoint_id,
            "type": endpoint.get("type") or "azurerm",
            "authorization": authorization,
            "serviceEndpointProjectReferences": references[:1],
        }
        result = self._json(
            "PUT",
            self._url(org, "_apis/serviceendpoint/endpoints", project=project, item=endpoint_id),
            what=f"converting service connection {endpoint.get('name') or endpoint_id}",
            params={"operation": CONVERT_OPERATION},
            body=body,
            api_version=CONVERT_API_VERSION,
        )
        return _expect_object(result, "converted service connection")

    def share_endpoint(self, org: str, endpoint_id: str, references: list[dict[str, Any]]) -> None:
        self._send(
            "PATCH",
            self._url(org, "_apis/serviceendpoint/endpoints", item=endpoint_id),
            what=f"sharing service connection {endpoint_id}",
            body=references,
        )

    def delete_endpoint(self, org: str, endpoint_id: str, project_ids: list[str]) -> None:
        """Removes the connection from these projects; it is gone once the last one goes."""
        self._send(
            "DELETE",
            self._url(org, "_apis/serviceendpoint/endpoints", item=endpoint_id),
            what=f"deleting service connection {endpoint_id}",
            params={"projectIds": ",".join(project_ids)},
        )

    # -- pipeline permissions --------------------------------------------------------------

    def get_pipeline_permissions(self, org: str, project: str, endpoint_id: str) -> dict[str, Any]:
        body = self._json(
            "GET",
            self._url(
                org,
                "_apis/pipelines/pipelinePermissions/endpoint",
                project=project,
                item=endpoint_id,
            ),
            what=f"reading pipeline permissions of service connection {endpoint_id}",
            api_version=PIPELINE_PERMISSIONS_API_VERSION,
        )
        return body if isinstance(body, dict) else {}

    def update_pipeline_permissions(
        self, org: str, project: str, endpoint_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        result = self._json(
            "PATCH",
            self._url(
                org,
                "_apis/pipelines/pipelinePermissions/endpoint",
                project=project,
                item=endpoint_id,
            ),
            what=f"updating pipeline permissions of service connection {endpoint_id}",
            body=body,
            api_version=PIPELINE_PERMISSIONS_API_VERSION,
        )
        return result if isinstance(result, dict) else {}


def conversion_pending(endpoint: Mapping[str, Any]) -> bool:
    """Whether a conversion answer (or a later read) says the service is still waiting to
    sign in with the new issuer and subject (``operationStatus`` ``converting_scheme``)."""
    status = endpoint.get("operationStatus")
    return isinstance(status, dict) and str(status.get("statusMessage") or "") == CONVERTING_STATUS


# what the checks below read: the transport's answer, or a requests.Response (tests)
_Answer = Response | requests.Response


def _audit_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"a time without a time zone is ambiguous: {moment.isoformat()}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _audit_unavailable(exc: ProviderError, org: str) -> ProviderError:
    """A refusal that means "this log cannot be read here" as ``AuditLogUnavailable``; other
    errors (throttling, outages) stay what they are."""
    if exc.status in (401, 403) or isinstance(exc, AuthError):
        reason = (
            f'the audit log of {org} cannot be read: the caller lacks the "View audit log" '
            f"permission or is not a member ({exc})"
        )
        return AuditLogUnavailable(reason, code="AuditLogForbidden", status=exc.status)
    if exc.status == 404:
        return AuditLogUnavailable(
            f"the audit log of {org} cannot be read: the organisation or its audit service was "
            f"not found (auditing needs an organisation backed by Microsoft Entra ID) ({exc})",
            code="AuditLogNotFound",
            status=exc.status,
        )
    return exc


def _expect_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise PermanentError(f"unexpected {what} body from Azure DevOps", code="InvalidResponse")
    return body


def _parse(response: _Answer, what: str) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise PermanentError(
            f"Azure DevOps sent a response that is not JSON while {what}",
            code="InvalidResponse",
            status=response.status_code,
        ) from None


def _is_html(response: _Answer) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    if "text/html" in content_type:
        return True
    return response.content[:200].lstrip().lower().startswith((b"<!doctype html", b"<html"))


def _error_body(response: _Answer) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", response.reason or f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return "", response.reason or f"HTTP {response.status_code}"
    code = str(body.get("typeKey") or "")
    message = str(body.get("message") or response.reason or f"HTTP {response.status_code}")
    return code, message


def _check(response: _Answer, what: str) -> None:
    status = response.status_code
    if status == 203 or (_is_html(response) and status < 500):
        raise AuthError(
            f"Azure DevOps did not accept the credentials while {what}: it answered with a "
            f"sign-in page (HTTP {status}). The identity may not be a member of the "
            "organisation, or the token is for the wrong audience or expired.",
            code="SignInPage",
            status=status,
        )
    if status < 400:
        return
    code, message = _error_body(response)
    if status == 401:
        raise AuthError(
            f"Azure DevOps rejected the credentials while {what}: {message}",
            code=code or "Unauthorized",
            status=status,
        )
    if code == DUPLICATE_CONNECTION:
        # some deployments send 500, others 409: the type is what matters
        raise ConflictError(message, code=code, status=status)
    if status == 429 or status >= 500:
        raise TransientError(
            message,
            code=code or f"HTTP{status}",
            status=status,
            delay=retry_after(dict(response.headers)),
        )
    if status == 404:
        raise NotFoundError(message, code=code or "NotFound", status=status)
    if status == 409:
        raise ConflictError(message, code=code or "Conflict", status=status)
    raise PermanentError(message, code=code or f"HTTP{status}", status=status)
