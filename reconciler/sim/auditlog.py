"""The Azure DevOps audit log (``auditservice.dev.azure.com``), under ``/auditservice/...``.

``GET /{organization}/_apis/audit/auditlog?startTime=&endTime=&batchSize=&continuationToken=
&skipAggregation=&api-version=7.1-preview.1`` [spec: tests/sim/apispecs/devops/audit/7.1/
audit.json, "Audit Log_Query", and its example; doc: learn.microsoft.com/rest/api/azure/devops/
audit/audit-log/query] -> ``AuditLogQueryResult`` ``{"decoratedAuditLogEntries": [...],
"continuationToken", "hasMore"}``, newest first. ``continuationToken`` is the id of the last
entry returned (as in the example); entries' ids start with .NET's maximum ticks minus the
event's ticks, so they sort newest first.

Entries are recorded only while the organisation's "Log Audit Events" policy is on (off by
default, as in Azure DevOps [doc: azure-devops-docs docs/organizations/audit/
azure-devops-auditing.md, "Auditing is turned off by default"]), for the service connection and
pipeline permission changes the simulator serves and for admin out-of-band edits, with the
documented action ids [doc: docs/organizations/audit/auditing-events.md]: ``Library.
ServiceConnection{Created,CreatedForMultipleProjects,Modified,Deleted,DeletedFromMultipleProjects,
Shared,SharedWithMultipleProjects}``, ``Pipelines.Resource{Authorized,Unauthorized}For{Pipeline,
Project}``, ``Project.UpdateRenameCompleted`` (a rename changes legacy subjects),
``OrganizationPolicy.PolicyValueUpdated`` (the policy itself) and
``AuditLog.AccessLog`` (every query, aggregated unless ``skipAggregation=true``, as the
example shows). Retention 90 days. Assumptions (README "Azure DevOps audit log"): with the
policy off a query is answered (200) with what was recorded while it was on; a caller outside
``auditReaders`` gets 403 ``AccessCheckException``; 200 entries a page by default.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.sim.activitylog import RETENTION_S, parse_time
from reconciler.sim.devops import Route
from reconciler.sim.faults import Faults
from reconciler.sim.protocol import Request, Response, ado_error
from reconciler.sim.world import Organization, Project, World, stable_uuid

AUDIT_API_VERSION = "7.1-preview.1"
LOG_AUDIT_EVENTS = "Policy.LogAuditEvents"
_MAX_TICKS = 3_155_378_975_999_999_999  # DateTime.MaxValue.Ticks
_EPOCH_TICKS = 621_355_968_000_000_000

# actionId -> (area, category, details template) [doc: auditing-events.md]
ACTIONS: dict[str, tuple[str, str, str]] = {
    "Library.ServiceConnectionCreated": (
        "Library",
        "create",
        'Created Service Connection "{ConnectionName}" of type {ConnectionType}.',
    ),
    "Library.ServiceConnectionCreatedForMultipleProjects": (
        "Library",
        "create",
        'Created Service Connection "{ConnectionName}" of type {ConnectionType} for multiple projects.',
    ),
    "Library.ServiceConnectionModified": (
        "Library",
        "modify",
        'Modified Service Connection "{ConnectionName}" of type {ConnectionType}.',
    ),
    "Library.ServiceConnectionDeleted": (
        "Library",
        "remove",
        'Deleted Service Connection "{ConnectionName}" of type {ConnectionType} from project {ProjectName}.',
    ),
    "Library.ServiceConnectionDeletedFromMultipleProjects": (
        "Library",
        "remove",
        'Deleted Service Connection "{ConnectionName}" of type {ConnectionType} from multiple projects.',
    ),
    "Library.ServiceConnectionShared": (
        "Library",
        "modify",
        'Shared Service Connection "{ConnectionName}" of type {ConnectionType} with project {ProjectName}.',
    ),
    "Library.ServiceConnectionSharedWithMultipleProjects": (
        "Library",
        "modify",
        'Shared Service Connection "{ConnectionName}" of type {ConnectionType} with multiple projects.',
    ),
    "Pipelines.ResourceAuthorizedForPipeline": (
        "Pipelines",
        "modify",
        "Successfully authorized {ResourceType} resource {ResourceId} for pipeline ID {PipelineId}.",
    ),
    "Pipelines.ResourceUnauthorizedForPipeline": (
        "Pipelines",
        "modify",
        "Successfully unauthorized {ResourceType} resource {ResourceId} for pipeline ID {PipelineId}.",
    ),
    "Pipelines.ResourceAuthorizedForProject": (
        "Pipelines",
        "modify",
        "Successfully authorized {ResourceType} resource {ResourceId} for the project.",
    ),
    "Pipelines.ResourceUnauthorizedForProject": (
        "Pipelines",
        "modify",
        "Successfully unauthorized {ResourceType} resource {ResourceId} for the project.",
    ),
    "Project.UpdateRenameCompleted": (
        "Project",
        "modify",
        "Rename for project {PreviousProjectName} to {ProjectName} was successful.",
    ),
    "OrganizationPolicy.PolicyValueUpdated": (
        "OrganizationPolicy",
        "modify",
        "Policy {PolicyName} was changed to {PolicyValue}.",
    ),
    "AuditLog.AccessLog": ("Auditing", "access", "Accessed the audit log"),
}
_CATEGORY_NAMES = {
    "create": "Create",
    "modify": "Modify",
    "remove": "Remove",
    "access": "Access",
    "execute": "Execute",
}


@dataclass(frozen=True)
class AuditActor:
    """Who acted, as the audit log names them: a service principal (``actorClientId``, no UPN)
    or a user (``actorUPN``)."""

    display_name: str
    user_id: str
    upn: str = ""
    client_id: str = ""
    mechanism: str = "FedAuth"

    @classmethod
    def of_request(cls, req: Request) -> AuditActor:
        if req.client is not None:
            return cls(
                req.client.display_name,
                req.client.object_id,
                client_id=req.client.client_id,
                mechanism="AAD_Bearer",
            )
        name = req.caller.removeprefix("pat:") or "anonymous"
        return cls(name, stable_uuid("user", req.caller), upn=name, mechanism="PAT")

    @classmethod
    def user(cls, name: str) -> AuditActor:
        return cls(name, stable_uuid("user", name), upn=name)


@dataclass(slots=True)
class Entry:
    organization: str  # lower-case name
    at: float
    visible_at: float
    body: dict[str, Any]


def _ticks(ts: float) -> int:
    return int(ts * 10_000_000) + _EPOCH_TICKS


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class AuditLog:
    """Every organisation's audit entries, behind one lock."""

    def __init__(self, world: World, faults: Callable[[], Faults]) -> None:
        self.world = world
        self.faults = faults
        self._lock = threading.Lock()
        self._entries: list[Entry] = []
        self._last = 0.0

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def age(self, seconds: float) -> None:
        with self._lock:
            for e in self._entries:
                e.at -= seconds
                e.visible_at -= seconds
                e.body["id"] = self._id(
                    e.at, e.body["actorUserId"], e.body["id"].rsplit(";", 1)[-1]
                )
                e.body["timestamp"] = _stamp(e.at)

    def entries(self, organization: str | None = None) -> list[dict[str, Any]]:
        """All entries, visible or not, newest first (the admin API's view)."""
        with self._lock:
            found = [
                e
                for e in self._entries
                if organization is None or e.organization == organization.lower()
            ]
        return [dict(e.body) for e in sorted(found, key=lambda e: e.body["id"])]

    @staticmethod
    def _id(at: float, actor_id: str, unique: str) -> str:
        return f"{_MAX_TICKS - _ticks(at)};{actor_id};{unique}"

    def record(
        self,
        org: Organization,
        actor: AuditActor,
        action: str,
        data: dict[str, Any],
        *,
        now: float,
        project: Project | None = None,
        user_agent: str = "",
        correlation_id: str | None = None,
        force: bool = False,
    ) -> None:
        """One entry, if the organisation's "Log Audit Events" policy is on (or ``force``:
        the entry that records the policy being turned off)."""
        if not (org.auditing or force):
            return
        area, category, template = ACTIONS[action]
        names = {k: str(v) for k, v in data.items()}
        if project is not None:
            names.setdefault("ProjectName", project.name)
        try:
            details = template.format(**names)
        except KeyError:
            details = template
        unique = str(uuid.uuid4())
        body: dict[str, Any] = {
            "correlationId": correlation_id or unique,
            "activityId": str(uuid.uuid4()),
            "actorCUID": actor.user_id,
            "actorUserId": actor.user_id,
            "authenticationMechanism": actor.mechanism,
            "scopeType": "organization",
            "scopeDisplayName": f"{org.name} (Organization)",
            "scopeId": org.id,
            "ipAddress": "127.0.0.1",
            "userAgent": user_agent,
            "actionId": action,
            "data": dict(data),
            "details": details,
            "area": area,
            "category": category,
            "categoryDisplayName": _CATEGORY_NAMES[category],
            "actorDisplayName": actor.display_name,
        }
        if actor.upn:
            body["actorUPN"] = actor.upn
        if actor.client_id:
            body["actorClientId"] = actor.client_id
        if project is not None:
            body["projectId"] = project.id
            body["projectName"] = project.name
        with self._lock:
            # entries of one request keep their order: each a microsecond after the last
            at = max(now, self._last + 0.000_001)
            self._last = at
            body["id"] = self._id(at, actor.user_id, unique)
            body["timestamp"] = _stamp(at)
            self._entries.append(
                Entry(org.name.lower(), at, at + max(0.0, self.faults().audit_log_delay_s), body)
            )

    # --- the API ---------------------------------------------------------------------------

    def route(self, req: Request) -> Route:
        seg = req.segments[1:]  # drop "auditservice"
        low = [s.lower() for s in seg]
        if len(seg) == 4 and low[1:] == ["_apis", "audit", "auditlog"] and req.method == "GET":
            org = seg[0]
            return Route("AuditLog_Query", lambda r: self.query(r, org), preview_required=True)
        raise ado_error(
            404,
            f"The controller for path '/{'/'.join(req.segments)}' was not found or does not implement IController.",
            "NotFoundException",
            event_id=0,
        )

    def _org(self, name: str) -> Organization:
        org = self.world.organizations.get(name.lower())
        if org is None:
            raise ado_error(
                404,
                f"VS800075: The organization '{name}' does not exist.",
                "NotFoundException",
                event_id=0,
            )
        return org

    def query(self, req: Request, org_name: str) -> Response:
        with self.world.lock:
            org = self._org(org_name)
            readers = org.audit_readers
        actor = AuditActor.of_request(req)
        if readers is not None and not {
            req.caller.lower(),
            req.caller_object_id.lower(),
            actor.display_name.lower(),
        } & {r.lower() for r in readers}:
            raise ado_error(
                403,
                f"Access Denied: {actor.display_name} needs the following permission(s) on the "
                "resource Auditing to perform this action: View audit log",
                "AccessCheckException",
            )

        def moment(name: str, default: float) -> float:
            raw = req.query.get(name.lower())
            if raw is None or raw == "":
                return default
            try:
                return parse_time(raw)
            except ValueError:
                raise ado_error(
                    400,
                    f"The value '{raw}' of the parameter '{name}' is not a valid date and time.",
                    "ArgumentException",
                    event_id=0,
                ) from None

        end = moment("endTime", req.now)
        start = moment("startTime", req.now - RETENTION_S)
        raw_size = req.query.get("batchsize")
        try:
            size = int(raw_size) if raw_size else self.faults().audit_log_page_size
        except ValueError:
            raise ado_error(
                400,
                f"The value '{raw_size}' of the parameter 'batchSize' is not valid.",
                "ArgumentException",
                event_id=0,
            ) from None
        if size < 1:
            raise ado_error(
                400, "batchSize must be greater than 0.", "ArgumentOutOfRangeException", event_id=0
            )
        token = req.query.get("continuationtoken") or ""
        aggregate = req.query.get("skipaggregation", "").lower() != "true"
        oldest = req.now - RETENTION_S
        name = org.name.lower()
        with self._lock:
            self._entries = [e for e in self._entries if e.at >= oldest]
            found = sorted(
                (
                    e
                    for e in self._entries
                    if e.organization == name
                    and e.visible_at <= req.now
                    and max(start, oldest) <= e.at <= end
                    and (not token or e.body["id"] > token)
                ),
                key=lambda e: e.body["id"],
            )
            items = [dict(e.body) for e in found]
        if aggregate:
            items = _aggregate(items)
        page = items[:size]
        has_more = len(items) > size
        result: dict[str, Any] = {
            "decoratedAuditLogEntries": page,
            "continuationToken": page[-1]["id"] if page else token,
            "hasMore": has_more,
        }
        self.record(
            org,
            actor,
            "AuditLog.AccessLog",
            {
                "Filter": {
                    "StartTime": req.query.get("starttime"),
                    "EndTime": req.query.get("endtime"),
                    "ContinuationToken": token or None,
                    "BatchSize": size,
                    "HasMore": has_more,
                }
            },
            now=req.now,
            user_agent=req.headers.get("user-agent", ""),
        )
        return Response(200, result)


def _aggregate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs of one actor's ``AuditLog.AccessLog`` entries as one entry (the newest), with the
    run's times in ``data.EventSummary``, as the official example shows them."""
    out: list[dict[str, Any]] = []
    for item in items:
        last = out[-1] if out else None
        if (
            item["actionId"] == "AuditLog.AccessLog"
            and last is not None
            and last["actionId"] == "AuditLog.AccessLog"
            and last["actorUserId"] == item["actorUserId"]
        ):
            summary = last["data"].setdefault("EventSummary", [last["timestamp"]])
            summary.append(item["timestamp"])
            last["details"] = f"Accessed the audit log {len(summary)} times"
            continue
        out.append({**item, "data": dict(item["data"])})
    return out
