"""Azure Resource Manager: managed identities, federated credentials, role assignments and
role definitions.

Writes go through the official management clients. Reads (the lists a plan makes by the
thousand, and single GETs) go as plain REST GETs over ``rest.Transport`` on the same pool,
with the same token: the clients' pipeline and their model round trip (deserialise, then
serialise back to the REST shape we use) cost 4.4 ms of CPU per call against 0.9 ms, and a
plan never needed the models. So a plan does not import the management clients at all.

Every method returns plain dicts in the REST JSON shape and raises only ``errors.py`` types:
the SDK's exceptions and the REST error bodies are translated here, at the boundary. Nothing
below retries: ``retry.py`` does.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote, urlencode

from reconciler.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    NotFoundError,
    PermanentError,
    ProviderError,
    TransientError,
)
from reconciler.providers.auth import arm_scope, describe_credential_error
from reconciler.providers.http import DEFAULT_DELAY, Retry, once, retry_after
from reconciler.providers.pacing import ARM_THROTTLE_CODES, Pace, Pacer
from reconciler.providers.rest import UNREACHABLE_ATTEMPTS, Response, Transport, request_line
from reconciler.providers.target import Service, Target, check_token_destination

if TYPE_CHECKING:
    import requests
    from azure.core.credentials import TokenCredential

T = TypeVar("T")

CONCURRENT_FIC_WRITES: Final = (
    "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
)
# the authorization client needs some subscription id even for management-group scopes
_NO_SUBSCRIPTION: Final = "00000000-0000-0000-0000-000000000000"
_CONCURRENT_WRITE_DELAY: Final = 0.5
# the api-versions the management clients default to (sdk-notes.md)
MSI_API_VERSION: Final = "2024-11-30"
AUTHZ_API_VERSION: Final = "2022-04-01"
GRAPH_API_VERSION: Final = "2021-03-01"
_MAX_GRAPH_PAGES: Final = 1000
# Microsoft.Resources ResourceGroups_List; any version lists the same names
RESOURCES_API_VERSION: Final = "2021-04-01"
_MSI: Final = "providers/Microsoft.ManagedIdentity/userAssignedIdentities"
# Microsoft.Insights ActivityLogs_List [spec: tests/sim/apispecs/monitor/2015-04-01]
ACTIVITY_LOG_API_VERSION: Final = "2015-04-01"
# what a drift reader needs of each event: who, when, what, on which resource, how it ended
ACTIVITY_LOG_SELECT: Final = (
    "caller",
    "eventTimestamp",
    "submissionTimestamp",
    "operationName",
    "status",
    "resourceId",
    "correlationId",
    "eventDataId",
)
_AUTHZ: Final = "providers/Microsoft.Authorization"


def _raw(pipeline_response: Any, _deserialized: Any, _headers: Any) -> Any:
    """``cls=`` hook: the response body as JSON, not the SDK's model."""
    text = pipeline_response.http_response.text()
    return json.loads(text) if text else None


@functools.cache
def _scoped_policy_class() -> type[Any]:
    """ARM's bearer token policy that first checks the request's URL against the target
    (``check_token_destination``): the management clients attach the token to every request
    they make, including ``nextLink`` pages and long-running operation polls the service names.
    """
    from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

    class ScopedPolicy(ARMChallengeAuthenticationPolicy):
        def __init__(self, target: Target, credential: Any, scope: str) -> None:
            super().__init__(credential, scope)
            self._target = target

        def on_request(self, request: Any) -> None:
            check_token_destination(self._target, Service.ARM, request.http_request.url)
            super().on_request(request)

        def authorize_request(self, request: Any, *scopes: str, **kwargs: Any) -> None:
            check_token_destination(self._target, Service.ARM, request.http_request.url)
            super().authorize_request(request, *scopes, **kwargs)

    return ScopedPolicy


def _scope_path(scope: str) -> str:
    return scope.strip().strip("/")


class ArmClient:
    """One management client per subscription and API, built on first use and cached."""

    def __init__(
        self,
        target: Target,
        credential: TokenCredential,
        *,
        session: requests.Session,
        read_timeout: float = 60.0,
        pacer: Pacer | None = None,
        slots: threading.BoundedSemaphore | None = None,
    ) -> None:
        bound = getattr(credential, "target", None)
        if bound is not None and bound != target:
            raise ConfigError(
                f"a credential for {bound.name} cannot be used for Azure Resource Manager at "
                f"{target.name}"
            )
        self._target = target
        self._scope = arm_scope(target)
        # requests in flight, shared with the other clients of the run (see connect)
        self._slots: AbstractContextManager[Any] = slots or contextlib.nullcontext()
        self._credential = credential
        self._session = session
        self._read_timeout = read_timeout
        self.pacer = pacer or Pacer()
        self._base = target.arm_url.rstrip("/")
        self._rest = Transport(
            session,
            verify=target.ca_bundle or True,
            timeout=(15.0, read_timeout),
            service="Azure Resource Manager",
        )
        self._lock = threading.Lock()
        self._msi: dict[str, Any] = {}
        self._authz: dict[str, Any] = {}
        self._definitions: dict[str, list[dict[str, Any]]] = {}
        self._definition_locks: dict[str, threading.Lock] = {}

    # -- clients -------------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        from azure.core.pipeline.transport import RequestsTransport

        verify: str | bool = self._target.ca_bundle or True
        return {
            "base_url": self._target.arm_url,
            "credential_scopes": [self._scope],
            "authentication_policy": _scoped_policy_class()(
                self._target, self._credential, self._scope
            ),
            # a transport per client over the shared pool; session_owner=False keeps it open
            "transport": RequestsTransport(
                session=self._session, session_owner=False, connection_verify=verify
            ),
            "connection_verify": verify,
            # retry.py is the one retry mechanism
            "retry_total": 0,
            "read_timeout": self._read_timeout,
            "connection_timeout": 15,
        }

    def _msi_client(self, subscription: str) -> Any:
        key = subscription.lower()
        with self._lock:
            client = self._msi.get(key)
            if client is None:
                from azure.mgmt.msi import ManagedServiceIdentityClient

                client = ManagedServiceIdentityClient(
                    self._credential, subscription, **self._client_kwargs()
                )
                self._msi[key] = client
            return client

    def _authz_client(self, subscription: str | None) -> Any:
        key = (subscription or _NO_SUBSCRIPTION).lower()
        with self._lock:
            client = self._authz.get(key)
            if client is None:
                from azure.mgmt.authorization import AuthorizationManagementClient

                client = AuthorizationManagementClient(
                    self._credential, subscription or _NO_SUBSCRIPTION, **self._client_kwargs()
                )
                self._authz[key] = client
            return client

    def _call(self, what: str, fn: Callable[[], T], pace: Pace | None = None) -> T:
        paced = False
        if pace is not None:
            paced = self.pacer.active(pace.op)
            self.pacer.acquire(pace)
        try:
            with self._slots:
                result = fn()
        except ProviderError as exc:
            error = exc
        except Exception as exc:
            error = translate_error(exc, what, endpoint=self._base)
        else:
            if pace is not None:
                self.pacer.admitted(pace)
            return result
        if pace is not None:
            if (
                isinstance(error, TransientError)
                and error.status == 429
                and error.code not in ARM_THROTTLE_CODES
            ):
                self.pacer.throttled(pace, error.delay, paced=paced)
            elif error.status:
                # answered, so let through by the limits (pacing learns from what they admit)
                self.pacer.admitted(pace)
        raise error

    def _url(self, path: str, api_version: str, query: str = "") -> str:
        return f"{self._base}/{path}?api-version={api_version}{query}"

    def _get(self, url: str, what: str) -> Any:
        """One GET, the body parsed; an error status raised as the project's error."""
        check_token_destination(self._target, Service.ARM, url)
        token = self._credential.get_token(self._scope).token
        response = self._rest.request(
            "GET", url, headers={"Authorization": f"Bearer {token}"}, what=what
        )
        if response.status >= 400:
            error = response_error(response, what)
            error.request = request_line("GET", url)
            raise error
        try:
            return response.json()
        except ValueError:
            raise PermanentError(
                f"Azure Resource Manager sent a body that is not JSON while {what}",
                code="InvalidResponse",
                status=response.status,
            ) from None

    def _get_object(self, url: str, what: str, pace: Pace | None = None) -> dict[str, Any]:
        body = self._call(what, partial(self._get, url, what), pace)
        if not isinstance(body, dict):
            raise PermanentError(f"{what}: the answer is not an object", code="InvalidResponse")
        return body

    def _page(self, url: str, what: str) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a list, and the URL of the next (``nextLink``, absolute) or None."""
        body = self._get(url, what)
        if not isinstance(body, dict):
            raise PermanentError(f"{what}: the answer is not a list", code="InvalidResponse")
        return list(body.get("value") or []), body.get("nextLink") or None

    def _paged(
        self,
        what: str,
        url: str,
        pace: Pace | None,
        retry: Retry,
        on_page: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Every page of a list, each page fetched (and retried) on its own.

        ``on_page`` sees each page before the list ends, so that reads depending on it need not
        wait for the last page; but only once the next page has had its first answer: a
        throttled list is how pacing learns that the service is limiting, and reads let loose
        before that would meet the limit as a burst of 429s."""
        items: list[dict[str, Any]] = []
        held: list[list[dict[str, Any]]] = []
        next_url: str | None = url

        def attempt(page_url: str) -> tuple[list[dict[str, Any]], str | None]:
            try:
                return self._call(what, partial(self._page, page_url, what), pace)
            finally:
                if held and on_page is not None:
                    on_page(held.pop())

        while next_url:
            found, next_url = retry(partial(attempt, next_url))
            items.extend(found)
            held.append(found)
        if on_page is not None and held:
            on_page(held.pop())
        return items

    # -- Azure Resource Graph --------------------------------------------------------------

    def _post(self, url: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        """One POST with a JSON body, the answer parsed; an error status raised as ours."""
        check_token_destination(self._target, Service.ARM, url)
        token = self._credential.get_token(self._scope).token
        response = self._rest.request(
            "POST",
            url,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            body=json.dumps(body).encode(),
            what=what,
        )
        if response.status >= 400:
            raise _graph_error(response, what)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise PermanentError(
                f"Azure Resource Graph sent an answer that is not an object while {what}",
                code="InvalidResponse",
                status=response.status,
            )
        return answer

    def query_resource_graph(
        self, query: str, *, what: str, retry: Retry = once
    ) -> list[dict[str, Any]]:
        """Every row of a Resource Graph query over all subscriptions the caller can read.

        ``POST {arm}/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01`` with
        no ``subscriptions`` (the service then covers every subscription the caller can read),
        1,000 rows a page, following ``$skipToken`` [doc: learn.microsoft.com/rest/api/
        azureresourcegraph/resourcegraph/resources/resources; estate-and-ci.md §4]. Each page
        is retried on its own. Raises ``PermanentError`` when the service says the answer is
        truncated (it then covers fewer subscriptions than the caller can read)."""
        url = self._url("providers/Microsoft.ResourceGraph/resources", GRAPH_API_VERSION)
        rows: list[dict[str, Any]] = []
        skip: str | None = None
        for _ in range(_MAX_GRAPH_PAGES):
            options: dict[str, Any] = {"$top": 1000, "resultFormat": "objectArray"}
            if skip:
                options["$skipToken"] = skip
            body = {"query": query, "options": options}
            page = retry(partial(self._call, what, partial(self._post, url, body, what)))
            if str(page.get("resultTruncated", "false")).lower() == "true":
                raise PermanentError(
                    f"Azure Resource Graph truncated its answer while {what}",
                    code="ResultTruncated",
                )
            data = page.get("data")
            if not isinstance(data, list):
                raise PermanentError(
                    f"Azure Resource Graph sent no row list while {what}",
                    code="InvalidResponse",
                )
            rows.extend(r for r in data if isinstance(r, dict))
            skip = page.get("$skipToken") or None
            if not skip:
                return rows
        raise PermanentError(f"too many pages while {what}", code="InvalidResponse")

    # -- the Activity Log ------------------------------------------------------------------

    def list_activity_log(
        self,
        subscription: str,
        since: datetime,
        until: datetime | None = None,
        *,
        resource_provider: str | None = None,
        resource_group: str | None = None,
        resource_uri: str | None = None,
        correlation_id: str | None = None,
        select: Sequence[str] = ACTIVITY_LOG_SELECT,
        retry: Retry = once,
    ) -> list[dict[str, Any]]:
        """The subscription's management events with ``since <= eventTimestamp <= until``,
        every page, newest first as the service sends them.

        ``GET {arm}/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/
        values?api-version=2015-04-01&$filter=...&$select=...`` [doc: learn.microsoft.com/rest/
        api/monitor/activity-logs/list; spec: activityLogs_API.json; estate-and-ci.md §4],
        following ``nextLink``; each page is retried on its own. ``$filter`` is the documented
        grammar: the time window (``until`` defaults to the service's now) and at most one of
        ``resource_provider`` (``Microsoft.ManagedIdentity``), ``resource_group``,
        ``resource_uri`` (one resource's id; its children are other resources) or
        ``correlation_id``; ``ValueError`` for two, for a naive datetime or a quote in a value.

        Each event is an ``EventData`` dict holding the ``select``ed properties, by default
        ``caller`` (a user's UPN, a service principal's id), ``eventTimestamp`` and
        ``submissionTimestamp`` (ISO 8601 UTC; the second is when the event became queryable),
        ``operationName`` (``{"value": "Microsoft.ManagedIdentity/userAssignedIdentities/
        federatedIdentityCredentials/write", "localizedValue"}``), ``status``
        (``{"value": "Started"|"Succeeded"|"Failed"|...}``), ``resourceId``,
        ``correlationId`` and ``eventDataId``. Events appear minutes after they happen (the
        ingestion delay; ``submissionTimestamp - eventTimestamp``) and are kept 90 days: a
        window that is too recent or too old is answered, just incompletely, so callers must
        judge coverage themselves. Raises the project's errors (a refused filter is
        ``PermanentError`` code ``BadRequest``)."""
        scopes = {
            "resourceProvider": resource_provider,
            "resourceGroupName": resource_group,
            "resourceUri": resource_uri,
            "correlationId": correlation_id,
        }
        given = [(k, v) for k, v in scopes.items() if v is not None]
        if len(given) > 1:
            raise ValueError(
                "the Activity Log filters by one of resource provider, resource group, "
                f"resource or correlation id, not {', '.join(k for k, _ in given)} together"
            )
        clauses = [f"eventTimestamp ge '{_utc(since)}'"]
        if until is not None:
            clauses.append(f"eventTimestamp le '{_utc(until)}'")
        for key, value in given:
            if "'" in str(value):
                raise ValueError(f"a quote cannot be part of the Activity Log's {key} filter")
            clauses.append(f"{key} eq '{value}'")
        query = {"$filter": " and ".join(clauses)}
        if select:
            query["$select"] = ",".join(select)
        url = self._url(
            f"subscriptions/{_q(subscription)}/providers/Microsoft.Insights/eventtypes/management/values",
            ACTIVITY_LOG_API_VERSION,
            "&" + urlencode(query, quote_via=quote, safe=",'"),
        )
        what = f"reading the Activity Log of subscription {subscription}"
        return self._paged(what, url, None, retry)

    # -- identities ----------------------------------------------------------------------

    def list_identities(
        self,
        subscription: str,
        resource_group: str | None = None,
        *,
        retry: Retry = once,
        on_page: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """All user-assigned identities of a subscription, or of one resource group."""
        scope = f"/subscriptions/{subscription}"
        if resource_group is None:
            return self._paged(
                f"listing identities in subscription {subscription}",
                self._url(f"subscriptions/{_q(subscription)}/{_MSI}", MSI_API_VERSION),
                Pace("list", subscription, scope),
                retry,
                on_page,
            )
        return self._paged(
            f"listing identities in resource group {resource_group}",
            self._url(_group_path(subscription, resource_group) + f"/{_MSI}", MSI_API_VERSION),
            Pace("list", subscription, f"{scope}/resourceGroups/{resource_group}"),
            retry,
            on_page,
        )

    def get_identity(self, subscription: str, resource_group: str, name: str) -> dict[str, Any]:
        return self._get_object(
            self._url(_identity_path(subscription, resource_group, name), MSI_API_VERSION),
            f"reading identity {name}",
            Pace("get", subscription, _identity_id(subscription, resource_group, name)),
        )

    def put_identity(
        self, subscription: str, resource_group: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        ops = self._msi_client(subscription).user_assigned_identities
        data = json.dumps(body).encode()
        result: dict[str, Any] = self._call(
            f"writing identity {name}",
            lambda: ops.create_or_update(
                resource_group, name, data, content_type="application/json", cls=_raw
            ),
            Pace("write", subscription, _identity_id(subscription, resource_group, name)),
        )
        return result

    def delete_identity(self, subscription: str, resource_group: str, name: str) -> None:
        ops = self._msi_client(subscription).user_assigned_identities
        self._call(
            f"deleting identity {name}",
            lambda: ops.delete(resource_group, name),
            Pace("delete", subscription, _identity_id(subscription, resource_group, name)),
        )

    # -- federated identity credentials ---------------------------------------------------

    def list_credentials(
        self, subscription: str, resource_group: str, identity: str, *, retry: Retry = once
    ) -> list[dict[str, Any]]:
        path = _identity_path(subscription, resource_group, identity)
        return self._paged(
            f"listing federated credentials of identity {identity}",
            self._url(f"{path}/federatedIdentityCredentials", MSI_API_VERSION),
            Pace("list", subscription, _identity_id(subscription, resource_group, identity)),
            retry,
        )

    def get_credential(
        self, subscription: str, resource_group: str, identity: str, name: str
    ) -> dict[str, Any]:
        path = _identity_path(subscription, resource_group, identity)
        return self._get_object(
            self._url(f"{path}/federatedIdentityCredentials/{_q(name)}", MSI_API_VERSION),
            f"reading federated credential {name}",
            Pace("get", subscription, _identity_id(subscription, resource_group, identity)),
        )

    def put_credential(
        self,
        subscription: str,
        resource_group: str,
        identity: str,
        name: str,
        body: dict[str, Any],
    ) -> dict[str, Any]:
        ops = self._msi_client(subscription).federated_identity_credentials
        data = json.dumps(body).encode()
        result: dict[str, Any] = self._call(
            f"writing federated credential {name}",
            lambda: ops.create_or_update(
                resource_group, identity, name, data, content_type="application/json", cls=_raw
            ),
            Pace("write", subscription, _identity_id(subscription, resource_group, identity)),
        )
        return result

    def delete_credential(
        self, subscription: str, resource_group: str, identity: str, name: str
    ) -> None:
        ops = self._msi_client(subscription).federated_identity_credentials
        self._call(
            f"deleting federated credential {name}",
            lambda: ops.delete(resource_group, identity, name),
            Pace("delete", subscription, _identity_id(subscription, resource_group, identity)),
        )

    # -- role assignments -----------------------------------------------------------------

    def list_role_assignments(
        self, subscription: str, *, retry: Retry = once
    ) -> list[dict[str, Any]]:
        """Every assignment at or below the subscription (and inherited from above), in one
        paged call: cheaper than any per-principal or per-scope listing."""
        return self._paged(
            f"listing role assignments in subscription {subscription}",
            self._url(
                f"subscriptions/{_q(subscription)}/{_AUTHZ}/roleAssignments", AUTHZ_API_VERSION
            ),
            None,
            retry,
        )

    def list_role_assignments_for_scope(
        self,
        scope: str,
        principal_id: str | None = None,
        *,
        at_scope: bool = False,
        retry: Retry = once,
    ) -> list[dict[str, Any]]:
        """Assignments for a scope: with ``at_scope``, every principal's at or above it (one
        call per management group); with a principal, that principal's at, above or below."""
        query = ""
        if principal_id:
            query = "&$filter=" + quote(f"principalId eq '{principal_id}'", safe="'")
        elif at_scope:
            query = "&$filter=atScope()"
        return self._paged(
            f"listing role assignments at {scope}",
            self._url(f"{_scope_path(scope)}/{_AUTHZ}/roleAssignments", AUTHZ_API_VERSION, query),
            None,
            retry,
        )

    def get_role_assignment(self, scope: str, name: str) -> dict[str, Any]:
        return self._get_object(
            self._url(
                f"{_scope_path(scope)}/{_AUTHZ}/roleAssignments/{_q(name)}", AUTHZ_API_VERSION
            ),
            f"reading role assignment {name}",
        )

    def put_role_assignment(self, scope: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        ops = self._authz_client(_subscription_of(scope)).role_assignments
        data = json.dumps(body).encode()
        result: dict[str, Any] = self._call(
            f"writing role assignment {name}",
            lambda: ops.create(
                _scope_path(scope), name, data, content_type="application/json", cls=_raw
            ),
        )
        return result

    def delete_role_assignment(self, scope: str, name: str) -> None:
        ops = self._authz_client(_subscription_of(scope)).role_assignments
        self._call(f"deleting role assignment {name}", lambda: ops.delete(_scope_path(scope), name))

    # -- resource groups ------------------------------------------------------------------

    def list_resource_groups(
        self, subscription: str, *, retry: Retry = once
    ) -> list[dict[str, Any]]:
        """The subscription's resource groups the caller may read (ResourceGroups_List, ARM
        filters the list by read permission): ``[{"id", "name", "location", ...}]``.

        Raises ``NotFoundError`` (code ``SubscriptionNotFound``) for a subscription that does
        not exist, ``PermanentError`` with status 403 (``AuthorizationFailed``) for one the
        caller may not read."""
        return self._paged(
            f"listing resource groups of subscription {subscription}",
            self._url(f"subscriptions/{_q(subscription)}/resourcegroups", RESOURCES_API_VERSION),
            None,  # not a Managed Identity call: ARM's own throttling, answered with Retry-After
            retry,
        )

    # -- role definitions -----------------------------------------------------------------

    def list_role_definitions(self, scope: str, *, retry: Retry = once) -> list[dict[str, Any]]:
        """Every role definition assignable at ``scope`` (built-in and custom); read once per
        scope per run and cached."""
        key = _scope_path(scope).lower()
        with self._lock:
            lock = self._definition_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._definitions.get(key)
            if cached is None:
                cached = self._paged(
                    f"listing role definitions at {scope}",
                    self._url(f"{_scope_path(scope)}/{_AUTHZ}/roleDefinitions", AUTHZ_API_VERSION),
                    None,
                    retry,
                )
                self._definitions[key] = cached
            return list(cached)

    def close(self) -> None:
        with self._lock:
            clients = [*self._msi.values(), *self._authz.values()]
            self._msi.clear()
            self._authz.clear()
        for client in clients:
            client.close()


def _utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as the Activity Log's filter examples write it."""
    if moment.tzinfo is None:
        raise ValueError(f"a time without a time zone is ambiguous: {moment.isoformat()}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _q(segment: str) -> str:
    """A path segment, percent-encoded as the management clients encode it."""
    return quote(segment, safe="")


def _group_path(subscription: str, resource_group: str) -> str:
    return f"subscriptions/{_q(subscription)}/resourceGroups/{_q(resource_group)}"


def _identity_path(subscription: str, resource_group: str, name: str) -> str:
    return f"{_group_path(subscription, resource_group)}/{_MSI}/{_q(name)}"


def _identity_id(subscription: str, resource_group: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )


def _subscription_of(scope: str) -> str | None:
    parts = _scope_path(scope).split("/")
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return parts[1]
    return None


def _error_parts(exc: Any) -> tuple[str, str]:
    """Azure's error code and message from an SDK exception (never its request headers)."""
    code = ""
    message = ""
    error = getattr(exc, "error", None)
    if error is not None:
        code = getattr(error, "code", "") or ""
        message = getattr(error, "message", "") or ""
    response = getattr(exc, "response", None)
    if (not code or not message) and response is not None:
        try:
            body = json.loads(response.text() or "null")
        except (ValueError, TypeError):
            body = None
        if isinstance(body, dict):
            inner = body.get("error", body)
            if isinstance(inner, dict):
                code = code or str(inner.get("code") or "")
                message = message or str(inner.get("message") or "")
    if not message:
        message = getattr(exc, "reason", None) or type(exc).__name__
    return code, str(message)


def _status_code_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.replace(" ", "")
    except ValueError:
        return f"HTTP{status}"


def translate_error(exc: Exception, what: str, *, endpoint: str = "") -> ProviderError:
    """Map an azure-core exception onto the project's errors."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    response = getattr(exc, "response", None)
    status = int(getattr(exc, "status_code", 0) or 0)
    if isinstance(exc, ClientAuthenticationError) and response is None:
        # the credential itself failed, before any request reached ARM
        return AuthError(
            "cannot get an Entra token for Azure Resource Manager: "
            f"{describe_credential_error(exc)}",
            code="CredentialUnavailable",
            status=401,
        )
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        text = describe_credential_error(exc)
        # refused or unresolvable (azure-core's ServiceRequestError): retry once, not minutes
        unreachable = isinstance(exc, ServiceRequestError) and any(
            s in text.lower() for s in ("refused", "resolve", "name or service not known")
        )
        return TransientError(
            f"cannot reach Azure Resource Manager{f' at {endpoint}' if endpoint else ''} "
            f"while {what}: {text}",
            code="ServiceUnreachable" if unreachable else "ConnectionError",
            delay=DEFAULT_DELAY,
            attempts=UNREACHABLE_ATTEMPTS if unreachable else None,
        )
    if not isinstance(exc, HttpResponseError) or not status:
        return PermanentError(f"{what}: {type(exc).__name__}: {exc}", code=type(exc).__name__)
    code, message = _error_parts(exc)
    headers = dict(response.headers) if response is not None else {}
    return status_error(status, code, message, headers, what)


def _graph_error(response: Response, what: str) -> ProviderError:
    """Resource Graph's error: its top message is only a support reference, the reason is in
    ``details`` (``InvalidQuery``, ``ParserFailure``, ...), so those are named too."""
    error = response_error(response, what)
    try:
        body = response.json()
    except ValueError:
        return error
    details = ((body or {}).get("error") or {}).get("details") if isinstance(body, dict) else None
    if not isinstance(details, list) or not details:
        return error
    said = "; ".join(
        f"{d.get('code')}: {d.get('message')}".rstrip(". ")
        for d in details
        if isinstance(d, dict) and d.get("code")
    )
    return status_error(
        response.status,
        error.code,
        f"{said} ({str(error).rstrip('. ')})",
        response.headers,
        what,
    )


def response_error(response: Response, what: str) -> ProviderError:
    """Map an ARM error answer (``{"error": {"code", "message"}}``) onto the project's errors."""
    code, message = "", ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            code = str(inner.get("code") or "")
            message = str(inner.get("message") or "")
    if not message:
        message = f"HTTP {response.status} while {what}"
    return status_error(response.status, code, message, response.headers, what)


def status_error(
    status: int, code: str, message: str, headers: Mapping[str, str], what: str
) -> ProviderError:
    """The project's error for an ARM error status, whichever client received it."""
    if status == 401:
        return AuthError(
            f"Azure Resource Manager rejected the credentials while {what}: {message}",
            code=code or "Unauthorized",
            status=status,
        )
    if status == 404:
        return NotFoundError(message, code=code or "NotFound", status=status)
    if status == 429 or status >= 500:
        return TransientError(
            message,
            code=code or _status_code_name(status),
            status=status,
            delay=retry_after(headers),
        )
    if status == 409 and code == CONCURRENT_FIC_WRITES:
        return TransientError(
            message,
            code=code,
            status=status,
            delay=retry_after(headers, _CONCURRENT_WRITE_DELAY),
        )
    if status == 409:
        return ConflictError(message, code=code or "Conflict", status=status)
    return PermanentError(message, code=code or _status_code_name(status), status=status)
