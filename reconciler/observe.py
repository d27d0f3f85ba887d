"""Read live Azure and Azure DevOps state in bulk and put it in canonical form.

The number of requests grows with identities, organisations, projects and connections, never
with federated credentials or role assignments:

- identities: one paged list per subscription the specs touch. Per subscription rather than
  per resource group: it also finds owned identities in resource groups the specs no longer
  mention (prune needs them), and it is one call however many groups there are. Where the
  caller may only read some resource groups (403), it falls back to one list per desired group.
- federated credentials: one list per identity that is desired or owned, started as each
  page of identities arrives.
- role assignments: one paged list per subscription that desired scopes or identities touch
  (it returns everything at or below it); one ``atScope()`` list per management-group scope
  (all principals at once, which also gives the count the 500 limit needs).
- role definitions: one list per subscription (or management group) of a desired scope, cached.
- resource groups: one list per subscription the specs name (identities, scopes, connections),
  so that plan can tell a misspelt resource group or subscription before apply meets it. A
  subscription that does not exist (404), or that refuses the group list and its other lists
  (403), is recorded, not raised; those lists then count as empty, and the planner reports it
  where the specs name it. A 403 on the group list alone (a caller with access to some resource
  groups only) leaves the groups unjudged.
- Azure DevOps: connectionData and the project list once per organisation (one that does not
  exist is recorded for the planner to report, not raised); service connections
  once per project of each organisation the specs use. Every project, not only the desired
  ones: an owned connection may live in a project the specs no longer name, and prune must
  find it; Azure DevOps has no organisation-wide endpoint list. Pipelines once per project
  whose connections declare pipeline permissions; pipeline permissions once per such
  connection.

Every read goes through ``retry.call_with_retry`` on the caller's clock, paged lists page by
page (a retry resumes at the failed page). Under throttling the Managed Identity reads are
paced to the documented limits by the providers (``providers/pacing.py``), so a large plan runs
at the rate the limits allow instead of into a storm of 429s.

Reach (where the owner's objects may be, beyond what the specs name; README "Safety"): two
Azure Resource Graph queries, sent before anything else and answered while the lists above
run, find every identity carrying the owner tag and every role assignment carrying the owner
marker in every subscription the principal can read; the subscriptions and management groups
they name are then read like those of the specs. Every federated credential read names, in
its issuer or subject, the Azure DevOps organisation of the connection it serves; an
organisation id the specs do not name is resolved to its name with the accounts API (two
requests, only when such an id appears) and read like the others. Every owned identity also
carries an inventory (``reconciler-org-{org id}: {name}`` tags, on the identity lists and the
Resource Graph rows alike): an organisation it records that the specs do not name is read by
its recorded name (connectionData and projects), or resolved by id like a credential's when
that name is not it any more; nothing more is read when the specs name them all. ``reach`` in
the specs adds places to read. A place that cannot be read raises ``ReachError``: a plan that might
miss a delete is never shown as complete.

Plan never writes: every call here is a read.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from reconciler.errors import NotFoundError, PermanentError, ProviderError, ReachError
from reconciler.kinds import kind_of
from reconciler.kinds.executors import EXECUTORS
from reconciler.kinds.executors.decoding import (
    LiveIndex,
    Raw,
    ReadPlan,
    identity_key_of,
    resource_group_of,
)
from reconciler.kinds.executors.role_assignment import (
    MANAGEMENT_GROUPS,
    guid_of,
    is_management_group,
    subscription_of,
)
from reconciler.kinds.executors.service_connection import owning_project, project_names
from reconciler.kinds.service_connection import endpoint_gone
from reconciler.model import (
    DesiredState,
    ExportScope,
    LiveState,
    RoleDefinition,
    connection_key,
)
from reconciler.ownership import (
    OWNER_TAG,
    mark_description,
    read_inventory,
    read_tags,
)
from reconciler.retry import SYSTEM_CLOCK, Clock, RetryPolicy, call_with_retry

if TYPE_CHECKING:
    from reconciler.providers import Services
    from reconciler.providers.http import Retry

T = TypeVar("T")

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Azure DevOps issuer: https://vstoken.dev.azure.com/{organisation id} (azure-contracts §3.4)
_VSTOKEN_ISSUER = re.compile(rf"^https://vstoken\.[^/]+/({_GUID})/?$", re.IGNORECASE)
# Entra issuer: the subject ends in /sc/{organisation id}/{service connection id}
_ENTRA_SUBJECT = re.compile(rf"^/eid1/.*/sc/({_GUID})/{_GUID}$", re.IGNORECASE)


def kql_string(text: str) -> str:
    """``text`` as a KQL single-quoted string literal: a backslash and a quote are escaped,
    so no value can end the literal early [doc: Kusto "The string data type"]. Line breaks
    and NUL are refused outright (owner names never hold them: the schema's pattern)."""
    if any(c in text for c in "\r\n\0"):
        raise ValueError(f"refusing to put {text!r} into a Resource Graph query")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def owned_identities_query(owner: str) -> str:
    """Resource Graph: every user-assigned identity whose owner tag names ``owner`` (tags are
    indexed; ``=~`` compares case-insensitively, observe then compares exactly), with its tags
    (the inventory of organisations, README "Safety")."""
    return (
        "resources | where type =~ 'microsoft.managedidentity/userassignedidentities' "
        f"| where tags['{OWNER_TAG}'] =~ {kql_string(owner)} | project id, subscriptionId, tags"
    )


def owned_assignments_query(owner: str) -> str:
    """Resource Graph: every role assignment whose description ends with the owner marker."""
    return (
        "authorizationresources | where type =~ 'microsoft.authorization/roleassignments' "
        f"| where properties.description endswith {kql_string(mark_description(None, owner))} "
        "| project id, subscriptionId, scope = tostring(properties.scope)"
    )


def organization_of(issuer: Any, subject: Any) -> str | None:
    """The Azure DevOps organisation id a federated credential names, if it serves a service
    connection: the legacy issuer names it, the Entra subject carries it (lower-case)."""
    found = _VSTOKEN_ISSUER.match(str(issuer or "")) or _ENTRA_SUBJECT.match(str(subject or ""))
    return found.group(1).lower() if found else None


class CredentialSource(Protocol):
    """Where federated credential lists may come from instead of the service (the incremental
    drift reader, ``changefeed.py``). Both methods are called from the read threads."""

    def known(self, subscription: str, identity: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """The identity's credentials as last read, when nothing can have changed them since
        (``identity``: the item as the identity list returned it); None: list them."""

    def listed(
        self, subscription: str, identity: Mapping[str, Any], credentials: list[dict[str, Any]]
    ) -> None:
        """The identity's credentials as just listed from the service."""

    def identity_groups(self, subscription: str) -> Collection[str] | None:
        """The resource groups that can hold a desired or owned identity of the subscription,
        besides those the specs and Resource Graph name, when that is known (listed one by
        one instead of the whole subscription); None: list the whole subscription."""


class PermissionSource(Protocol):
    """Where a connection's pipeline permissions may come from instead of the service (the
    incremental drift reader, from the Azure DevOps audit log)."""

    def known_permissions(self, organization: str, endpoint_id: str) -> dict[str, Any] | None:
        """The permissions as last read when nothing can have changed them since; None: read."""

    def read_permissions(
        self, organization: str, endpoint_id: str, permissions: dict[str, Any]
    ) -> None:
        """The permissions as just read from the service."""


def observe(
    services: Services,
    desired: DesiredState,
    *,
    workers: int = 16,
    clock: Clock = SYSTEM_CLOCK,
    policy: RetryPolicy | None = None,
    on_retry: Callable[[Exception, float], None] | None = None,
    export: ExportScope | None = None,
    credentials: CredentialSource | None = None,
    permissions: PermissionSource | None = None,
) -> LiveState:
    """``on_retry(exc, delay)`` hears of every read about to be retried (``RetryNotices``).

    ``export`` (``reconciler export``): read every object in that scope instead of the
    declared and owned ones (``desired`` then holds no resources, its reach the scope's
    subscriptions and organisations): every identity's credentials, the role definitions of
    every subscription, the pipeline permissions of every connection; nothing beyond the
    scope (no Resource Graph search, no inventory, no organisation a credential names).

    ``credentials`` and ``permissions`` may answer credential lists and pipeline permissions
    instead of the service (incremental drift)."""
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="observe") as pool:
        reader = _Reader(
            pool, clock, policy or RetryPolicy(), window=max(1, workers), on_retry=on_retry
        )
        try:
            raw = _read(services, desired, reader, export, credentials, permissions)
        except BaseException:
            # one read failed for good (or Ctrl-C): start nothing more, fail fast
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return _canonical(raw, desired, services.tenant_id, export)


# -- what to read ------------------------------------------------------------------------


class _Reader:
    """Submits reads to the bounded pool, each through the one retry mechanism."""

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        clock: Clock,
        policy: RetryPolicy,
        *,
        window: int = 16,
        on_retry: Callable[[Exception, float], None] | None = None,
    ) -> None:
        self._on_retry = on_retry
        self._pool = pool
        self._clock = clock
        self._policy = policy
        self._window = window
        self._lock = threading.Lock()
        self._lanes: dict[str, deque[tuple[Future[Any], Callable[[], Any]]]] = {}
        self._turns: deque[str] = deque()
        self._in_pool = 0

    def retry(self, fn: Callable[[], T], /) -> T:
        return call_with_retry(fn, clock=self._clock, policy=self._policy, on_retry=self._on_retry)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """A single request, retried as a whole."""
        return self._pool.submit(self.retry, partial(fn, *args, **kwargs))

    def submit_paged(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """A paged list: ``fn`` retries each page on its own with ``retry``."""
        return self._pool.submit(fn, *args, retry=self.retry)

    def submit_fair(self, lane: str, fn: Callable[..., T], *args: Any) -> Future[T]:
        """A paged list queued in ``lane`` (a subscription) and let into the pool round-robin
        over the lanes, at most ``window`` at a time.

        A paced request waits for its turn inside its worker. Submitted in arrival order, a
        whole page of one subscription's credential lists would fill every worker, and the
        plan would run at that subscription's rate (5/s) while the others' buckets stay full;
        taken in turns, it runs at the tenant's (15/s)."""
        outer: Future[T] = Future()
        with self._lock:
            queue = self._lanes.setdefault(lane, deque())
            if not queue:
                self._turns.append(lane)
            queue.append((outer, partial(fn, *args, retry=self.retry)))
        self._pump()
        return outer

    def _pump(self) -> None:
        while True:
            with self._lock:
                if self._in_pool >= self._window or not self._turns:
                    return
                lane = self._turns.popleft()
                queue = self._lanes[lane]
                outer, call = queue.popleft()
                if queue:
                    self._turns.append(lane)
                self._in_pool += 1
            if not outer.set_running_or_notify_cancel():
                self._release()
                continue
            try:
                inner = self._pool.submit(call)
            except RuntimeError as exc:  # the pool shut down: a read failed for good
                outer.set_exception(exc)
                self._release()
                continue
            inner.add_done_callback(partial(self._finished, outer))

    def _release(self) -> None:
        with self._lock:
            self._in_pool -= 1

    def _finished(self, outer: Future[Any], inner: Future[Any]) -> None:
        self._release()
        if inner.cancelled():
            outer.set_exception(CancelledError())
        elif (exc := inner.exception()) is not None:
            outer.set_exception(exc)
        else:
            outer.set_result(inner.result())
        self._pump()


def _read(
    services: Services,
    desired: DesiredState,
    reader: _Reader,
    export: ExportScope | None = None,
    source: CredentialSource | None = None,
    permission_source: PermissionSource | None = None,
) -> Raw:
    arm = services.arm
    devops = services.devops
    raw = Raw()
    reach = desired.reach

    # where the specs send the reads: each kind's executor says (in plan order)
    plan = ReadPlan()
    for executor in sorted(EXECUTORS.values(), key=lambda e: kind_of(e.kind).plan_order):
        executor.plan_reads(desired.of_kind(executor.kind), plan)

    # phase 0: where else the owner's objects are (answered while phase 1 runs)
    f_graph = {
        what: reader.submit_paged(partial(arm.query_resource_graph, query, what=what))
        for what, query in (
            ("searching for identities", owned_identities_query(desired.owner)),
            ("searching for role assignments", owned_assignments_query(desired.owner)),
        )
        if export is None  # an export reads its scope, nothing beyond
    }

    def graph(what: str) -> list[dict[str, Any]]:
        if export is not None:
            return []
        try:
            return f_graph[what].result()
        except ProviderError as exc:
            raise ReachError(
                f"cannot search every readable subscription for objects of owner "
                f"'{desired.owner}' with Azure Resource Graph ({what}): {exc}. Without that "
                "search an owned object outside the specs' subscriptions could be missed, so "
                "no plan is made"
            ) from None

    # desired resource groups per subscription, for the 403 fallback
    groups = plan.identity_groups
    scope_subscriptions = plan.scope_subscriptions
    management_groups = dict(plan.management_groups)
    identity_subscriptions = set(groups) | {s.lower() for s in reach.subscriptions}
    assignment_subscriptions = scope_subscriptions | identity_subscriptions
    # role names resolve only where the specs assign; reach only adds places to search
    assigned_groups = dict(management_groups)
    for scope in reach.management_groups:
        management_groups.setdefault(scope.rstrip("/").lower(), scope.rstrip("/"))

    orgs = dict(plan.organizations)
    permission_projects = plan.permission_projects
    group_subscriptions = set(groups) | scope_subscriptions | plan.group_subscriptions
    for org in reach.organizations:
        orgs.setdefault(org.lower(), org)

    # phase 1: the lists that need nothing but the specs
    # credentials of desired or owned identities, listed as each page of identities arrives
    desired_identities = plan.identities
    f_credentials: dict[str, Future[list[dict[str, Any]]]] = {}
    credentials_lock = threading.Lock()

    def list_credentials(sub: str, page: list[dict[str, Any]]) -> None:
        for item in page:
            key = identity_key_of(item, sub)
            _, owner = read_tags(item.get("tags"))
            if export is not None:
                if not export.holds_identity(key):
                    continue
            elif key not in desired_identities and owner != desired.owner:
                continue
            with credentials_lock:
                if key in f_credentials:
                    continue
                rg, name = resource_group_of(item["id"]), str(item["name"])
                if source is not None:
                    f_credentials[key] = _from_source(reader, source, sub, item, rg, name, arm)
                    continue
                f_credentials[key] = reader.submit_fair(
                    sub, partial(_tolerate_missing, arm.list_credentials), sub, rg, name
                )

    def list_identities(sub: str, *, retry: Retry) -> list[dict[str, Any]]:
        on_page = partial(list_credentials, sub)
        # incremental drift: the groups that can hold a desired or owned identity
        narrowed = source.identity_groups(sub) if source is not None else None
        refused: PermanentError | None = None
        if narrowed is None:
            try:
                return arm.list_identities(sub, retry=retry, on_page=on_page)
            except PermanentError as exc:
                if exc.status != 403:
                    raise
                refused = exc
        # only some resource groups readable (or narrowed): read the ones the specs name and
        # the ones holding an owned identity (Resource Graph named them)
        wanted = dict(groups.get(sub, {}))
        for rg in narrowed or ():
            wanted.setdefault(rg.lower(), rg)
        for row in graph("searching for identities"):
            if str(row.get("subscriptionId") or "").lower() == sub:
                rg = resource_group_of(str(row.get("id") or ""))
                wanted.setdefault(rg.lower(), rg)
        if not wanted and refused is not None:
            raise ReachError(
                f"cannot list the identities of subscription {sub}: {refused}"
            ) from None
        found: list[dict[str, Any]] = []
        for rg in sorted(wanted.values()):
            try:
                found.extend(arm.list_identities(sub, rg, retry=retry, on_page=on_page))
            except NotFoundError:
                continue
        return found

    def management_group(scope: str, *, retry: Retry) -> list[dict[str, Any]]:
        return arm.list_role_assignments_for_scope(scope, at_scope=True, retry=retry)

    # first: the other lists of a subscription that turns out missing wait for its verdict
    f_groups = {
        sub: reader.submit_paged(_readable, arm.list_resource_groups, sub)
        for sub in sorted(group_subscriptions)
    }

    unreadable: set[str] = set()  # subscriptions where a list other than groups failed too

    def guarded(sub: str, fn: Callable[..., T], *args: Any, retry: Retry) -> T | list[Any]:
        """``fn``'s list; empty if the subscription itself is missing or unreadable."""
        try:
            return fn(*args, retry=retry)
        except (NotFoundError, PermanentError) as exc:
            if exc.status not in (403, 404) or sub not in f_groups:
                raise  # a place reach adds: ReachError's to tell
            if f_groups[sub].result()[1] == 200:
                raise
            unreadable.add(sub)
            return []

    f_identities = {
        sub: reader.submit_paged(guarded, sub, list_identities, sub)
        for sub in sorted(identity_subscriptions)
    }
    f_assignments: dict[str, Future[list[dict[str, Any]]]] = {
        sub: reader.submit_paged(guarded, sub, arm.list_role_assignments, sub)
        for sub in sorted(assignment_subscriptions)
    }
    for key, scope in sorted(management_groups.items()):
        f_assignments[key] = reader.submit_paged(management_group, scope)
    f_definitions: dict[str, Future[list[dict[str, Any]]]] = {
        sub: reader.submit_paged(guarded, sub, arm.list_role_definitions, f"/subscriptions/{sub}")
        # an export names the roles of every assignment found in its subscriptions
        for sub in sorted(scope_subscriptions | (identity_subscriptions if export else set()))
    }
    for key, scope in sorted(assigned_groups.items()):
        f_definitions[key] = reader.submit_paged(arm.list_role_definitions, scope)
    f_orgs = {
        org: reader.submit(_organization, devops.connection_data, org) for org in orgs.values()
    }
    f_projects = {
        org: reader.submit_paged(partial(_tolerate_missing, devops.list_projects), org)
        for org in orgs.values()
    }
    f_pipelines = {
        key: reader.submit_paged(partial(_tolerate_missing, devops.list_pipelines), org, project)
        for key, (org, project) in sorted(permission_projects.items())
    }

    # the places Resource Graph found, read like the specs' own
    for row in graph("searching for identities"):
        sub = str(row.get("subscriptionId") or "").lower()
        if sub and sub not in f_identities:
            f_identities[sub] = reader.submit_paged(list_identities, sub)
        if sub and sub not in f_assignments:
            f_assignments[sub] = reader.submit_paged(arm.list_role_assignments, sub)
    for row in graph("searching for role assignments"):
        scope = str(row.get("scope") or "").rstrip("/")
        sub = str(row.get("subscriptionId") or "").lower() or (subscription_of(scope) or "")
        if sub:
            if sub not in f_assignments:
                f_assignments[sub] = reader.submit_paged(arm.list_role_assignments, sub)
        elif is_management_group(scope) and scope.lower() not in f_assignments:
            f_assignments[scope.lower()] = reader.submit_paged(management_group, scope)

    raw.identities = {sub: f.result() for sub, f in f_identities.items()}
    # the inventory tags of every owned identity (README "Safety"): organisations where a
    # connection of this owner signs in; one the specs do not name is read by its recorded
    # name (connectionData, then its projects), and by id through the accounts API below if
    # that name is not it any more. Nothing more is read when the specs name them all.
    recorded = (
        _inventory(raw.identities, graph("searching for identities"), desired.owner)
        if export is None
        else {}
    )
    by_name: dict[str, tuple[str, set[str]]] = {}
    for org_id, (name, _) in sorted(recorded.items()):
        if name and name.lower() not in orgs:
            by_name.setdefault(name.lower(), (name, set()))[1].add(org_id)
    f_recorded = {
        name: reader.submit_paged(_recorded_organization, devops, name, frozenset(ids))
        for name, ids in by_name.values()
    }
    forbidden: dict[str, str] = {}
    for sub, f_group in f_groups.items():
        found, status, reason = f_group.result()
        if status == 200:
            raw.resource_groups[sub] = found
        elif status == 404:
            raw.subscription_errors[sub] = reason
        else:
            forbidden[sub] = reason
    for org, f_org in f_orgs.items():
        data, missing = f_org.result()
        if missing is None:
            raw.organizations[org] = str(data["instanceId"])
        else:
            raw.organization_errors[org] = missing
    raw.projects = {org: f.result() for org, f in f_projects.items() if org in raw.organizations}
    for name, f_found in f_recorded.items():
        found_id, found_projects = f_found.result()
        if found_id is not None:
            raw.organizations[name] = found_id
            raw.projects[name] = found_projects

    # phase 2: connections of every project (credentials started with the identity pages)
    f_endpoints = {
        (org, str(project["name"])): reader.submit(
            _tolerate_missing, devops.list_endpoints, org, str(project["name"])
        )
        for org, projects in raw.projects.items()
        for project in projects
        if export is None or export.holds_project(org, str(project["name"]))
    }

    raw.assignments = {key: f.result() for key, f in f_assignments.items()}
    raw.definitions = {key: f.result() for key, f in f_definitions.items()}
    raw.pipelines = {key: f.result() for key, f in f_pipelines.items()}
    raw.credentials = {key: f.result() for key, f in f_credentials.items()}

    # organisations the credentials name that the specs do not: read them too
    extra = (
        _organizations_to_resolve(raw, {k: where for k, (_, where) in recorded.items()})
        if export is None
        else {}
    )
    if extra:
        names = _resolve_organizations(reader.retry, devops, extra, desired.owner)
        f_extra = {name: reader.submit_paged(devops.list_projects, name) for name in sorted(names)}
        for name, future in f_extra.items():
            try:
                projects = future.result()
            except ProviderError as exc:
                raise ReachError(
                    f"cannot read Azure DevOps organisation {name} ({names[name]}), named by "
                    f"{extra[names[name]]}: {exc}"
                ) from None
            raw.organizations[name] = names[name]
            raw.projects[name] = projects
            for item in projects:
                f_endpoints[(name, str(item["name"]))] = reader.submit(
                    _tolerate_missing, devops.list_endpoints, name, str(item["name"])
                )
    raw.endpoints = {key: f.result() for key, f in f_endpoints.items()}
    # 403 on the group list alone is a caller with access to some resource groups only (the
    # identity lists fell back to those): nothing to judge. Unreadable only if the rest failed too.
    raw.subscription_errors.update(
        {sub: reason for sub, reason in forbidden.items() if sub in unreadable}
    )

    # phase 3: pipeline permissions of the connections whose specs manage them
    wanted = plan.permission_connections
    f_permissions: dict[str, Future[dict[str, Any]]] = {}
    f_export_pipelines: dict[tuple[str, str], Future[list[dict[str, Any]]]] = {}
    declared = plan.connections
    for (org, project), endpoints in sorted(raw.endpoints.items()):
        names = project_names(raw.projects.get(org) or [])
        for endpoint in endpoints:
            if endpoint_gone(endpoint):
                continue
            owning = owning_project(endpoint, org, project, names, declared)
            endpoint_id = str(endpoint.get("id") or "").lower()
            if owning is None or not endpoint_id or endpoint_id in f_permissions:
                continue
            if export is not None:
                # every connection's permissions, named by its owning project's pipelines
                if not export.holds_project(org, owning):
                    continue
                if (org.lower(), owning.lower()) not in raw.pipelines:
                    raw.pipelines[(org.lower(), owning.lower())] = []
                    f_export_pipelines[(org.lower(), owning.lower())] = reader.submit_paged(
                        partial(_tolerate_missing, devops.list_pipelines), org, owning
                    )
            elif connection_key(org, owning, str(endpoint.get("name"))) not in wanted:
                continue
            if permission_source is not None:
                f_permissions[endpoint_id] = _permissions_from(
                    reader, permission_source, devops, org, owning, endpoint_id
                )
                continue
            f_permissions[endpoint_id] = reader.submit(
                _permissions_or_empty, devops, org, owning, endpoint_id
            )
    raw.pipelines.update({key: f.result() for key, f in f_export_pipelines.items()})
    raw.permissions = {key: f.result() for key, f in f_permissions.items()}
    return raw


def _from_source(
    reader: _Reader,
    source: CredentialSource,
    sub: str,
    item: Mapping[str, Any],
    rg: str,
    name: str,
    arm: Any,
) -> Future[list[dict[str, Any]]]:
    """The credentials ``source`` knows, else listed (and told to ``source``)."""
    known = source.known(sub, item)
    if known is not None:
        done: Future[list[dict[str, Any]]] = Future()
        done.set_result(known)
        return done

    def listing(*, retry: Retry) -> list[dict[str, Any]]:
        found = _tolerate_missing(arm.list_credentials, sub, rg, name, retry=retry)
        source.listed(sub, item, found)
        return found

    return reader.submit_fair(sub, listing)


def _permissions_from(
    reader: _Reader,
    source: PermissionSource,
    devops: Any,
    org: str,
    project: str,
    endpoint_id: str,
) -> Future[dict[str, Any]]:
    """The permissions ``source`` knows, else read (and told to ``source``)."""
    known = source.known_permissions(org, endpoint_id)
    if known is not None:
        done: Future[dict[str, Any]] = Future()
        done.set_result(known)
        return done

    def reading() -> dict[str, Any]:
        found = _permissions_or_empty(devops, org, project, endpoint_id)
        source.read_permissions(org, endpoint_id, found)
        return found

    return reader.submit(reading)


def _inventory(
    identities: Mapping[str, list[dict[str, Any]]], rows: Iterable[Mapping[str, Any]], owner: str
) -> dict[str, tuple[str, str]]:
    """The inventory of every identity of ``owner`` read (ARM lists and Resource Graph rows):
    organisation id (lower case) -> (recorded name, the first identity recording it)."""
    found: dict[str, tuple[str, str]] = {}
    items = [item for _, listed in sorted(identities.items()) for item in listed]
    for item in [*items, *rows]:
        tags = item.get("tags")
        if not isinstance(tags, dict) or read_tags(tags)[1] != owner:
            continue
        name = str(item.get("name") or str(item.get("id") or "").rsplit("/", 1)[-1])
        for org_id, org_name in sorted(read_inventory(tags).items()):
            found.setdefault(org_id, (org_name, f"the inventory tag of identity {name}"))
    return found


def _recorded_organization(
    devops: Any, name: str, ids: Collection[str], *, retry: Retry
) -> tuple[str | None, list[dict[str, Any]]]:
    """An organisation an inventory records, read by its recorded name: (its id, its projects)
    when the name still belongs to one of ``ids``; (None, []) when it does not answer under
    that name or is another organisation now (renamed: resolved by id instead)."""
    try:
        data = retry(partial(devops.connection_data, name))
    except (NotFoundError, PermanentError):
        return None, []
    org_id = str(data.get("instanceId") or "").lower()
    if org_id not in ids:
        return None, []
    projects: list[dict[str, Any]] = devops.list_projects(name, retry=retry)
    return org_id, projects


def _organizations_to_resolve(raw: Raw, recorded: Mapping[str, str]) -> dict[str, str]:
    """Organisation ids named by the credentials read, or recorded in an owned identity's
    inventory (``recorded``: id -> where), that no organisation read has, each with the first
    place naming it (for messages)."""
    known = {org_id.lower() for org_id in raw.organizations.values()}
    found: dict[str, str] = {
        org_id: where for org_id, where in sorted(recorded.items()) if org_id not in known
    }
    for identity, creds in sorted(raw.credentials.items()):
        for cred in creds:
            props = cred.get("properties") or {}
            org_id = organization_of(props.get("issuer"), props.get("subject"))
            if org_id is not None and org_id not in known:
                name = str(cred.get("name", "")).rsplit("/", 1)[-1]
                found.setdefault(
                    org_id,
                    f"federated credential {name} on identity {identity.rsplit('/', 1)[-1]}",
                )
    return found


def _resolve_organizations(
    retry: Callable[[Callable[[], Any]], Any], devops: Any, ids: Mapping[str, str], owner: str
) -> dict[str, str]:
    """Names for organisation ids (name -> id) from the organisations the signed-in identity
    belongs to; ``ReachError`` naming every id that cannot be resolved."""
    try:
        accounts = retry(devops.list_member_organizations)
    except ProviderError as exc:
        listed = ", ".join(f"{org_id} (named by {where})" for org_id, where in sorted(ids.items()))
        raise ReachError(
            f"cannot find which Azure DevOps organisations these ids are: {listed}; the list of "
            f"organisations the signed-in identity belongs to cannot be read: {exc}. A "
            f"service connection of owner '{owner}' may be there, so no plan is made"
        ) from None
    by_id = {
        str(a.get("accountId") or "").lower(): str(a.get("accountName") or "") for a in accounts
    }
    missing = sorted(org_id for org_id in ids if not by_id.get(org_id))
    if missing:
        listed = ", ".join(f"{org_id} (named by {ids[org_id]})" for org_id in missing)
        raise ReachError(
            f"cannot read Azure DevOps organisation {listed}: the signed-in identity is not a "
            f"member of it. A service connection of owner '{owner}' may be there, so no plan "
            "is made; give the signed-in identity access to it"
        )
    return {by_id[org_id]: org_id for org_id in sorted(ids)}


def _tolerate_missing(
    fn: Callable[..., list[dict[str, Any]]], *args: str, **kwargs: Any
) -> list[dict[str, Any]]:
    """A parent that vanished between two reads (or a project that does not exist) has no
    children: the planner will create what is missing."""
    try:
        return fn(*args, **kwargs)
    except NotFoundError:
        return []


def _readable(
    fn: Callable[..., list[dict[str, Any]]], *args: str, retry: Retry
) -> tuple[list[dict[str, Any]], int, str]:
    """A subscription-level list and 200, or the status (404, 403) and why it failed."""
    try:
        return fn(*args, retry=retry), 200, ""
    except NotFoundError as exc:
        return [], 404, f"{exc.code or 'NotFound'}: {exc}"
    except PermanentError as exc:
        if exc.status != 403:
            raise
        return [], 403, f"{exc.code or 'Forbidden'}: {exc}"


def _organization(
    fn: Callable[[str], dict[str, Any]], org: str
) -> tuple[dict[str, Any], str | None]:
    """connectionData of an organisation, or why it does not answer (it does not exist)."""
    try:
        return fn(org), None
    except NotFoundError as exc:
        return {}, str(exc)


def _permissions_or_empty(devops: Any, org: str, project: str, endpoint_id: str) -> dict[str, Any]:
    try:
        result: dict[str, Any] = devops.get_pipeline_permissions(org, project, endpoint_id)
        return result
    except NotFoundError:
        return {}


# -- canonical form ----------------------------------------------------------------------


def _canonical(
    raw: Raw, desired: DesiredState, tenant_id: str, export: ExportScope | None = None
) -> LiveState:
    """Each kind's executor decodes its objects (in plan order: identities first, whose
    principal and client ids the others point at); the rest is the context the planner reads
    (role definitions and counts, organisations, projects, pipelines, resource groups)."""
    index = LiveIndex(desired.owner, export=export)
    index.pipelines = {
        f"{org}/{project}": {str(p["name"]): int(p["id"]) for p in items}
        for (org, project), items in raw.pipelines.items()
    }
    for executor in sorted(EXECUTORS.values(), key=lambda e: kind_of(e.kind).plan_order):
        executor.decode(raw, index, desired)
    resources = index.resources

    counts: dict[str, int] = {}
    for scope_key, items in raw.assignments.items():
        if scope_key.startswith(MANAGEMENT_GROUPS):
            counts[scope_key] = sum(
                1
                for i in items
                if str((i.get("properties") or {}).get("scope") or "").lower().rstrip("/")
                == scope_key
            )
        else:
            prefix = f"/subscriptions/{scope_key}"
            counts[scope_key] = sum(
                1
                for i in items
                if str((i.get("properties") or {}).get("scope") or "").lower().startswith(prefix)
            )

    definitions = {
        scope_key: tuple(
            sorted(
                (
                    RoleDefinition(
                        guid=str(d.get("name") or guid_of(d.get("id")) or "").lower(),
                        name=str((d.get("properties") or {}).get("roleName") or ""),
                        role_type=str((d.get("properties") or {}).get("type") or "BuiltInRole"),
                    )
                    for d in items
                ),
                key=lambda d: (d.name.lower(), d.guid),
            )
        )
        for scope_key, items in raw.definitions.items()
    }

    organizations = {org.lower(): org_id for org, org_id in raw.organizations.items()}
    projects = {
        f"{org}/{p['name']}".lower(): str(p.get("id") or "")
        for org, items in raw.projects.items()
        for p in items
    }
    project_names_of = {
        org.lower(): tuple(sorted(str(p["name"]) for p in items))
        for org, items in raw.projects.items()
    }
    resource_groups = {
        sub: tuple(sorted(str(g.get("name") or "") for g in items))
        for sub, items in raw.resource_groups.items()
    }

    return LiveState(
        # address order; a key of (kind, key) sorts the same, without the dataclass __lt__
        resources=dict(sorted(resources.items(), key=lambda item: (item[0].kind, item[0].key))),
        role_definitions=definitions,
        role_assignment_counts=counts,
        organizations=organizations,
        projects=projects,
        pipelines=index.pipelines,
        tenant_id=tenant_id,
        federations={pair: tuple(sorted(keys)) for pair, keys in sorted(index.federations.items())},
        project_names=project_names_of,
        resource_groups=resource_groups,
        subscription_errors=dict(raw.subscription_errors),
        organization_errors={o.lower(): why for o, why in raw.organization_errors.items()},
    )
