"""Incremental drift (issue 13): read what changed since the last check, and who changed it.

The shell half; the decisions that need no I/O are in ``attribution.py``. What it does, per
``drift --baseline FILE`` run (README "Incremental drift"; the file: docs/baseline-format.md):

- Federated credentials are the expensive read (one list per identity, 15 a second per tenant
  [doc: entra-docs workload-identity-federation-considerations.md; estate-and-ci.md §4]).
  For each subscription the baseline covers, one Activity Log query
  (``resourceProvider eq 'Microsoft.ManagedIdentity'``, from the baseline's time minus a
  margin to now) names the identities written or deleted since, whatever the status; only
  those, identities the baseline does not know (new to the specs, newly owned) and identities
  whose principal changed (re-created) are listed again; the others keep the baseline's lists.
- Identities of such a subscription are listed per resource group (those that held desired or
  owned identities at the last run, those of identities the Activity Log names, and those the
  specs and Resource Graph name) instead of per subscription: a subscription's list is paged at
  the per-resource rate of the Managed Identity service (0.25 a second), a few seconds a page.
- Pipeline permissions (one read per connection) likewise, from each organisation's Azure
  DevOps audit log: kept only where the log covers the time since the last run (an access entry
  from the last run's start on, which its own read leaves while auditing records; no change of the "Log Audit Events" policy since; with auditing off
  the log answers 200 with nothing, which proves nothing) and names no change of the
  connection. Identities, role assignments and service connections are bulk lists, a handful
  of requests, and are read in full every time.
- A subscription (organisation) is read in full, and the report says why, when: ``--full``; no baseline (or
  one that cannot be read, or was written for another owner or tenant); the subscription is not
  in it; its time is older than the Activity Log's 90-day retention (minus the margin) or
  inside the ingestion delay of now; its Activity Log cannot be read.
- The new baseline's time is the window's trusted end, now minus the ingestion delay: a change
  the log does not show yet is in the next run's window (the margin also covers late events
  and clock skew), never lost.
- Attribution: for each drifted object, the latest successful Activity Log event on its id
  (or the delete of the identity it lived under), or the latest Azure DevOps audit entry naming
  the connection; "unknown" with the reason otherwise (log unreadable, auditing off, nothing in
  the window). Ids come from the live object, else from the baseline (a deleted object).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from reconciler.attribution import (
    MANAGED_IDENTITY,
    RETENTION_S,
    Attribution,
    Baseline,
    BaselineError,
    LogEvent,
    OrganizationBaseline,
    SubscriptionBaseline,
    activity_events,
    attribute,
    audit_coverage,
    audit_events,
    auditing_switched_off,
    is_devops_id,
    iso,
    latest_change,
    parse_baseline,
    provider_of,
    resource_group_of,
    subscription_of,
    touched_identities,
)
from reconciler.errors import ConfigError, ProviderError
from reconciler.retry import SYSTEM_CLOCK, Clock, RetryPolicy, call_with_retry

if TYPE_CHECKING:
    from reconciler.model import LiveState
    from reconciler.providers import Services

# The Activity Log's ingestion delay is "minutes", not documented precisely (estate-and-ci.md
# §4): events younger than this are not trusted to be complete; a change there shows in the
# next run. The margin reaches further back than the last window's end, for late events and
# for clock skew between this machine and Azure.
DEFAULT_LOG_DELAY_S: Final = 900.0
LOG_MARGIN_S: Final = 300.0
_LOG_WORKERS: Final = 4


@dataclass
class _Subscription:
    """One subscription's credential read: incremental (``events`` set) or full (``why``)."""

    base: SubscriptionBaseline | None
    why: str | None  # why it is read in full; None: incremental
    since: float  # where its Activity Log window starts
    events: Future[list[LogEvent]] | None = None
    relisted: int = 0
    reused: int = 0
    groups: int | None = None  # resource groups listed instead of the whole subscription


@dataclass
class _Organization:
    """One organisation's pipeline permissions: from the audit log (``why`` None, once the
    log is judged) or read in full (``why``)."""

    base: OrganizationBaseline | None
    why: str | None
    since: float
    last_read: float = 0.0
    touched: set[str] | None = None  # connection ids the audit log names; None: not judged
    relisted: int = 0
    reused: int = 0


def _utc(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)


class ChangeFeed:
    """The reader of one drift run: a ``CredentialSource`` and ``PermissionSource`` for
    ``observe`` (credential lists and pipeline permissions from the baseline where the
    Activity Log or the audit log shows nothing changed), then attribution, the report's
    account of what was read in full and why, and the new baseline.

    ``baseline_path``: the file (None: no ``--baseline``); ``full``: ``--full``;
    ``delay_s``: the ingestion delay assumed (seconds); ``now``: the wall clock (epoch s)."""

    def __init__(
        self,
        services: Services,
        *,
        owner: str,
        baseline_path: str | None,
        full: bool = False,
        delay_s: float = DEFAULT_LOG_DELAY_S,
        margin_s: float = LOG_MARGIN_S,
        now: Callable[[], float] = time.time,
        clock: Clock = SYSTEM_CLOCK,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._services = services
        self._owner = owner
        self._path = baseline_path
        self._delay = max(0.0, delay_s)
        self._margin = max(0.0, margin_s)
        self.now = now()
        self.window_end = self.now - self._delay
        self._retry = partial(call_with_retry, clock=clock, policy=policy or RetryPolicy())
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=_LOG_WORKERS, thread_name_prefix="changes")
        self._subs: dict[str, _Subscription] = {}
        self._logs: dict[tuple[str, str], tuple[float, Future[list[LogEvent]]]] = {}
        self._audit: dict[str, tuple[float, Future[list[dict[str, Any]]]]] = {}
        # identity id (lower) -> (subscription, principal, credentials) for the new baseline
        self._credentials: dict[str, tuple[str, str, list[dict[str, Any]]]] = {}
        self._orgs: dict[str, _Organization] = {}
        # organisation (lower) -> connection id (lower) -> pipeline permissions
        self._permissions: dict[str, dict[str, dict[str, Any]]] = {}
        self.baseline: Baseline | None = None
        self.why_full: str | None = None  # for every part
        self.warning: str | None = None
        if baseline_path is not None:
            where = Path(baseline_path)
            if where.is_dir():
                raise ConfigError(
                    f"--baseline {baseline_path}: is a folder; name a file, e.g. "
                    f"{where / 'drift-baseline.json'}"
                )
            if not where.parent.is_dir():
                raise ConfigError(
                    f"--baseline {baseline_path}: the folder {str(where.parent)!r} does not "
                    "exist; create it first"
                )
        if full:
            self.why_full = "--full was given (a periodic full sweep)"
        elif baseline_path is None:
            self.why_full = "no baseline (drift --baseline FILE keeps one between runs)"
        else:
            self._load(baseline_path)
        if self.baseline is not None:
            for sub, state in sorted(self.baseline.subscriptions.items()):
                self._subs[sub] = self._judge(sub, state)
            for org, org_state in sorted(self.baseline.organizations.items()):
                self._orgs[org] = self._judge_organization(org, org_state)

    # -- the baseline file ---------------------------------------------------------------

    def _load(self, path: str) -> None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            self.why_full = f"no baseline yet ({path} does not exist; this run writes it)"
            return
        except OSError as exc:
            self._unusable(path, exc.strerror or str(exc))
            return
        try:
            baseline = parse_baseline(json.loads(text))
        except json.JSONDecodeError as exc:
            self._unusable(path, f"line {exc.lineno} column {exc.colno}: {exc.msg}")
            return
        except (BaselineError, RecursionError) as exc:
            self._unusable(path, str(exc) or "nested too deeply")
            return
        if baseline.owner != self._owner:
            self.why_full = (
                f"the baseline {path} was written for owner '{baseline.owner}', not '{self._owner}'"
            )
            return
        tenant = self._services.tenant_id
        if baseline.tenant.lower() != str(tenant).lower():
            self.why_full = f"the baseline {path} was written for tenant {baseline.tenant}"
            return
        self.baseline = baseline

    def _unusable(self, path: str, why: str) -> None:
        self.why_full = f"the baseline {path} cannot be used: {why}"
        self.warning = f"{self.why_full}; reading in full and writing a new one"

    def _judge(self, sub: str, state: SubscriptionBaseline) -> _Subscription:
        """Whether the Activity Log can stand in for listing this subscription's credentials,
        and if so the query that says what changed."""
        oldest = self.now - (RETENTION_S - self._margin)
        if state.checked < oldest:
            why = (
                f"the baseline's time {iso(state.checked)} is older than the Activity Log's "
                "90-day retention"
            )
            return _Subscription(None, why, self.now - RETENTION_S)
        if state.checked > self.window_end:
            why = (
                f"the baseline's time {iso(state.checked)} is within the Activity Log's "
                f"ingestion delay ({self._delay:g} s) of now"
            )
            return _Subscription(None, why, self.now - RETENTION_S)
        since = state.checked - self._margin
        entry = _Subscription(state, None, since)
        entry.events = self._activity(sub, MANAGED_IDENTITY, since)
        return entry

    def _judge_organization(self, org: str, state: OrganizationBaseline) -> _Organization:
        oldest = self.now - (RETENTION_S - self._margin)
        written = self.baseline.written if self.baseline is not None else None
        if written is None:
            return _Organization(None, "the baseline does not say when it was written", oldest)
        if state.checked < oldest or written < oldest:
            why = f"the baseline's time {iso(state.checked)} is older than the audit log's 90 days"
            return _Organization(None, why, oldest)
        if state.checked > self.window_end:
            why = (
                f"the baseline's time {iso(state.checked)} is within the logs' ingestion delay "
                f"({self._delay:g} s) of now"
            )
            return _Organization(None, why, oldest)
        since = min(state.checked, written) - self._margin
        self._audit_log(org, since)
        return _Organization(state, None, since, last_read=written)

    # -- the logs -------------------------------------------------------------------------

    def _activity(self, sub: str, provider: str, since: float) -> Future[list[LogEvent]]:
        """The subscription's events of ``provider`` since ``since`` (one query, cached)."""
        key = (sub, provider.lower())
        with self._lock:
            known = self._logs.get(key)
            if known is not None and known[0] <= since:
                return known[1]
            arm = self._services.arm

            def read() -> list[LogEvent]:
                raw = arm.list_activity_log(
                    sub, _utc(since), resource_provider=provider, retry=self._retry
                )
                return activity_events(raw)

            future = self._pool.submit(read)
            self._logs[key] = (since, future)
            return future

    def _audit_log(self, org: str, since: float) -> Future[list[dict[str, Any]]]:
        with self._lock:
            known = self._audit.get(org.lower())
            if known is not None:
                return known[1]
            devops = self._services.devops
            future = self._pool.submit(
                partial(devops.list_audit_log, org, _utc(since), retry=self._retry)
            )
            self._audit[org.lower()] = (since, future)
            return future

    # -- CredentialSource (observe) -------------------------------------------------------

    def _subscription(self, sub: str) -> _Subscription:
        with self._lock:
            entry = self._subs.get(sub)
            if entry is None:
                why = self.why_full or "the baseline does not cover this subscription"
                entry = _Subscription(None, why, self.now - RETENTION_S)
                self._subs[sub] = entry
            return entry

    def known(self, subscription: str, identity: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        sub = subscription.lower()
        entry = self._subscription(sub)
        if entry.why is None and entry.events is not None and entry.base is not None:
            try:
                touched = touched_identities(entry.events.result())
            except ProviderError as exc:
                with self._lock:
                    entry.why = f"its Activity Log cannot be read: {exc}"
                    entry.base = None
            else:
                ident = str(identity.get("id") or "").lower()
                principal = str((identity.get("properties") or {}).get("principalId") or "")
                known = entry.base.identities.get(ident)
                if known is not None and ident not in touched and known[0] == principal:
                    with self._lock:
                        entry.reused += 1
                        self._credentials[ident] = (sub, principal, known[1])
                    return copy.deepcopy(known[1])
        with self._lock:
            entry.relisted += 1
        return None

    def identity_groups(self, subscription: str) -> Collection[str] | None:
        """The groups the baseline found desired or owned identities in, and those of the
        identities the Activity Log names since: listed one by one (a subscription's list is
        paged at the Managed Identity service's per-resource rate, 0.25 a second). Resource
        Graph and the specs add theirs in observe. None when the subscription is read in full
        or the baseline does not know its groups."""
        sub = subscription.lower()
        entry = self._subscription(sub)
        if entry.why is not None or entry.base is None or entry.events is None:
            return None
        known = entry.base.groups
        if known is None:
            return None
        try:
            events = entry.events.result()
        except ProviderError as exc:
            with self._lock:
                entry.why, entry.base = f"its Activity Log cannot be read: {exc}", None
            return None
        groups = set(known)
        for ident in touched_identities(events):
            if subscription_of(ident) == sub and (group := resource_group_of(ident)):
                groups.add(group)
        with self._lock:
            entry.groups = len(groups)
        return sorted(groups)

    def listed(
        self, subscription: str, identity: Mapping[str, Any], credentials: list[dict[str, Any]]
    ) -> None:
        ident = str(identity.get("id") or "").lower()
        principal = str((identity.get("properties") or {}).get("principalId") or "")
        with self._lock:
            self._credentials[ident] = (subscription.lower(), principal, list(credentials))

    # -- PermissionSource (observe) -------------------------------------------------------

    def _organization(self, org: str) -> _Organization:
        with self._lock:
            entry = self._orgs.get(org)
            if entry is None:
                entry = _Organization(
                    None,
                    self.why_full or "the baseline does not cover this organisation",
                    self.now - RETENTION_S,
                )
                self._orgs[org] = entry
        if entry.why is None and entry.touched is None:
            future = self._audit_log(org, entry.since)
            try:
                entries = future.result()
            except ProviderError as exc:
                why: str | None = f"its audit log cannot be read: {exc}"
                touched: set[str] = set()
            else:
                why = audit_coverage(entries, last_read=entry.last_read, margin_s=self._margin)
                touched = {event.resource for event in audit_events(entries)}
            with self._lock:
                if why is not None:
                    entry.why, entry.base = why, None
                entry.touched = touched
        return entry

    def known_permissions(self, organization: str, endpoint_id: str) -> dict[str, Any] | None:
        org, eid = organization.lower(), endpoint_id.lower()
        entry = self._organization(org)
        with self._lock:
            base = entry.base
            if entry.why is None and base is not None and entry.touched is not None:
                known = base.permissions.get(eid)
                if known is not None and eid not in entry.touched:
                    entry.reused += 1
                    self._permissions.setdefault(org, {})[eid] = known
                    return copy.deepcopy(known)
            entry.relisted += 1
        return None

    def read_permissions(
        self, organization: str, endpoint_id: str, permissions: dict[str, Any]
    ) -> None:
        with self._lock:
            self._permissions.setdefault(organization.lower(), {})[endpoint_id.lower()] = dict(
                permissions
            )

    # -- the report ------------------------------------------------------------------------

    def reads(self) -> list[dict[str, Any]]:
        """What was read how: ``{part, read: "full"|"incremental", why}`` per part."""
        parts: list[dict[str, Any]] = []
        for sub, entry in sorted(self._subs.items()):
            if entry.relisted == 0 and entry.reused == 0:
                continue
            part = f"federated credentials in subscription {sub}"
            if entry.why is not None:
                parts.append({"part": part, "read": "full", "why": entry.why})
                continue
            if entry.groups is not None:
                parts.append(
                    {
                        "part": f"identities in subscription {sub}",
                        "read": "incremental",
                        "why": (
                            f"listed in {entry.groups} resource group"
                            f"{'' if entry.groups == 1 else 's'} that held the specs' or the "
                            "owner's identities at the last run or hold one the Activity Log "
                            "names since, and those the specs and Resource Graph name"
                        ),
                    }
                )
            parts.append(
                {
                    "part": part,
                    "read": "incremental",
                    "why": (
                        f"{entry.relisted} identit{'y' if entry.relisted == 1 else 'ies'} "
                        f"listed again (written or deleted according to the Activity Log since "
                        f"{iso(entry.since)}, or new to the baseline), {entry.reused} kept the "
                        f"baseline's lists. Changes after {iso(self.window_end)} may not be in "
                        "the log yet (ingestion delay): they show in the next run"
                    ),
                }
            )
        for org, org_entry in sorted(self._orgs.items()):
            if org_entry.relisted == 0 and org_entry.reused == 0:
                continue
            part = f"pipeline permissions in Azure DevOps organisation {org}"
            if org_entry.why is not None:
                parts.append({"part": part, "read": "full", "why": org_entry.why})
                continue
            n = org_entry.relisted
            parts.append(
                {
                    "part": part,
                    "read": "incremental",
                    "why": (
                        f"{n} connection{'' if n == 1 else 's'}' permissions read again (named "
                        f"by the audit log since {iso(org_entry.since)}, or new to the "
                        f"baseline), {org_entry.reused} kept the baseline's. Changes after "
                        f"{iso(self.window_end)} may not be in the log yet: they show in the "
                        "next run"
                    ),
                }
            )
        parts.append(
            {
                "part": "identities, role assignments, service connections",
                "read": "full",
                "why": "bulk lists of a few requests each: cheaper than any log",
            }
        )
        return parts

    def attribute(self, changes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """``address -> Attribution.to_json()`` for each change of a drift document."""
        # every read started first, then each attribution finished
        pending = [
            (str(change.get("address") or ""), self._attribution_for(change)) for change in changes
        ]
        return {address: finish().to_json() for address, finish in pending}

    def _object_id(self, change: Mapping[str, Any]) -> str:
        before = change.get("before") or {}
        oid = str(before.get("id") or "")
        if not oid and self.baseline is not None:
            oid = self.baseline.objects.get(str(change.get("address") or ""), ("", ""))[0]
        return oid

    def _attribution_for(self, change: Mapping[str, Any]) -> Callable[[], Attribution]:
        """Start the log reads this change needs; return what finishes its attribution."""
        oid = self._object_id(change)
        if not oid:
            why = (
                "its id is not in the baseline, so the logs cannot be searched for it"
                if self.baseline is not None
                else "it is missing and there is no baseline holding its id to search the logs for"
            )
            return lambda: Attribution(unknown=why)
        if is_devops_id(oid):
            attrs = change.get("before") or change.get("after") or {}
            org = str(attrs.get("organization") or "")
            if not org:
                return lambda: Attribution(unknown="its organisation is not known")
            return self._from_audit(org, oid)
        sub = subscription_of(oid)
        provider = provider_of(oid)
        if sub is None or provider is None:
            return lambda: Attribution(
                unknown="it lives outside a subscription: its changes are in the tenant's "
                "Activity Log, which drift does not read"
            )
        return self._from_activity(sub, provider, oid)

    def _window_start(self, sub: str) -> float:
        if self.baseline is not None:
            state = self.baseline.subscriptions.get(sub)
            if state is not None and state.checked >= self.now - (RETENTION_S - self._margin):
                return min(state.checked, self.window_end) - self._margin
        return self.now - RETENTION_S

    def _from_activity(self, sub: str, provider: str, oid: str) -> Callable[[], Attribution]:
        since = self._window_start(sub)
        future = self._activity(sub, provider, since)

        def finish() -> Attribution:
            try:
                events = future.result()
            except ProviderError as exc:
                return Attribution(
                    unknown=f"the Activity Log of subscription {sub} cannot be read: {exc}"
                )
            found = latest_change(events, oid)
            retention = " (it keeps 90 days)" if since <= self.now - RETENTION_S + 1 else ""
            return attribute(
                found,
                f"no successful write or delete of it in the Activity Log since "
                f"{iso(since)}{retention}; a change after {iso(self.window_end)} may not be in "
                "the log yet (ingestion delay)",
            )

        return finish

    def _from_audit(self, org: str, oid: str) -> Callable[[], Attribution]:
        since = self.now - RETENTION_S
        known = self._orgs.get(org.lower())
        if known is not None and known.base is not None:
            since = known.since
        elif self.baseline is not None and org.lower() in self.baseline.organizations:
            checked = self.baseline.organizations[org.lower()].checked
            if checked >= self.now - (RETENTION_S - self._margin):
                since = checked - self._margin
        future = self._audit_log(org, since)

        def finish() -> Attribution:
            try:
                entries = future.result()
            except ProviderError as exc:
                return Attribution(unknown=f"the audit log of {org} cannot be read: {exc}")
            found = latest_change(audit_events(entries), oid)
            off = auditing_switched_off(entries, found.at if found is not None else since)
            if off is not None:
                last = f" (the last entry for it: {found.caller} at {found.time})" if found else ""
                return Attribution(
                    unknown=f"auditing was turned off in {org} at {off[0]} by {off[1]}: a "
                    f"change made while it was off is not recorded{last}"
                )
            if found is not None:
                return attribute(found, "")
            return Attribution(
                unknown=f"no audit entry for it in {org} since {iso(since)}: the audit log "
                'records only while the "Log Audit Events" policy is on (off by default)'
            )

        return finish

    # -- the new baseline -------------------------------------------------------------------

    def baseline_after(self, live: LiveState, missing: Collection[str] = ()) -> Baseline:
        """The baseline this run leaves: every credential list it used, its window's end,
        the id and fingerprint of every live object, and the last known id of each object in
        ``missing`` (addresses the specs declare and live lacks: drift still reports them, and
        their id is what the logs are searched for)."""
        new = Baseline(owner=self._owner, tenant=str(self._services.tenant_id))
        with self._lock:
            for ident, (sub, principal, creds) in sorted(self._credentials.items()):
                state = new.subscriptions.setdefault(
                    sub, SubscriptionBaseline(self.window_end, groups=[])
                )
                state.identities[ident] = (principal, creds)
                group = resource_group_of(ident)
                if group and state.groups is not None and group not in state.groups:
                    state.groups.append(group)
        orgs: set[str] = set()
        for address, resource in live.resources.items():
            new.objects[str(address)] = (str(resource.attrs.get("id") or ""), resource.fingerprint)
            org = resource.attrs.get("organization")
            if isinstance(org, str) and org:
                orgs.add(org.lower())
        with self._lock:
            permissions = {org: dict(found) for org, found in self._permissions.items()}
        for org in sorted(orgs | set(permissions)):
            new.organizations[org] = OrganizationBaseline(
                self.window_end, dict(sorted(permissions.get(org, {}).items()))
            )
        if self.baseline is not None:
            for name in missing:
                if name not in new.objects and name in self.baseline.objects:
                    new.objects[name] = self.baseline.objects[name]
        return new

    def write(self, live: LiveState, missing: Collection[str] = ()) -> None:
        """Write the new baseline atomically (a temporary file beside it, then a rename)."""
        if self._path is None:
            return
        self._read_audit_logs()
        document = self.baseline_after(live, missing).to_json(written=self.now)
        target = Path(self._path)
        folder = target.parent
        if target.is_dir() or not folder.is_dir():
            raise ConfigError(
                f"--baseline {self._path}: "
                + (
                    "is a folder"
                    if target.is_dir()
                    else f"the folder {str(folder)!r} does not exist"
                )
            )
        tmp: Path | None = None
        try:
            fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
            tmp = Path(name)
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                json.dump(document, stream, indent=1, sort_keys=True)
                stream.write("\n")
            tmp.replace(target)
            tmp = None
        except OSError as exc:
            raise ConfigError(
                f"--baseline {self._path}: cannot write the baseline: {exc.strerror or exc}"
            ) from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def _read_audit_logs(self) -> None:
        """Read the audit log of every organisation whose permissions this run read or kept,
        if this run has not yet: the entry that read leaves (``AuditLog.AccessLog``) is what
        tells the next run that auditing was on. An unreadable log only means the next run
        reads permissions in full."""
        with self._lock:
            wanted = sorted(set(self._permissions) - set(self._audit))
        futures = [self._audit_log(org, self.now - 60.0) for org in wanted]
        for future in futures:
            with contextlib.suppress(ProviderError):
                future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
