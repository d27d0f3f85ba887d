"""The pure half of incremental drift (issue 13): the baseline file's contents, which
identities the Activity Log says were touched, and who made a change.

No I/O: ``changefeed.py`` reads the logs and the file and hands the parsed JSON here.

Facts used (``shared/reference/estate-and-ci.md`` §4): Activity Log ``EventData`` carries
``caller``, ``eventTimestamp``, ``operationName.value``, ``status.value`` and ``resourceId``;
the operations that change a federated credential are
``Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write|delete``
(and an identity's own ``write|delete``); both logs keep 90 days. An Azure DevOps audit entry
carries ``actionId``, ``timestamp``, ``actorUPN`` / ``actorDisplayName`` / ``actorClientId``
and ``data`` (``ConnectionId`` for ``Library.ServiceConnection*``, ``ResourceId`` for
``Pipelines.Resource*``) [doc: azure-devops-docs docs/organizations/audit/auditing-events.md].
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

BASELINE_FORMAT: Final = "reconciler-drift-baseline"
BASELINE_VERSION: Final = 1
RETENTION_S: Final = 90 * 24 * 3600  # both logs keep 90 days
ACTIVITY_LOG: Final = "Activity Log"
AUDIT_LOG: Final = "Azure DevOps audit log"
MANAGED_IDENTITY: Final = "Microsoft.ManagedIdentity"
_IDENTITY_ID = re.compile(
    r"^(/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.managedidentity/"
    r"userassignedidentities/[^/]+)(/.*)?$"
)
_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/]+)(/|$)")
_PROVIDER = re.compile(r"/providers/([^/]+)/")
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LOG_AUDIT_EVENTS: Final = "Policy.LogAuditEvents"


class BaselineError(ValueError):
    """The baseline file cannot be used: the message says why (the run then reads in full)."""


def parse_time(text: str) -> float:
    """ISO 8601 with ``Z`` or an offset, any fraction -> epoch seconds; ``ValueError``."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", value)
    if match:  # datetime takes at most 6 fractional digits; Azure writes 7
        value = f"{match.group(1)}.{match.group(2)[:6].ljust(6, '0')}{match.group(3)}"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"no time zone in {text!r}")
    return moment.timestamp()


def iso(moment: float) -> str:
    """Epoch seconds -> ISO 8601 UTC with ``Z``, whole seconds."""
    return datetime.fromtimestamp(int(moment), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the baseline ------------------------------------------------------------------------


@dataclass
class SubscriptionBaseline:
    """What the last run knew of one subscription's federated credentials."""

    checked: float  # the Activity Log is complete up to here (the last run's window end)
    # identity ARM id (lower case) -> (principal id, credentials as listed)
    identities: dict[str, tuple[str, list[dict[str, Any]]]] = field(default_factory=dict)
    # the resource groups (lower case) that held a desired or owned identity; None: unknown
    groups: list[str] | None = None


@dataclass
class OrganizationBaseline:
    """What the last run knew of one Azure DevOps organisation's pipeline permissions."""

    checked: float  # the audit log is searched from here (minus the margin) next time
    # service connection id (lower case) -> its pipeline permissions as read
    permissions: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Baseline:
    """The baseline file (docs/baseline-format.md), parsed."""

    owner: str
    tenant: str
    subscriptions: dict[str, SubscriptionBaseline] = field(default_factory=dict)
    organizations: dict[str, OrganizationBaseline] = field(default_factory=dict)
    # address -> (id, fingerprint) of every live object the last run read
    objects: dict[str, tuple[str, str]] = field(default_factory=dict)
    written: float | None = None  # when the run that wrote it started

    def to_json(self, *, written: float) -> dict[str, Any]:
        return {
            "format": BASELINE_FORMAT,
            "version": BASELINE_VERSION,
            "written": iso(written),
            "owner": self.owner,
            "tenant": self.tenant,
            "subscriptions": {
                sub: {
                    "checked": iso(state.checked),
                    **({} if state.groups is None else {"resourceGroups": sorted(state.groups)}),
                    "identities": {
                        ident: {"principalId": principal, "credentials": creds}
                        for ident, (principal, creds) in sorted(state.identities.items())
                    },
                }
                for sub, state in sorted(self.subscriptions.items())
            },
            "organizations": {
                org: {
                    "checked": iso(state.checked),
                    "permissions": dict(sorted(state.permissions.items())),
                }
                for org, state in sorted(self.organizations.items())
            },
            "objects": {
                address: {"id": oid, "fingerprint": fp}
                for address, (oid, fp) in sorted(self.objects.items())
            },
        }


def _expect(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind):
        raise BaselineError(f"{where}: expected {kind.__name__}")
    return value


def _time(value: Any, where: str) -> float:
    try:
        return parse_time(_expect(value, str, where))
    except ValueError:
        raise BaselineError(f"{where}: not an ISO 8601 time with a time zone") from None


def parse_baseline(document: Any) -> Baseline:
    """A parsed baseline document; ``BaselineError`` naming the first key that is wrong."""
    doc = _expect(document, dict, "the baseline")
    if doc.get("format") != BASELINE_FORMAT:
        raise BaselineError(f"format: not {BASELINE_FORMAT!r}")
    if doc.get("version") != BASELINE_VERSION:
        raise BaselineError(
            f"version: {doc.get('version')!r} is not a version this release reads "
            f"({BASELINE_VERSION})"
        )
    baseline = Baseline(
        owner=_expect(doc.get("owner"), str, "owner"),
        tenant=_expect(doc.get("tenant"), str, "tenant"),
    )
    if doc.get("written") is not None:
        baseline.written = _time(doc.get("written"), "written")
    for sub, state in _expect(doc.get("subscriptions", {}), dict, "subscriptions").items():
        where = f"subscriptions.{sub}"
        state = _expect(state, dict, where)
        parsed = SubscriptionBaseline(_time(state.get("checked"), f"{where}.checked"))
        if state.get("resourceGroups") is not None:
            found = _expect(state.get("resourceGroups"), list, f"{where}.resourceGroups")
            parsed.groups = [str(_expect(g, str, f"{where}.resourceGroups")).lower() for g in found]
        idents = _expect(state.get("identities", {}), dict, f"{where}.identities")
        for ident, entry in idents.items():
            at = f"{where}.identities.{ident}"
            entry = _expect(entry, dict, at)
            principal = _expect(entry.get("principalId", ""), str, f"{at}.principalId")
            creds = _expect(entry.get("credentials"), list, f"{at}.credentials")
            for n, cred in enumerate(creds):
                _expect(cred, dict, f"{at}.credentials[{n}]")
            parsed.identities[str(ident).lower()] = (principal, creds)
        baseline.subscriptions[str(sub).lower()] = parsed
    for org, state in _expect(doc.get("organizations", {}), dict, "organizations").items():
        where = f"organizations.{org}"
        state = _expect(state, dict, where)
        parsed_org = OrganizationBaseline(_time(state.get("checked"), f"{where}.checked"))
        perms = _expect(state.get("permissions", {}), dict, f"{where}.permissions")
        for endpoint, value in perms.items():
            parsed_org.permissions[str(endpoint).lower()] = _expect(
                value, dict, f"{where}.permissions.{endpoint}"
            )
        baseline.organizations[str(org).lower()] = parsed_org
    for address, entry in _expect(doc.get("objects", {}), dict, "objects").items():
        entry = _expect(entry, dict, f"objects.{address}")
        baseline.objects[str(address)] = (
            str(entry.get("id") or ""),
            str(entry.get("fingerprint") or ""),
        )
    return baseline


# -- the Activity Log --------------------------------------------------------------------


@dataclass(frozen=True)
class LogEvent:
    """One event of either log, reduced to what attribution needs."""

    resource: str  # lower-case ARM id, or an Azure DevOps object id (lower-case GUID)
    operation: str  # operationName.value, or the audit actionId
    status: str  # status.value ("Started", "Succeeded", "Failed"); "" for audit entries
    caller: str
    time: str  # as the log wrote it
    at: float
    source: str  # ACTIVITY_LOG or AUDIT_LOG


def _value(field_: Any) -> str:
    if isinstance(field_, Mapping):
        return str(field_.get("value") or "")
    return str(field_ or "")


def activity_events(raw: Iterable[Mapping[str, Any]]) -> list[LogEvent]:
    """Activity Log ``EventData`` -> events; ones without a resource or a time are dropped."""
    out: list[LogEvent] = []
    for item in raw:
        resource = str(item.get("resourceId") or "").rstrip("/").lower()
        stamp = str(item.get("eventTimestamp") or "")
        try:
            at = parse_time(stamp)
        except ValueError:
            continue
        if not resource:
            continue
        out.append(
            LogEvent(
                resource,
                _value(item.get("operationName")),
                _value(item.get("status")),
                str(item.get("caller") or ""),
                stamp,
                at,
                ACTIVITY_LOG,
            )
        )
    return out


def identity_of(resource_id: str) -> str | None:
    """The user-assigned identity (lower-case ARM id) a resource id is or is under."""
    found = _IDENTITY_ID.match(resource_id.rstrip("/").lower())
    return found.group(1) if found else None


def touched_identities(events: Iterable[LogEvent]) -> set[str]:
    """Identities (lower-case ARM ids) whose credentials may have changed: any event on an
    identity or anything under it, whatever its status (a ``Started`` write whose end is not
    in the log yet, and a ``Failed`` one, cost one list each; missing one would cost a miss)."""
    touched: set[str] = set()
    for event in events:
        if not event.operation.lower().startswith(
            "microsoft.managedidentity/userassignedidentities"
        ):
            continue
        ident = identity_of(event.resource)
        if ident is not None:
            touched.add(ident)
    return touched


def resource_group_of(resource_id: str) -> str | None:
    """The resource group (lower case) of an ARM id, if it is in one."""
    parts = resource_id.lower().strip("/").split("/")
    for i, part in enumerate(parts[:-1]):
        if part == "resourcegroups":
            return parts[i + 1]
    return None


def subscription_of(resource_id: str) -> str | None:
    found = _SUBSCRIPTION.match(resource_id.lower())
    return found.group(1) if found else None


def provider_of(resource_id: str) -> str | None:
    """The resource provider namespace of an ARM id (the last ``/providers/{ns}/``)."""
    found = _PROVIDER.findall(resource_id)
    return str(found[-1]) if found else None


def is_devops_id(object_id: str) -> bool:
    return bool(_GUID.match(object_id.lower()))


# -- the audit log -----------------------------------------------------------------------


def audit_events(raw: Iterable[Mapping[str, Any]]) -> list[LogEvent]:
    """Audit entries that name a service connection (``data.ConnectionId``, or
    ``data.ResourceId`` for a pipeline permission of an ``endpoint``) -> events."""
    out: list[LogEvent] = []
    for entry in raw:
        data = entry.get("data") or {}
        if not isinstance(data, Mapping):
            continue
        target = data.get("ConnectionId")
        if target is None and str(data.get("ResourceType") or "").lower() == "endpoint":
            target = data.get("ResourceId")
        stamp = str(entry.get("timestamp") or "")
        try:
            at = parse_time(stamp)
        except ValueError:
            continue
        if not target:
            continue
        caller = (
            entry.get("actorUPN") or entry.get("actorDisplayName") or entry.get("actorClientId")
        )
        out.append(
            LogEvent(
                str(target).lower(),
                str(entry.get("actionId") or ""),
                "",
                str(caller or ""),
                stamp,
                at,
                AUDIT_LOG,
            )
        )
    return out


def auditing_switched_off(
    raw: Iterable[Mapping[str, Any]], after: float = float("-inf")
) -> tuple[str, str] | None:
    """(when, by whom) of the latest change of the "Log Audit Events" policy to Off made
    after ``after`` (epoch s), if any: from then on, until it was turned on again, changes
    went unrecorded."""
    latest: tuple[float, Mapping[str, Any]] | None = None
    for entry in raw:
        if entry.get("actionId") != "OrganizationPolicy.PolicyValueUpdated":
            continue
        data = entry.get("data") or {}
        if not isinstance(data, Mapping) or data.get("PolicyName") != LOG_AUDIT_EVENTS:
            continue
        if str(data.get("PolicyValue") or "").lower() != "off":
            continue
        try:
            at = parse_time(str(entry.get("timestamp") or ""))
        except ValueError:
            continue
        if at > after and (latest is None or at > latest[0]):
            latest = (at, entry)
    if latest is None:
        return None
    entry = latest[1]
    who = str(entry.get("actorUPN") or entry.get("actorDisplayName") or "someone")
    return str(entry.get("timestamp") or ""), who


def audit_coverage(
    raw: Iterable[Mapping[str, Any]], *, last_read: float, margin_s: float
) -> str | None:
    """Why the audit log cannot stand in for reading pipeline permissions again, or None when
    it can: auditing was on when the last run read the log (an ``AuditLog.AccessLog`` entry at
    or after ``last_read``, the last run's start; entries are recorded only while the "Log
    Audit Events" policy is on) and the policy has not changed since (an answer with auditing
    off is an empty 200: it never proves that nothing changed)."""
    accessed = False
    for entry in raw:
        try:
            at = parse_time(str(entry.get("timestamp") or ""))
        except ValueError:
            continue
        action = entry.get("actionId")
        data = entry.get("data") or {}
        if (
            action == "OrganizationPolicy.PolicyValueUpdated"
            and isinstance(data, Mapping)
            and data.get("PolicyName") == LOG_AUDIT_EVENTS
            and at >= last_read - margin_s
        ):
            who = entry.get("actorUPN") or entry.get("actorDisplayName") or "someone"
            return (
                f'the "Log Audit Events" policy was set to {data.get("PolicyValue")} at '
                f"{entry.get('timestamp')} by {who}, since the last run"
            )
        if action == "AuditLog.AccessLog" and at >= last_read:
            accessed = True
    if not accessed:
        return (
            f"the audit log holds no entry of the last run reading it (at or after "
            f'{iso(last_read)}): auditing ("Log Audit Events", off by default) may have been '
            "off, and an empty audit log proves nothing"
        )
    return None


# -- who changed it ----------------------------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    """Who changed a drifted object, when and how; or why that is unknown."""

    caller: str | None = None
    time: str | None = None
    operation: str | None = None
    status: str | None = None
    source: str | None = None
    unknown: str | None = None  # the reason, when the logs cannot tell

    def to_json(self) -> dict[str, Any]:
        if self.unknown is not None:
            return {"caller": None, "unknown": self.unknown}
        return {
            "caller": self.caller,
            "time": self.time,
            "operation": self.operation,
            "status": self.status or None,
            "source": self.source,
        }


def latest_change(events: Iterable[LogEvent], resource: str) -> LogEvent | None:
    """The latest event that changed ``resource`` (lower-cased here): a write or delete of
    it that did not fail and is not only ``Started`` (its end is the change), or the delete
    of something it lives under (an identity deleted with its credentials). Audit entries
    have no status and all count."""
    wanted = resource.rstrip("/").lower()
    best: LogEvent | None = None
    for event in events:
        if event.source == ACTIVITY_LOG and event.status.lower() != "succeeded":
            continue
        own = event.resource == wanted
        parent = (
            event.source == ACTIVITY_LOG
            and wanted.startswith(event.resource + "/")
            and event.operation.lower().endswith("/delete")
        )
        if not (own or parent):
            continue
        if best is None or event.at > best.at:
            best = event
    return best


def attribute(event: LogEvent | None, unknown: str) -> Attribution:
    if event is None:
        return Attribution(unknown=unknown)
    return Attribution(
        caller=event.caller or "(not recorded)",
        time=event.time,
        operation=event.operation,
        status=event.status,
        source=event.source,
    )
