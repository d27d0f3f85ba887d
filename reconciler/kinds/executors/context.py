"""What every kind's executor shares: the apply run's context, named steps, and the helpers
that reach an identity (the parent of credentials, the principal of assignments and
connections) and re-read an owner marker before a delete.

Waiting conditions become ``TransientError`` within a bounded window (``ApplyContext.within``),
so that the engine's one retry loop (jittered backoff, honouring server hints, on its clock)
does the waiting.

A change of several requests runs them as named steps (``step``): a step done in this run is
not done again, so the engine's retry of the change resumes at the step that failed (with a
retry budget of its own), and a failure says which steps were done and which one failed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar, cast

from reconciler import federation
from reconciler.changes import Change
from reconciler.errors import (
    NotFoundError,
    PermanentError,
    ProviderError,
    StepPermanentError,
    StepTransientError,
    TransientError,
)
from reconciler.kinds.executors.decoding import LiveIndex, Raw, ReadPlan
from reconciler.kinds.executors.ports import ServicesPort
from reconciler.model import UNKNOWN, Address, DesiredState, Kind, LiveState, Resource
from reconciler.ownership import read_description, read_tags
from reconciler.retry import SYSTEM_CLOCK, Clock

T = TypeVar("T")

UNKNOWN_TEXT: Final = "(known after apply)"


@dataclass
class ApplyContext:
    """What every change of one apply run shares. ``results`` and ``created_principals`` are
    written by concurrent workers: go through the methods, which lock."""

    services: ServicesPort
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
    # how long a new federated credential takes to be honoured by Microsoft Entra before a
    # connection is pointed at it (seconds to minutes; practitioners wait 60-120 s:
    # azure-contracts.md, "Federated credential propagation"); no API tells when it is
    credential_propagation: float = 60.0
    # addresses the specs declare: an object this plan adopts may still carry the marker the
    # plan saw (none, or another owner's with --force) when it is replaced
    declared: frozenset[Address] = frozenset()
    # what the user must be told about an applied change (address, message), in the order
    # said: the runner shows them in the apply's text and JSON output (``notice`` events)
    notices: list[tuple[Address, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _windows: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)
    # the steps of each change (by identity: one object per planned change) that are done,
    # with what they returned (see ``_step``)
    _steps: dict[int, tuple[Change, dict[str, Any]]] = field(default_factory=dict, repr=False)

    def record(self, address: Address, attrs: Mapping[str, Any]) -> None:
        with self._lock:
            self.results[address] = dict(attrs)

    def notice(self, address: Address, message: str) -> None:
        """Tell the user ``message`` about the change of ``address`` (once per message)."""
        with self._lock:
            if (address, message) not in self.notices:
                self.notices.append((address, message))

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

    def left(self, what: str, key: str, budget: float) -> float:
        """Seconds left of ``budget`` since ``what`` was first asked about for ``key`` (0 when
        it has passed)."""
        now = self.clock.monotonic()
        with self._lock:
            first = self._windows.setdefault((what, key.lower()), now)
        return max(0.0, budget - (now - first))

    def within(self, what: str, key: str, budget: float) -> bool:
        """True while ``budget`` seconds have not passed since ``what`` first failed for ``key``."""
        return self.left(what, key, budget) > 0


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
    "create new": "new one created",
}


def step(ctx: ApplyContext, change: Change, step: str, fn: Callable[[], T]) -> T:
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


def known(value: Any) -> bool:
    return value is not UNKNOWN and value != UNKNOWN_TEXT and value is not None


def identity_attrs(ctx: ApplyContext, key: str) -> dict[str, Any]:
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


def identity_path(ctx: ApplyContext, key: str) -> tuple[str, str, str]:
    ident = identity_attrs(ctx, key)
    return str(ident["subscription"]), str(ident["resourceGroup"]), str(ident["name"])


def need(ident: Mapping[str, Any], field_: str, key: str) -> str:
    value = ident.get(field_)
    if not known(value):
        raise PermanentError(
            f"identity {key} has no {field_} yet (was it created in this run?)",
            code="IdentityNotReady",
        )
    return str(value)


def lagging(ctx: ApplyContext, exc: NotFoundError, key: str, what: str) -> ProviderError:
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


def allowed_markers(ctx: ApplyContext, address: Address) -> set[str | None]:
    """Markers a live object may carry for this run to delete or replace it: this owner's, or,
    for an object the specs declare (adopted by this plan), the marker the plan saw on it."""
    allowed: set[str | None] = {ctx.owner}
    seen = ctx.live.resources.get(address)
    if address in ctx.declared and seen is not None:
        allowed.add(seen.owner)
    return allowed


def check_marker(
    ctx: ApplyContext, address: Address, marker: str | None, what: str, *, of: str = ""
) -> None:
    if marker in allowed_markers(ctx, address):
        return
    now = f"the owner marker of '{marker}'" if marker else "no owner marker"
    raise PermanentError(
        f"refusing to delete {what}{of}: it now carries {now}, not '{ctx.owner}' (changed "
        "since the plan read it); make a new plan",
        code="OwnerMarkerChanged",
    )


def guard_identity(ctx: ApplyContext, key: str, *, of: str = "") -> bool:
    """Read the identity again (one GET) and refuse unless its tag is still ours (or what an
    adopting plan saw). False when it no longer exists: there is nothing left to delete."""
    sub, rg, name = identity_path(ctx, key)
    try:
        raw = ctx.services.arm.get_identity(sub, rg, name)
    except NotFoundError:
        return False
    _, marker = read_tags(raw.get("tags"))
    check_marker(ctx, Address(Kind.IDENTITY, key), marker, f"identity {name}", of=of)
    return True


def guard_description(
    ctx: ApplyContext, address: Address, raw: Mapping[str, Any], what: str
) -> None:
    description = raw.get("description")
    if description is None:
        description = (raw.get("properties") or {}).get("description")
    _, marker = read_description(description)
    check_marker(ctx, address, marker, what)


class KindExecutor(Protocol):
    """The shell half of a kind: how each change of it is performed against the services
    (through the ports of ``ctx.services``), which rate limit its writes count against, and
    which of its writes must never overlap. The pure half is ``reconciler.kinds.KindSpec``."""

    kind: Kind

    def perform(self, change: Change, ctx: ApplyContext) -> dict[str, Any]:
        """Execute ``change`` (every action of the closed set that the kind's rules can plan)
        and return the resulting live attributes (empty for a delete). Raises the
        ``reconciler.errors`` provider errors, classified: transient ones are retried."""
        ...

    def plan_reads(self, resources: list[Resource], plan: ReadPlan) -> None:
        """Add to ``plan`` where the declared ``resources`` of this kind send observe."""
        ...

    def decode(self, raw: Raw, index: LiveIndex, desired: DesiredState) -> None:
        """Decode this kind's objects out of what observe read into ``index.resources`` (the
        canonical live attributes, the owner marker, a fingerprint of what was read)."""
        ...

    def lane(self, change: Change) -> str:
        """The rate limit the change's writes count against (``apply``'s scheduling lanes)."""
        ...

    def concurrency_key(self, change: Change) -> str | None:
        """Changes with the same key never run at the same time; None: no constraint."""
        ...

    def out_of_sight(
        self, address: Address, owner: str, owned: set[Address], after: LiveState
    ) -> bool:
        """Whether an object of ``owner`` missing from ``after`` may simply not have been read
        (observe reads it only where the specs or the owner's objects lead), not gone."""
        ...


class ExecutorDefaults:
    """What an executor does unless its kind says otherwise: no concurrency key, nothing
    out of sight, no reads of its own (another kind's reads bring its objects)."""

    def concurrency_key(self, change: Change) -> str | None:
        return None

    def out_of_sight(
        self, address: Address, owner: str, owned: set[Address], after: LiveState
    ) -> bool:
        return False

    def plan_reads(self, resources: list[Resource], plan: ReadPlan) -> None:
        return None


def no_action(change: Change) -> PermanentError:
    """The error for an action a kind's executor does not perform (a hand-edited plan)."""
    return PermanentError(
        f"{change.address}: the plan asks for {change.action.value}, which this tool never "
        f"plans for a {change.address.kind.value}; make a new plan",
        code="Plan",
    )


def check_generated_pair(
    ctx: ApplyContext,
    pair: tuple[Any, Any],
    *,
    organization: str,
    connection_id: Any,
    tenant_id: Any,
    connection: str,
    identity: str,
    project: Any = None,
    name: Any = None,
) -> None:
    """Refuse (``PermanentError``, code ``UnexpectedIssuer``) to make ``identity`` trust a pair
    that service connection ``connection`` reports but Azure DevOps does not generate for it
    (``federation.generated_pair_problem``): a federated credential is a way in, and what a
    connection reports is all the tool knows of it. ``project`` and ``name`` are the
    connection's owning project and current name (the Azure DevOps issuer's subject names
    them); None or unknown leaves them unchecked."""
    problem = federation.generated_pair_problem(
        None if pair[0] is None else str(pair[0]),
        None if pair[1] is None else str(pair[1]),
        tenant_id=str(tenant_id) if known(tenant_id) and tenant_id else ctx.live.tenant_id or None,
        organization_id=ctx.live.organizations.get(organization.lower()),
        connection_id=str(connection_id) if known(connection_id) and connection_id else None,
        organization=organization,
        project=str(project) if known(project) and project else None,
        connection_name=str(name) if known(name) and name else None,
    )
    if problem:
        raise PermanentError(
            federation.refusal(connection, pair, problem, identity), code="UnexpectedIssuer"
        )
