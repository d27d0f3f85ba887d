"""The Azure Activity Log (Microsoft.Insights 2015-04-01): management events of the ARM writes
and deletes the simulator serves, and of out-of-band edits made through its admin API.

``GET /subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values
?api-version=2015-04-01&$filter=...&$select=...`` [spec: tests/sim/apispecs/monitor/2015-04-01/
activityLogs_API.json, ActivityLogs_List; doc: learn.microsoft.com/rest/api/monitor/
activity-logs/list] -> ``{"value": [EventData...], "nextLink"?}``, newest first.

``$filter`` follows the description's narrow grammar: ``eventTimestamp ge 'T'`` (required),
optionally ``and eventTimestamp le 'T'``, and at most one of ``resourceGroupName eq``,
``resourceUri eq``, ``resourceProvider eq``, ``correlationId eq``, joined by ``and``. "No other
syntax is allowed": anything else is 400 ``BadRequest`` with the flat ``ErrorResponse`` body
(``{"code", "message"}``) the description declares. ``$select`` keeps the named ``EventData``
properties.

Each write or delete records two events with one ``correlationId`` and ``operationId``: a
``BeginRequest`` with status ``Started`` and an ``EndRequest`` with ``Succeeded`` or ``Failed``
(``subStatus`` the HTTP status), as the Activity Log shows ARM requests. An event becomes
visible ``ingestion delay`` seconds after its ``eventTimestamp`` (``submissionTimestamp``, "when
the event became available for querying"); events older than the 90-day retention are gone.
Assumptions (README "Activity Log"): a service principal's ``caller`` is its object id; events
come newest first, 200 a page; a start time older than the retention is not refused.
"""

from __future__ import annotations

import base64
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from reconciler.sim.protocol import ApiError, Request, Response
from reconciler.sim.world import iso

ACTIVITY_LOG_VERSIONS = ("2015-04-01",)
RETENTION_S = 90 * 24 * 3600  # "Activity log events are retained in Azure for 90 days"
PORTAL_USER = "portal-user@contoso.com"

# operationId of the simulator's ARM writes -> (operationName, resource provider, resource type)
OPERATIONS: dict[str, tuple[str, str, str]] = {
    "UserAssignedIdentities_CreateOrUpdate": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/write",
        "Microsoft.ManagedIdentity",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
    ),
    "UserAssignedIdentities_Update": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/write",
        "Microsoft.ManagedIdentity",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
    ),
    "UserAssignedIdentities_Delete": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/delete",
        "Microsoft.ManagedIdentity",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
    ),
    "FederatedIdentityCredentials_CreateOrUpdate": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write",
        "Microsoft.ManagedIdentity",
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
    ),
    "FederatedIdentityCredentials_Delete": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete",
        "Microsoft.ManagedIdentity",
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
    ),
    "RoleAssignments_Create": (
        "Microsoft.Authorization/roleAssignments/write",
        "Microsoft.Authorization",
        "Microsoft.Authorization/roleAssignments",
    ),
    "RoleAssignments_Delete": (
        "Microsoft.Authorization/roleAssignments/delete",
        "Microsoft.Authorization",
        "Microsoft.Authorization/roleAssignments",
    ),
}
# the admin API's kinds, as the operations a portal user's edit or delete would be
ADMIN_OPERATIONS: dict[tuple[str, bool], str] = {
    ("identity", False): "UserAssignedIdentities_Update",
    ("identity", True): "UserAssignedIdentities_Delete",
    ("federated_credential", False): "FederatedIdentityCredentials_CreateOrUpdate",
    ("federated_credential", True): "FederatedIdentityCredentials_Delete",
    ("role_assignment", False): "RoleAssignments_Create",
    ("role_assignment", True): "RoleAssignments_Delete",
}
SELECTABLE = frozenset(
    {
        "authorization",
        "caller",
        "category",
        "claims",
        "correlationId",
        "description",
        "eventDataId",
        "eventName",
        "eventTimestamp",
        "httpRequest",
        "id",
        "level",
        "operationId",
        "operationName",
        "properties",
        "resourceGroupName",
        "resourceId",
        "resourceProviderName",
        "resourceType",
        "status",
        "subStatus",
        "submissionTimestamp",
        "subscriptionId",
        "tenantId",
    }
)
_SCOPE_FIELDS = {
    "resourcegroupname": "resourceGroupName",
    "resourceuri": "resourceUri",
    "resourceprovider": "resourceProvider",
    "correlationid": "correlationId",
}
_CLAUSE = re.compile(r"\s*([A-Za-z]+)\s+([A-Za-z]+)\s+'([^']*)'\s*")
_AND = re.compile(r"and\b", re.IGNORECASE)
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
}


def bad_request(message: str) -> ApiError:
    """The service's refusal: 400 with the description's flat ``ErrorResponse``
    [obs: MicrosoftDocs/feedback#319 ``"Code": "BadRequest"``; Azure/azure-sdk-for-python#12907]."""
    return ApiError(Response(400, {"code": "BadRequest", "message": message}))


def parse_time(text: str) -> float:
    """ISO 8601 (``Z`` or an offset, any fraction) -> epoch seconds; ValueError otherwise."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", value)
    if match:  # datetime takes at most 6 fractional digits; Azure writes 7
        value = f"{match.group(1)}.{match.group(2)[:6].ljust(6, '0')}{match.group(3)}"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"no time zone in {text!r}")
    return parsed.timestamp()


@dataclass(frozen=True)
class Query:
    start: float
    end: float | None
    field: str | None  # resourceGroupName | resourceUri | resourceProvider | correlationId
    value: str


def parse_filter(text: str | None) -> Query:
    """The ``$filter`` as a ``Query``; raises the service's 400 for anything else."""
    if not text or not text.strip():
        raise bad_request("$filter searching parameters invalid")
    pos, clauses = 0, []
    while pos < len(text):
        match = _CLAUSE.match(text, pos)
        if match is None:
            raise bad_request(f"The $filter '{text}' is not supported.")
        clauses.append((match.group(1), match.group(2).lower(), match.group(3)))
        pos = match.end()
        if pos < len(text):
            joined = _AND.match(text, pos)
            if joined is None:
                raise bad_request(f"The $filter '{text}' is not supported.")
            pos = joined.end()
            if pos >= len(text):
                raise bad_request(f"The $filter '{text}' is not supported.")
    start: float | None = None
    end: float | None = None
    field: str | None = None
    value = ""
    for name, op, literal in clauses:
        low = name.lower()
        if low == "eventtimestamp" and op in ("ge", "le"):
            try:
                moment = parse_time(literal)
            except ValueError:
                raise bad_request(
                    f"The value '{literal}' of eventTimestamp is not a valid date and time."
                ) from None
            if op == "ge" and start is None:
                start = moment
                continue
            if op == "le" and end is None:
                end = moment
                continue
        elif low in _SCOPE_FIELDS and op == "eq" and field is None:
            field, value = _SCOPE_FIELDS[low], literal
            continue
        raise bad_request(f"$filter={name} is not supported.")
    if start is None:
        raise bad_request("$filter searching parameters invalid: a start time is required")
    return Query(start, end, field, value)


@dataclass(slots=True)
class Event:
    subscription: str  # lower-case subscription id
    at: float  # eventTimestamp (epoch seconds)
    visible_at: float  # submissionTimestamp: at + the ingestion delay when it was recorded
    body: dict[str, Any]  # EventData without the two timestamps


@dataclass(frozen=True)
class Actor:
    """Who made a change: a service principal (token) or a named user (the admin API)."""

    caller: str  # what the log shows as ``caller``
    claims: dict[str, str]

    @classmethod
    def service_principal(cls, object_id: str, app_id: str, tenant: str) -> Actor:
        return cls(
            object_id,
            {
                "aud": "https://management.azure.com",
                "iss": f"https://sts.windows.net/{tenant}/",
                "appid": app_id,
                "appidacr": "1",
                "http://schemas.microsoft.com/identity/claims/objectidentifier": object_id,
                "http://schemas.microsoft.com/identity/claims/tenantid": tenant,
                "idtyp": "app",
            },
        )

    @classmethod
    def user(cls, upn: str, object_id: str, tenant: str) -> Actor:
        return cls(
            upn,
            {
                "aud": "https://management.core.windows.net/",
                "iss": f"https://sts.windows.net/{tenant}/",
                "http://schemas.microsoft.com/identity/claims/objectidentifier": object_id,
                "http://schemas.microsoft.com/identity/claims/tenantid": tenant,
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": upn,
                "name": upn,
            },
        )


def _resource_group(resource_id: str) -> str:
    parts = resource_id.split("/")
    low = [p.lower() for p in parts]
    if "resourcegroups" in low and low.index("resourcegroups") + 1 < len(parts):
        return parts[low.index("resourcegroups") + 1]
    return ""


def _ticks(ts: float) -> int:
    """.NET ticks (100 ns since 0001-01-01), as the event ``id`` carries them."""
    return int(ts * 10_000_000) + 621_355_968_000_000_000


class ActivityLog:
    """Every subscription's management events, behind one lock."""

    def __init__(self, tenant: Callable[[], str]) -> None:
        self._tenant = tenant
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def age(self, seconds: float) -> None:
        """Move every event ``seconds`` into the past (as if that much time had gone by)."""
        with self._lock:
            for e in self._events:
                e.at -= seconds
                e.visible_at -= seconds

    def events(self) -> list[dict[str, Any]]:
        """All events, visible or not, oldest first (the admin API's view)."""
        with self._lock:
            return [self._render(e) for e in self._events]

    @staticmethod
    def _render(e: Event) -> dict[str, Any]:
        return {
            **e.body,
            "eventTimestamp": iso(e.at),
            "submissionTimestamp": iso(e.visible_at),
        }

    def record_request(
        self,
        *,
        op: str,
        subscription: str | None,
        resource_id: str,
        method: str,
        status: int,
        actor: Actor,
        correlation_id: str,
        client_request_id: str,
        now: float,
        delay_s: float,
    ) -> None:
        """The ``Started`` and the ``Succeeded``/``Failed`` event of one ARM write or delete.
        Writes outside a subscription (management groups) go to the tenant's log, not here."""
        known = OPERATIONS.get(op)
        if known is None or not subscription:
            return
        name, provider, rtype = known
        operation_id = str(uuid.uuid4())
        base: dict[str, Any] = {
            "authorization": {"action": name, "scope": resource_id},
            "caller": actor.caller,
            "category": {"value": "Administrative", "localizedValue": "Administrative"},
            "claims": dict(actor.claims),
            "correlationId": correlation_id,
            "description": "",
            "httpRequest": {
                "clientRequestId": client_request_id,
                "clientIpAddress": "127.0.0.1",
                "method": method,
            },
            "resourceGroupName": _resource_group(resource_id),
            "resourceProviderName": {"value": provider, "localizedValue": provider},
            "resourceId": resource_id,
            "resourceType": {"value": rtype, "localizedValue": rtype},
            "operationId": operation_id,
            "operationName": {"value": name, "localizedValue": name},
            "subscriptionId": subscription,
            "tenantId": self._tenant(),
        }
        ok = status < 400
        text = _STATUS_TEXT.get(status, str(status))
        begin = {
            **base,
            "eventName": {"value": "BeginRequest", "localizedValue": "Begin request"},
            "level": "Informational",
            "properties": {},
            "status": {"value": "Started", "localizedValue": "Started"},
            "subStatus": {"value": "", "localizedValue": ""},
        }
        end = {
            **base,
            "eventName": {"value": "EndRequest", "localizedValue": "End request"},
            "level": "Informational" if ok else "Error",
            "properties": {"statusCode": text.replace(" ", "")},
            "status": {
                "value": "Succeeded" if ok else "Failed",
                "localizedValue": "Succeeded" if ok else "Failed",
            },
            "subStatus": {
                "value": text.replace(" ", ""),
                "localizedValue": f"{text} (HTTP Status Code: {status})",
            },
        }
        with self._lock:
            for body, at in ((begin, now), (end, now + 0.000_1)):
                data_id = str(uuid.uuid4())
                body["eventDataId"] = data_id
                body["id"] = f"{resource_id}/events/{data_id}/ticks/{_ticks(at)}"
                self._events.append(Event(subscription.lower(), at, at + max(0.0, delay_s), body))

    # --- the API ---------------------------------------------------------------------------

    def list(self, req: Request, subscription: str, page_size: int) -> Response:
        query = parse_filter(req.query.get("$filter"))
        select = [s.strip() for s in (req.query.get("$select") or "").split(",") if s.strip()]
        token = req.query.get("$skiptoken")
        now, offset = req.now, 0
        if token:
            try:
                raw = base64.urlsafe_b64decode(token.encode() + b"==").decode()
                cut, _, off = raw.partition(":")
                now, offset = float(cut), max(0, int(off))
            except (ValueError, UnicodeDecodeError):
                raise bad_request(f"The $skiptoken '{token}' is not valid.") from None
        end = query.end if query.end is not None else now
        oldest = now - RETENTION_S
        sub = subscription.lower()
        with self._lock:
            # retention: what is older than 90 days is gone for good
            self._events = [e for e in self._events if e.at >= req.now - RETENTION_S]
            found = [
                e
                for e in self._events
                if e.subscription == sub
                and e.visible_at <= now  # frozen at the first page, so pages do not shift
                and max(query.start, oldest) <= e.at <= end
                and _matches(e.body, query)
            ]
        found.sort(key=lambda e: e.at, reverse=True)
        page = found[offset : offset + page_size]
        items = [self._render(e) for e in page]
        if select:
            wanted = {s.lower() for s in select}
            items = [{k: v for k, v in item.items() if k.lower() in wanted} for item in items]
        body: dict[str, Any] = {"value": items}
        if offset + page_size < len(found):
            params = {k: v for k, v in req.query.items() if k != "$skiptoken"}
            params["$skiptoken"] = (
                base64.urlsafe_b64encode(f"{now!r}:{offset + page_size}".encode())
                .decode()
                .rstrip("=")
            )
            body["nextLink"] = f"{req.base_url}{quote(req.raw_path)}?" + urlencode(
                params, quote_via=quote, safe="$',:"
            )
        return Response(200, body)


def _matches(body: dict[str, Any], query: Query) -> bool:
    if query.field is None:
        return True
    want = query.value.lower()
    if query.field == "resourceGroupName":
        return str(body.get("resourceGroupName", "")).lower() == want
    if query.field == "resourceUri":
        return str(body.get("resourceId", "")).lower().rstrip("/") == want.rstrip("/")
    if query.field == "resourceProvider":
        return str(body["resourceProviderName"]["value"]).lower() == want
    return str(body.get("correlationId", "")).lower() == want
