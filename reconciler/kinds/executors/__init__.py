"""The kinds' executors, listed explicitly: the shell half of each kind (the pure half is
``reconciler.kinds.REGISTRY``). Dispatch, scheduling lanes and concurrency keys are all asked
of this registry; a kind missing from it is an error, never another kind's lane."""

from __future__ import annotations

from typing import Any, Final

from reconciler.changes import Action, Change
from reconciler.errors import PermanentError
from reconciler.kinds import UnknownKindError, kind_of
from reconciler.kinds.executors import (
    federated_credential,
    identity,
    role_assignment,
    service_connection,
)
from reconciler.kinds.executors.context import ApplyContext, KindExecutor
from reconciler.model import Kind

EXECUTORS: Final[dict[Kind, KindExecutor]] = {
    Kind.IDENTITY: identity.EXECUTOR,
    Kind.FEDERATED_CREDENTIAL: federated_credential.EXECUTOR,
    Kind.ROLE_ASSIGNMENT: role_assignment.EXECUTOR,
    Kind.SERVICE_CONNECTION: service_connection.EXECUTOR,
}


def executor_for(kind: Kind) -> KindExecutor:
    """The executor of ``kind``. Raises ``UnknownKindError`` for a kind not registered."""
    try:
        return EXECUTORS[kind]
    except KeyError:
        raise UnknownKindError(f"no executor registered for kind {kind!r}") from None


def perform(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    """Execute one change with its kind's executor; record and return the resulting live
    attributes (empty for a delete), which later changes read (``ctx.result``)."""
    executor = executor_for(change.address.kind)
    if change.operation and (
        change.action is not Action.UPDATE
        or change.operation not in kind_of(change.address.kind).operations
    ):
        raise PermanentError(
            f"{change.address}: the plan names the operation {change.operation!r}, which a "
            f"{change.address.kind.value} {change.action.value} does not have; make a new plan",
            code="Plan",
        )
    result = executor.perform(change, ctx)
    if result:
        ctx.record(change.address, result)
    return result


def concurrency_key(change: Change) -> str | None:
    """Changes sharing a key never overlap (a credential's identity)."""
    return executor_for(change.address.kind).concurrency_key(change)


def lane(change: Change) -> str:
    """The rate limit a change's writes count against: the Managed Identity service's, per
    subscription (2 writes per second), for identities and credentials; ARM's own (far
    larger) for role assignments; Azure DevOps' for connections.

    A paced write waits for its turn inside its worker. Taken in plan order (one subscription
    after another), every worker would wait on one subscription's limit while the others'
    went unused, and the writes no limit holds back would queue behind them."""
    return executor_for(change.address.kind).lane(change)


__all__ = [
    "EXECUTORS",
    "ApplyContext",
    "KindExecutor",
    "concurrency_key",
    "executor_for",
    "lane",
    "perform",
]
