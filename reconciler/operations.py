"""Execute one planned change against the services: ``perform(change, ctx)``.

The apply engine schedules changes, serialises federated-credential writes per identity and
retries; this module knows what each kind's create, update, delete and replace mean at the
service boundary, and resolves the values a plan could only mark "known after apply" from the
results of the changes before it (``ctx.results``) or from live state.

Waiting conditions become ``TransientError`` within a bounded window, so that the engine's one
retry loop (jittered backoff, honouring server hints, on its clock) does the waiting:
``PrincipalNotFound`` only for principals this run created, read-after-write 404s, Azure
DevOps' refusal to delete a connection whose credential was just removed. A connection's
readiness, and its disappearance after a delete (Azure DevOps deletes asynchronously), are
polled here, on ``ctx.clock``, because they are part of creating and deleting it.

A change of several requests runs them as named steps (``_step``): a step done in this run is
not done again, so the engine's retry of the change resumes at the step that failed (with a
retry budget of its own), and a failure says which steps were done and which one failed.
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from reconciler.changes import Action, Change
from reconciler.errors import (
    ConflictError,
    NotFoundError,
    PermanentError,
    ProviderError,
    StepPermanentError,
    StepTransientError,
    TransientError,
)
from reconciler.kinds.service_connection import endpoint_gone
from reconciler.model import UNKNOWN, Address, Kind, LiveState
from reconciler.ownership import mark_description, mark_tags, read_description, read_tags
from reconciler.retry import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from reconciler.providers import Services

T = TypeVar("T")

# what azure DevOps records as the connection's ARM endpoint (data, not where we talk)
ARM_ENDPOINT_URL: Final = "https://management.azure.com/"
_UNKNOWN_TEXT: Final = "(known after apply)"
_EXISTING_ID_RE: Final = re.compile(r"existing role assignment is ([0-9a-fA-F]{32})")
_DELETE_REFUSED_TEXT: Final = "cannot delete this service connection while federated credentials"


@dataclass
class ApplyContext:
    """What every change of one apply run shares. ``results`` and ``created_principals`` are
    written by concurrent workers: go through the methods, which lock."""

    services: Services
    live: LiveState
    owner: str
    clock: Clock = SYSTEM_CLOCK
    results: dict[Address, dict[str, Any]] = field(default_factory=dict)
    created_principals: set[str] = field(default_factory=set)
    # how long a new connection may report "not ready" before the change fails
    readiness_timeout: float = 120.0
    readiness_interval: float = 2.0
    # how long a principal created in this run may be unknown to the directory (replication)
    principal_wait: float = 300.0
    # how long something just written may answer 404
    read_after_write_wait: float = 30.0
    # how long Azure DevOps may refuse to delete a connection whose credential is gone
    delete_refusal_wait: float = 60.0
    # the delay suggested to the engine between two looks at a waiting condition
    wait_delay: float = 2.0
    # how long a deleted connection may still be returned by Azure DevOps (asynchronous delete)
    delete_timeout: float = 120.0
    # addresses the specs declare: an object this plan adopts may still carry the marker the
    # plan saw (none, or another owner's with --force) when it is replaced
    declared: frozenset[Address] = frozenset()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _windows: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)
    # the steps of each change (by identity: one object per planned change) that are done,
    # with what they returned (see ``_step``)
    _steps: dict[int, tuple[Change, dict[str, Any]]] = field(default_factory=dict, repr=False)

    def record(self, address: Address, attrs: Mapping[str, Any]) -> None:
        with self._lock:
            self.results[address] = dict(attrs)

    def result(self, address: Address) -> dict[str, Any] | None:
        with self._lock:
            found = self.results.get(address)
            return dict(found) if found is not None else None

    def add_principal(self, principal_id: str) -> None:
        with self._lock:
            self.created_principals.add(principal_id.lower())

    def created(self, principal_id: str) -> bool:
        with self._lock:
            return principal_id.lower() in self.created_principals

    def steps_done(self, change: Change) -> dict[str, Any]:
        """The steps of ``change`` done in this run, in order, with what they returned."""
        with self._lock:
            found = self._steps.get(id(change))
            return dict(found[1]) if found is not None else {}

    def step_done(self, change: Change, step: str, value: Any) -> None:
        with self._lock:
            # the change is kept with its steps so that its id() is not reused meanwhile
            self._steps.setdefault(id(change), (change, {}))[1][step] = value

    def within(self, what: str, key: str, budget: float) -> bool:
        """True while ``budget`` seconds have not passed since ``what`` first failed for ``key``."""
        now = self.clock.monotonic()
        with self._lock:
            first = self._windows.setdefault((what, key.lower()), now)
        return now - first < budget


def perform(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    """Execute one change and return the resulting live attributes (empty for a delete)."""
    handler = _HANDLERS[change.address.kind]
    result = handler(change, ctx)
    if result:
        ctx.record(change.address, result)
    return result


# -- steps ---------------------------------------------------------------------------------

# how a done step reads in a failure message ("created; set pipeline permissions failed: ...")
_DONE_AS: Final = {
    "create": "created",
    "wait until ready": "ready",
    "read": "read",
    "update": "updated",
    "share": "shared",
    "set pipeline permissions": "pipeline permissions set",
    "delete": "deleted",
    "wait until deleted": "gone",
    "delete old": "old one deleted",
    "wait until old deleted": "old one gone",
    "create new": "new one created",
}


def _step(ctx: ApplyContext, change: Change, step: str, fn: Callable[[], T]) -> T:
    """Run one step of a multi-request change once per change.

    A step already done in this run returns what it returned then, so that the engine's retry
    of the change resumes at the step that failed. A failure carries the step's name and the
    steps done before it (``ProviderError.step``, ``.completed``); once something is done, the
    message says so: ``created, ready; set pipeline permissions failed: ...``. The error keeps
    its nature (transient or not), code and status.
    """
    done = ctx.steps_done(change)
    if step in done:
        return cast(T, done[step])
    try:
        value = fn()
    except ProviderError as exc:
        completed = tuple(done)
        if not completed:
            exc.step = step
            raise
        said = ", ".join(_DONE_AS.get(name, name) for name in completed)
        message = f"{said}; {step} failed: {exc}"
        if isinstance(exc, TransientError):
            raise StepTransientError(
                message,
                step=step,
                completed=completed,
                code=exc.code,
                status=exc.status,
                delay=exc.delay,
            ) from exc
        raise StepPermanentError(
            message, step=step, completed=completed, code=exc.code, status=exc.status
        ) from exc
    ctx.step_done(change, step, value)
    return value


# -- shared helpers ------------------------------------------------------------------------


def _known(value: Any) -> bool:
    return value is not UNKNOWN and value != _UNKNOWN_TEXT and value is not None


def _attrs(change: Change) -> Mapping[str, Any]:
    found = change.after if change.after is not None else change.before
    if found is None:
        raise PermanentError(f"{change.address}: the change carries no attributes", code="Plan")
    return found


def _identity(ctx: ApplyContext, key: str) -> dict[str, Any]:
    """An identity's attributes: this run's result over what was observed."""
    address = Address(Kind.IDENTITY, key)
    merged: dict[str, Any] = {}
    live = ctx.live.resources.get(address)
    if live is not None:
        merged.update(live.attrs)
    merged.update(ctx.result(address) or {})
    if not merged:
        # not observed and not created in this run: the key still names it
        parts = key.split("/")
        if len(parts) == 3:
            merged = {"subscription": parts[0], "resourceGroup": parts[1], "name": parts[2]}
        else:
            raise PermanentError(f"identity {key} is unknown", code="IdentityNotFound")
    return merged


def _identity_path(ctx: ApplyContext, key: str) -> tuple[str, str, str]:
    ident = _identity(ctx, key)
    return str(ident["subscription"]), str(ident["resourceGroup"]), str(ident["name"])


def _need(ident: Mapping[str, Any], field_: str, key: str) -> str:
    value = ident.get(field_)
    if not _known(value):
        raise PermanentError(
            f"identity {key} has no {field_} yet (was it created in this run?)",
            code="IdentityNotReady",
        )
    return str(value)


def _lagging(ctx: ApplyContext, exc: NotFoundError, key: str, what: str) -> ProviderError:
    """A 404 for something that should exist: transient within the read-after-write window."""
    if ctx.within("read-after-write", key, ctx.read_after_write_wait):
        return TransientError(
            f"{what} answered 404 (read-after-write lag?): {exc}",
            code=exc.code or "NotFound",
            status=exc.status,
            delay=ctx.wait_delay,
        )
    return exc


# -- the owner marker, read again right before a delete --------------------------------------


def _allowed_markers(ctx: ApplyContext, address: Address) -> set[str | None]:
    """Markers a live object may carry for this run to delete or replace it: this owner's, or,
    for an object the specs declare (adopted by this plan), the marker the plan saw on it."""
    allowed: set[str | None] = {ctx.owner}
    seen = ctx.live.resources.get(address)
    if address in ctx.declared and seen is not None:
        allowed.add(seen.owner)
    return allowed


def _check_marker(
    ctx: ApplyContext, address: Address, marker: str | None, what: str, *, of: str = ""
) -> None:
    if marker in _allowed_markers(ctx, address):
        return
    now = f"the owner marker of '{marker}'" if marker else "no owner marker"
    raise PermanentError(
        f"refusing to delete {what}{of}: it now carries {now}, not '{ctx.owner}' (changed "
        "since the plan read it); make a new plan",
        code="OwnerMarkerChanged",
    )


def _guard_identity(ctx: ApplyContext, key: str, *, of: str = "") -> bool:
    """Read the identity again (one GET) and refuse unless its tag is still ours (or what an
    adopting plan saw). False when it no longer exists: there is nothing left to delete."""
    sub, rg, name = _identity_path(ctx, key)
    try:
        raw = ctx.services.arm.get_identity(sub, rg, name)
    except NotFoundError:
        return False
    _, marker = read_tags(raw.get("tags"))
    _check_marker(ctx, Address(Kind.IDENTITY, key), marker, f"identity {name}", of=of)
    return True


def _guard_description(
    ctx: ApplyContext, address: Address, raw: Mapping[str, Any], what: str
) -> None:
    description = raw.get("description")
    if description is None:
        description = (raw.get("properties") or {}).get("description")
    _, marker = read_description(description)
    _check_marker(ctx, address, marker, what)


# -- identities ----------------------------------------------------------------------------


def _perform_identity(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    action = change.action
    if action is Action.DELETE:
        _delete_identity(change, ctx)
        return {}
    if action.is_replace:
        # same name: the old one has to go first whichever replace the plan names
        _step(ctx, change, "delete old", lambda: _delete_identity(change, ctx))
        return _step(ctx, change, "create new", lambda: _put_identity(change, ctx, created=True))
    return _put_identity(change, ctx, created=action is not Action.UPDATE)


def _put_identity(change: Change, ctx: ApplyContext, *, created: bool) -> dict[str, Any]:
    after = change.after or {}
    sub, rg, name = str(after["subscription"]), str(after["resourceGroup"]), str(after["name"])
    body = {
        "location": after["location"],
        "tags": mark_tags(
            dict(after.get("tags") or {}), ctx.owner, dict(after.get("organizations") or {})
        ),
    }
    raw = ctx.services.arm.put_identity(sub, rg, name, body)
    props = raw.get("properties") or {}
    principal = props.get("principalId")
    if created and principal:
        ctx.add_principal(str(principal))
    return {
        "subscription": sub,
        "resourceGroup": rg,
        "name": raw.get("name", name),
        "location": raw.get("location", after["location"]),
        "tags": dict(after.get("tags") or {}),
        "organizations": dict(after.get("organizations") or {}),
        "id": raw.get("id"),
        "principalId": principal,
        "clientId": props.get("clientId"),
        "tenantId": props.get("tenantId"),
    }


def _delete_identity(change: Change, ctx: ApplyContext) -> None:
    before = change.before or {}
    sub, rg, name = str(before["subscription"]), str(before["resourceGroup"]), str(before["name"])
    if not _guard_identity(ctx, change.address.key):
        return
    ctx.services.arm.delete_identity(sub, rg, name)


# -- federated credentials -----------------------------------------------------------------


def _perform_credential(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    action = change.action
    if action is Action.DELETE:
        _delete_credential(change, ctx)
        return {}
    if action is Action.DELETE_THEN_CREATE:
        _step(ctx, change, "delete old", lambda: _delete_credential(change, ctx))
        return _step(ctx, change, "create new", lambda: _put_credential(change, ctx))
    if action is Action.CREATE_THEN_DELETE and change.before is not None:
        result = _step(ctx, change, "create new", lambda: _put_credential(change, ctx))
        _step(ctx, change, "delete old", lambda: _delete_credential(change, ctx))
        return result
    return _put_credential(change, ctx)


def _issuer_and_subject(change: Change, ctx: ApplyContext) -> tuple[str, str]:
    after = change.after or {}
    issuer, subject = after.get("issuer"), after.get("subject")
    if _known(issuer) and _known(subject):
        return str(issuer), str(subject)
    connection = after.get("serviceConnection")
    if not connection:
        raise PermanentError(
            f"{change.address}: issuer and subject are unknown and no service connection "
            "implies them",
            code="Plan",
        )
    # the connection's own values, read back after it was written (either issuer format)
    address = Address(Kind.SERVICE_CONNECTION, str(connection))
    source: dict[str, Any] = {}
    live = ctx.live.resources.get(address)
    if live is not None:
        source.update(live.attrs)
    source.update(ctx.result(address) or {})
    issuer = issuer if _known(issuer) else source.get("issuer")
    subject = subject if _known(subject) else source.get("subject")
    if not (_known(issuer) and _known(subject)):
        raise PermanentError(
            f"{change.address}: service connection {connection} reported no workload identity "
            "issuer and subject",
            code="IssuerUnknown",
        )
    return str(issuer), str(subject)


def _put_credential(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    after = change.after or {}
    ident_key = str(after["identity"])
    sub, rg, ident = _identity_path(ctx, ident_key)
    issuer, subject = _issuer_and_subject(change, ctx)
    audiences = sorted(after.get("audiences") or [])
    body = {"properties": {"issuer": issuer, "subject": subject, "audiences": audiences}}
    name = str(after["name"])
    try:
        raw = ctx.services.arm.put_credential(sub, rg, ident, name, body)
    except NotFoundError as exc:
        # the parent identity may have just been created
        raise _lagging(ctx, exc, ident_key, f"identity {ident}") from None
    return {
        "identity": ident_key,
        "name": name,
        "issuer": issuer,
        "subject": subject,
        "audiences": audiences,
        "id": raw.get("id"),
    }


def _delete_credential(change: Change, ctx: ApplyContext) -> None:
    before = change.before or {}
    ident_key = str(before["identity"])
    sub, rg, ident = _identity_path(ctx, ident_key)
    # a credential has no marker of its own: its identity must still be ours (or adopted)
    if not _guard_identity(ctx, ident_key, of=f" (parent of {change.address})"):
        return  # a missing identity took its credentials with it
    with contextlib.suppress(NotFoundError):
        ctx.services.arm.delete_credential(sub, rg, ident, str(before["name"]))


# -- role assignments ----------------------------------------------------------------------


def assignment_name(scope: str, principal_id: str, role_guid: str) -> str:
    """Deterministic, so that a re-run after a lost response finds the same assignment."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}|{principal_id}|{role_guid}".lower()))


def _role_definition_id(scope: str, guid: str) -> str:
    parts = scope.strip("/").split("/")
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return f"/subscriptions/{parts[1]}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    return f"/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def _perform_assignment(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    action = change.action
    if action is Action.DELETE:
        _delete_assignment(change.address, change.before or {}, ctx)
        return {}
    old = change.before
    if action is Action.DELETE_THEN_CREATE and old is not None:
        _step(ctx, change, "delete old", lambda: _delete_assignment(change.address, old, ctx))
        return _step(ctx, change, "create new", lambda: _put_assignment(change, ctx, existing=None))
    if action is Action.UPDATE and old is not None and old.get("name"):
        return _put_assignment(change, ctx, existing=old)
    if action is not Action.CREATE_THEN_DELETE or old is None:
        return _put_assignment(change, ctx, existing=None)
    # create the new one before deleting the old, so that access never lapses
    result = _step(ctx, change, "create new", lambda: _put_assignment(change, ctx, existing=None))
    # the same triple lands on the same deterministic name: nothing old left to delete
    if str(old.get("name") or "").lower() != str(result.get("name")).lower():
        _step(ctx, change, "delete old", lambda: _delete_assignment(change.address, old, ctx))
    return result


def _assignment_body(
    after: Mapping[str, Any], scope: str, principal: str, guid: str, owner: str
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "roleDefinitionId": _role_definition_id(scope, guid),
        "principalId": principal,
        # skips the directory lookup that fails during replication of a new identity
        "principalType": "ServicePrincipal",
        "description": mark_description(after.get("description"), owner),
    }
    if after.get("condition"):
        props["condition"] = after["condition"]
        props["conditionVersion"] = after.get("conditionVersion") or "2.0"
    return {"properties": props}


def _put_assignment(
    change: Change, ctx: ApplyContext, *, existing: Mapping[str, Any] | None
) -> dict[str, Any]:
    after = change.after or {}
    scope = str(after["scope"]).rstrip("/")
    guid = after.get("roleDefinitionId")
    if not _known(guid):
        raise PermanentError(
            f"{change.address}: role {after.get('role')!r} was not resolved to a definition id",
            code="RoleDefinitionNotResolved",
        )
    guid = str(guid).lower()
    ident_key = str(after["identity"])
    if existing is not None and _known(existing.get("principalId")):
        principal = str(existing["principalId"])
    else:
        principal = _need(_identity(ctx, ident_key), "principalId", ident_key)
    name = (
        str(existing["name"])
        if existing is not None and existing.get("name")
        else assignment_name(scope, principal, guid)
    )
    body = _assignment_body(after, scope, principal, guid, ctx.owner)
    arm = ctx.services.arm
    try:
        raw = arm.put_role_assignment(scope, name, body)
    except ConflictError as exc:
        if exc.code != "RoleAssignmentExists":
            raise
        raw = _adopt_assignment(exc, ctx, scope, principal, guid, body)
    except PermanentError as exc:
        if exc.code != "PrincipalNotFound":
            raise
        raise _principal_not_found(exc, ctx, principal, ident_key) from None
    return _assignment_result(raw, ident_key)


def _assignment_result(raw: Mapping[str, Any], ident_key: str) -> dict[str, Any]:
    props = raw.get("properties") or {}
    description, _ = read_description(props.get("description"))
    role = str(props.get("roleDefinitionId") or "").rstrip("/").rsplit("/", 1)[-1].lower()
    return {
        "identity": ident_key,
        "roleDefinitionId": role or None,
        "scope": props.get("scope"),
        "description": description,
        "condition": props.get("condition"),
        "conditionVersion": props.get("conditionVersion"),
        "id": raw.get("id"),
        "name": raw.get("name"),
        "principalId": props.get("principalId"),
        "principalType": props.get("principalType"),
    }


def _adopt_assignment(
    exc: ConflictError,
    ctx: ApplyContext,
    scope: str,
    principal: str,
    guid: str,
    body: Mapping[str, Any],
) -> dict[str, Any]:
    """An equal assignment exists under another name: take it over instead of failing."""
    arm = ctx.services.arm
    existing: dict[str, Any] | None = None
    match = _EXISTING_ID_RE.search(str(exc))
    if match is not None:
        try:
            existing = arm.get_role_assignment(scope, str(uuid.UUID(match.group(1))))
        except NotFoundError:
            existing = None
    if existing is None:
        for item in arm.list_role_assignments_for_scope(scope, principal):
            props = item.get("properties") or {}
            same_scope = str(props.get("scope") or "").rstrip("/").lower() == scope.lower()
            same_role = str(props.get("roleDefinitionId") or "").lower().endswith(guid)
            if same_scope and same_role:
                existing = item
                break
    if existing is None:
        raise PermanentError(
            f"Azure reports an equal role assignment at {scope} but it cannot be read: {exc}",
            code="RoleAssignmentExists",
        )
    props = existing.get("properties") or {}
    _, marker = read_description(props.get("description"))
    wanted = body["properties"]
    if marker == ctx.owner and props.get("description") == wanted["description"]:
        return existing
    # put our marker (and the declared description and condition) on the adopted assignment
    adopted = {
        "properties": {
            **wanted,
            "roleDefinitionId": props.get("roleDefinitionId") or wanted["roleDefinitionId"],
        }
    }
    return arm.put_role_assignment(scope, str(existing["name"]), adopted)


def _principal_not_found(
    exc: PermanentError, ctx: ApplyContext, principal: str, ident_key: str
) -> ProviderError:
    if ctx.created(principal):
        if ctx.within("principal", principal, ctx.principal_wait):
            return TransientError(
                f"principal {principal} of identity {ident_key}, created in this run, is not "
                "in the directory yet (replication delay)",
                code="PrincipalNotFound",
                status=exc.status,
                delay=ctx.wait_delay,
            )
        return PermanentError(
            f"principal {principal} of identity {ident_key} was created in this run but is "
            f"still not in the directory after {ctx.principal_wait:.0f}s: {exc}",
            code="PrincipalNotFound",
            status=exc.status,
        )
    hint = "is it a client id where an object (principal) id belongs?"
    for resource in ctx.live.resources.values():
        if resource.address.kind is Kind.IDENTITY and (
            str(resource.attrs.get("clientId") or "").lower() == principal.lower()
        ):
            hint = (
                f"it is the client id of identity {resource.address.key}; role assignments need "
                f"its principal id {resource.attrs.get('principalId')}"
            )
    return PermanentError(
        f"principal {principal} (identity {ident_key}) does not exist in the directory — "
        f"{hint} Azure said: {exc}",
        code="PrincipalNotFound",
        status=exc.status,
    )


def _delete_assignment(address: Address, before: Mapping[str, Any], ctx: ApplyContext) -> None:
    name = before.get("name")
    scope = str(before.get("scope") or "")
    if not name and before.get("id"):
        head, _, name = str(before["id"]).rpartition("/providers/Microsoft.Authorization/")
        scope, name = head, name.rsplit("/", 1)[-1]
    if not name or not scope:
        raise PermanentError("the role assignment to delete has no name", code="Plan")
    arm = ctx.services.arm
    try:
        current = arm.get_role_assignment(scope, str(name))
    except NotFoundError:
        return  # already gone
    _guard_description(ctx, address, current, f"role assignment {name} at {scope}")
    arm.delete_role_assignment(scope, str(name))


# -- service connections -------------------------------------------------------------------
#
# A connection change is several requests. Each is a step (``_step``): done steps are kept in
# the context, so a retry of the change resumes at the step that failed instead of creating
# the connection again, and a failure says what was done.


def _perform_connection(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    action = change.action
    if action is Action.DELETE:
        _delete_connection(change, ctx, change.before or {})
        return {}
    if action is Action.DELETE_THEN_CREATE and change.before is not None:
        _delete_connection(change, ctx, change.before, old=True)
    if action is Action.UPDATE and change.before is not None and change.before.get("id"):
        result = _update_connection(change, ctx, str(change.before["id"]))
    else:
        result = _create_connection(change, ctx)
    if action is Action.CREATE_THEN_DELETE and change.before is not None:
        _delete_connection(change, ctx, change.before, old=True)
    return result


def _project_id(ctx: ApplyContext, org: str, project: str) -> str:
    found = ctx.live.projects.get(f"{org}/{project}".lower())
    if found:
        return found
    for item in ctx.services.devops.list_projects(org):
        if str(item.get("name", "")).lower() == project.lower():
            return str(item["id"])
    raise PermanentError(
        f"project {project!r} does not exist in Azure DevOps organisation {org!r}",
        code="ProjectNotFound",
    )


def _ref_project_id(ref: Mapping[str, Any]) -> str:
    return str((ref.get("projectReference") or {}).get("id") or "").lower()


def _principal_and_tenant(change: Change, ctx: ApplyContext) -> tuple[str, str]:
    after = change.after or {}
    ident_key = str(after["identity"])
    client_id = after.get("servicePrincipalId")
    tenant = after.get("tenantId")
    if not (_known(client_id) and _known(tenant)):
        ident = _identity(ctx, ident_key)
        if not _known(client_id):
            # the identity's client (application) id, not its principal id
            client_id = _need(ident, "clientId", ident_key)
        if not _known(tenant):
            tenant = ident.get("tenantId") if _known(ident.get("tenantId")) else None
    if not _known(tenant):
        tenant = ctx.live.tenant_id or ctx.services.tenant_id
    return str(client_id), str(tenant)


def _cloud_of(ctx: ApplyContext) -> dict[str, str]:
    """The service connection ``environment`` and ARM URL of the run's cloud (``--cloud``)."""
    target = getattr(ctx.services, "target", None)
    if target is None or not target.is_cloud:
        return {}
    return {"environment": target.environment, "management_url": target.arm_url + "/"}


def connection_body(
    current: Mapping[str, Any],
    after: Mapping[str, Any],
    owner: str,
    client_id: str,
    tenant: str,
    project_id: str,
    *,
    environment: str = "AzureCloud",
    management_url: str = ARM_ENDPOINT_URL,
) -> dict[str, Any]:
    """The POST or PUT body of a workload identity connection: only what the tool manages.

    Like Terraform's azuredevops provider (``doBaseExpansion`` + ``expandServiceEndpointAzureRM``)
    and nothing the service generates (``createdBy``, ``isReady``, ``isShared``,
    ``operationStatus``, the ``workloadIdentityFederation*`` parameters), whatever ``current``
    (the connection as read, or empty) holds; only its ``url``, ``type``, ``owner`` and
    ``data.environment`` carry over. The one project reference is the owning project's (by id);
    the service keeps the other projects' references of an update as they are. A new
    connection gets ``environment`` and ``management_url``: the target cloud's (``--cloud``).
    """
    description = mark_description(after.get("description"), owner)
    name = str(after["name"])
    params = {"serviceprincipalid": client_id, "tenantid": tenant}
    if after.get("scope"):
        params["scope"] = str(after["scope"])
    environment = (current.get("data") or {}).get("environment") or environment
    return {
        "name": name,
        "type": current.get("type") or "azurerm",
        "url": current.get("url") or management_url,
        "owner": current.get("owner") or "library",
        "description": description,
        "authorization": {"scheme": "WorkloadIdentityFederation", "parameters": params},
        "data": {
            "subscriptionId": str(after["subscriptionId"]),
            "subscriptionName": str(after.get("subscriptionName") or ""),
            "environment": environment,
            "scopeLevel": "Subscription",
            "creationMode": "Manual",
        },
        "serviceEndpointProjectReferences": [
            {
                "projectReference": {"id": project_id, "name": str(after["project"])},
                "name": name,
                "description": description,
            }
        ],
    }


def _create_connection(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    after = change.after or {}
    org, project, name = str(after["organization"]), str(after["project"]), str(after["name"])
    devops = ctx.services.devops

    def create() -> dict[str, Any]:
        client_id, tenant = _principal_and_tenant(change, ctx)
        project_id = _project_id(ctx, org, project)
        body = connection_body(
            {}, after, ctx.owner, client_id, tenant, project_id, **_cloud_of(ctx)
        )
        try:
            return devops.create_endpoint(org, body)
        except ConflictError as exc:
            if exc.code != "DuplicateServiceConnectionException":
                raise
            # a create whose answer was lost, or one made by hand since the plan: update it
            existing = _find_by_name(ctx, org, project, name)
            if existing is None:
                raise
            return devops.update_endpoint(
                org,
                str(existing["id"]),
                {
                    **connection_body(
                        existing, after, ctx.owner, client_id, tenant, project_id, **_cloud_of(ctx)
                    ),
                    "id": str(existing["id"]),
                },
            )

    created = _step(ctx, change, "create", create)
    endpoint_id = str(created["id"])
    ready = _step(
        ctx,
        change,
        "wait until ready",
        lambda: _wait_ready(ctx, org, project, endpoint_id, created),
    )
    # from here on the connection exists: its issuer and subject are final
    ctx.record(change.address, _connection_result(ready, after, ctx))
    _connection_finish(change, ctx, endpoint_id, ready)
    return _connection_result(ready, after, ctx)


def _update_connection(change: Change, ctx: ApplyContext, endpoint_id: str) -> dict[str, Any]:
    after = change.after or {}
    org, project = str(after["organization"]), str(after["project"])
    devops = ctx.services.devops

    def read() -> dict[str, Any]:
        try:
            return devops.get_endpoint(org, project, endpoint_id)
        except NotFoundError as exc:
            raise _lagging(ctx, exc, endpoint_id, f"service connection {endpoint_id}") from None

    current = _step(ctx, change, "read", read)

    def update() -> dict[str, Any]:
        client_id, tenant = _principal_and_tenant(change, ctx)
        project_id = _project_id(ctx, org, project)
        body = connection_body(
            current, after, ctx.owner, client_id, tenant, project_id, **_cloud_of(ctx)
        )
        return devops.update_endpoint(org, endpoint_id, {**body, "id": endpoint_id})

    updated = _step(ctx, change, "update", update)
    # a rename in an organisation on the legacy issuer changes the subject: the PUT's answer
    # carries the values the implied credential must have
    ctx.record(change.address, _connection_result(updated, after, ctx))
    _connection_finish(change, ctx, endpoint_id, updated)
    return _connection_result(updated, after, ctx)


def _connection_finish(
    change: Change, ctx: ApplyContext, endpoint_id: str, endpoint: Mapping[str, Any]
) -> None:
    after = change.after or {}
    org, project = str(after["organization"]), str(after["project"])
    _step(ctx, change, "share", lambda: _share(ctx, org, endpoint_id, endpoint, after))
    _step(
        ctx,
        change,
        "set pipeline permissions",
        lambda: _set_permissions(ctx, org, project, endpoint_id, after.get("pipelinePermissions")),
    )


def _find_by_name(ctx: ApplyContext, org: str, project: str, name: str) -> dict[str, Any] | None:
    for item in ctx.services.devops.list_endpoints(org, project, names=[name]):
        if str(item.get("name", "")).lower() == name.lower() and not endpoint_gone(item):
            return item
    return None


def _wait_ready(
    ctx: ApplyContext, org: str, project: str, endpoint_id: str, endpoint: dict[str, Any]
) -> dict[str, Any]:
    """Poll until the new connection reports ready; its issuer and subject are final then."""
    devops = ctx.services.devops
    deadline = ctx.clock.monotonic() + ctx.readiness_timeout
    current = endpoint
    while True:
        if current.get("isReady"):
            return current
        status = current.get("operationStatus") or {}
        if str(status.get("state", "")).lower() == "failed":
            raise PermanentError(
                f"service connection {current.get('name')} failed to become ready: "
                f"{status.get('statusMessage') or 'no message'}",
                code="ServiceConnectionFailed",
            )
        if ctx.clock.monotonic() >= deadline:
            raise PermanentError(
                f"service connection {current.get('name')} is still not ready after "
                f"{ctx.readiness_timeout:.0f}s (state {status.get('state', 'unknown')})",
                code="ServiceConnectionNotReady",
            )
        ctx.clock.sleep(ctx.readiness_interval)
        try:
            current = devops.get_endpoint(org, project, endpoint_id)
        except (NotFoundError, TransientError):
            continue  # just created: a lagging read or a hiccup is one more poll


def _share(
    ctx: ApplyContext, org: str, endpoint_id: str, endpoint: Mapping[str, Any], after: Any
) -> None:
    """Make the connection's project references match ``sharedWith``.

    The owning project's reference is found by its project id, wherever the service lists it.
    """
    owning_id = _project_id(ctx, org, str(after["project"])).lower()
    wanted = {str(p).lower(): str(p) for p in after.get("sharedWith") or []}
    refs = endpoint.get("serviceEndpointProjectReferences") or []
    present = {
        str((r.get("projectReference") or {}).get("name", "")).lower(): r
        for r in refs
        if _ref_project_id(r) != owning_id
    }
    owning = str(after["project"]).lower()
    to_add = [name for low, name in sorted(wanted.items()) if low not in present and low != owning]
    to_remove = [low for low in sorted(present) if low not in wanted and low != owning]
    devops = ctx.services.devops
    if to_add:
        description = mark_description(after.get("description"), ctx.owner)
        devops.share_endpoint(
            org,
            endpoint_id,
            [
                {
                    "projectReference": {"id": _project_id(ctx, org, name), "name": name},
                    "name": str(after["name"]),
                    "description": description,
                }
                for name in to_add
            ],
        )
    if to_remove:
        ids = [_ref_project_id(present[low]) or _project_id(ctx, org, low) for low in to_remove]
        devops.delete_endpoint(org, endpoint_id, ids)


def _pipeline_ids(ctx: ApplyContext, org: str, project: str) -> dict[str, int]:
    known = ctx.live.pipelines.get(f"{org}/{project}".lower())
    if known:
        return {name.lower(): pid for name, pid in known.items()}
    items = ctx.services.devops.list_pipelines(org, project)
    return {str(p["name"]).lower(): int(p["id"]) for p in items}


def _set_permissions(
    ctx: ApplyContext, org: str, project: str, endpoint_id: str, wanted: Any
) -> None:
    """``all`` opens the connection to every pipeline; a list authorises exactly those
    pipelines, revoking the others it had authorised. None leaves permissions alone."""
    if wanted is None or wanted is UNKNOWN:
        return
    devops = ctx.services.devops
    resource = {"id": endpoint_id, "type": "endpoint"}
    if wanted == "all":
        body: dict[str, Any] = {"resource": resource, "allPipelines": {"authorized": True}}
        _patch_permissions(ctx, org, project, endpoint_id, body)
        return
    ids = _pipeline_ids(ctx, org, project)
    missing = [str(n) for n in wanted if str(n).lower() not in ids]
    if missing:
        raise PermanentError(
            f"pipeline(s) {', '.join(sorted(missing))} not found in {org}/{project}",
            code="PipelineNotFound",
        )
    target = {ids[str(n).lower()] for n in wanted}
    try:
        current = devops.get_pipeline_permissions(org, project, endpoint_id)
    except NotFoundError:
        current = {}
    authorised = {
        int(p["id"]) for p in current.get("pipelines") or [] if p.get("authorized") and "id" in p
    }
    pipelines = [{"id": pid, "authorized": True} for pid in sorted(target)]
    pipelines += [{"id": pid, "authorized": False} for pid in sorted(authorised - target)]
    body = {"resource": resource, "pipelines": pipelines}
    if (current.get("allPipelines") or {}).get("authorized"):
        body["allPipelines"] = {"authorized": False}
    _patch_permissions(ctx, org, project, endpoint_id, body)


def _patch_permissions(
    ctx: ApplyContext, org: str, project: str, endpoint_id: str, body: dict[str, Any]
) -> None:
    try:
        ctx.services.devops.update_pipeline_permissions(org, project, endpoint_id, body)
    except NotFoundError as exc:
        raise _lagging(ctx, exc, endpoint_id, f"service connection {endpoint_id}") from None


def _connection_result(
    endpoint: Mapping[str, Any], after: Any, ctx: ApplyContext
) -> dict[str, Any]:
    params = (endpoint.get("authorization") or {}).get("parameters") or {}
    description, _ = read_description(endpoint.get("description"))
    return {
        "organization": after["organization"],
        "project": after["project"],
        "name": endpoint.get("name"),
        "description": description,
        "identity": after.get("identity"),
        "subscriptionId": (endpoint.get("data") or {}).get("subscriptionId"),
        "subscriptionName": (endpoint.get("data") or {}).get("subscriptionName"),
        "scope": params.get("scope") or None,
        "sharedWith": sorted(after.get("sharedWith") or [], key=str.lower),
        "pipelinePermissions": after.get("pipelinePermissions"),
        "id": endpoint.get("id"),
        "servicePrincipalId": params.get("serviceprincipalid"),
        "tenantId": params.get("tenantid"),
        "issuer": params.get("workloadIdentityFederationIssuer"),
        "subject": params.get("workloadIdentityFederationSubject"),
        "issuerType": params.get("workloadIdentityFederationIssuerType"),
        "isReady": endpoint.get("isReady"),
    }


def _delete_connection(
    change: Change, ctx: ApplyContext, before: Mapping[str, Any], *, old: bool = False
) -> None:
    """Delete, then wait until Azure DevOps no longer returns the connection (the delete is
    asynchronous): two steps, ``delete`` and ``wait until deleted`` (``... old`` in a replace)."""
    org, project = str(before["organization"]), str(before["project"])
    suffix = " old" if old else ""

    def locate() -> str | None:
        # the owner marker is read again right before the delete (one request)
        endpoint_id = before.get("id")
        found: dict[str, Any] | None
        if endpoint_id:
            try:
                found = ctx.services.devops.get_endpoint(org, project, str(endpoint_id))
            except NotFoundError:
                return None  # already gone
        else:
            found = _find_by_name(ctx, org, project, str(before["name"]))
        if found is None:
            return None
        what = f"service connection {before.get('name')} in {org}/{project}"
        _guard_description(ctx, change.address, found, what)
        return str(found.get("id") or endpoint_id)

    endpoint_id = _step(
        ctx, change, f"delete{suffix}", lambda: _delete_endpoint(ctx, before, locate())
    )
    if endpoint_id is None:
        return
    _step(
        ctx,
        change,
        f"wait until{suffix} deleted",
        lambda: _wait_gone(ctx, org, project, endpoint_id, str(before.get("name") or "")),
    )


def _delete_endpoint(
    ctx: ApplyContext, before: Mapping[str, Any], endpoint_id: str | None
) -> str | None:
    """The DELETE itself; the id deleted, or None when there was nothing to delete."""
    if endpoint_id is None:
        return None
    org, project = str(before["organization"]), str(before["project"])
    projects = [project, *(before.get("sharedWith") or [])]
    ids = [_project_id(ctx, org, p) for p in projects]
    try:
        ctx.services.devops.delete_endpoint(org, endpoint_id, ids)
    except NotFoundError:
        return endpoint_id
    except ProviderError as exc:
        if _DELETE_REFUSED_TEXT not in str(exc).lower():
            raise
        # Azure DevOps sees the removed credential only after a moment
        if ctx.within("delete-refused", endpoint_id, ctx.delete_refusal_wait):
            raise TransientError(
                f"Azure DevOps still refuses to delete service connection {before.get('name')}"
                f" (its federated credential was just removed): {exc}",
                code="ServiceConnectionDeleteRefused",
                status=exc.status,
                delay=ctx.wait_delay,
            ) from None
        raise
    return endpoint_id


def _wait_gone(ctx: ApplyContext, org: str, project: str, endpoint_id: str, name: str) -> None:
    """Poll the connection until it is gone: 404, ``null`` or a partial object (``endpoint_gone``),
    within ``ctx.delete_timeout`` seconds on ``ctx.clock``."""
    devops = ctx.services.devops
    deadline = ctx.clock.monotonic() + ctx.delete_timeout
    while True:
        try:
            current: Any = devops.get_endpoint(org, project, endpoint_id)
        except NotFoundError:
            return
        if endpoint_gone(current):
            return
        if ctx.clock.monotonic() >= deadline:
            raise PermanentError(
                f"service connection {name or endpoint_id} was deleted but Azure DevOps still "
                f"returns it after {ctx.delete_timeout:.0f}s",
                code="ServiceConnectionNotDeleted",
            )
        ctx.clock.sleep(ctx.readiness_interval)


_HANDLERS: Final[dict[Kind, Callable[[Change, ApplyContext], dict[str, Any]]]] = {
    Kind.IDENTITY: _perform_identity,
    Kind.FEDERATED_CREDENTIAL: _perform_credential,
    Kind.ROLE_ASSIGNMENT: _perform_assignment,
    Kind.SERVICE_CONNECTION: _perform_connection,
}
