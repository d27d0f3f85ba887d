"""The resource kinds, listed explicitly: adding a kind means one module and one line here."""

from __future__ import annotations

from typing import Final

from reconciler.kinds import federated_credential, identity, role_assignment, service_connection
from reconciler.kinds.base import ChangeLike, KindSpec
from reconciler.model import Kind

REGISTRY: Final[dict[Kind, KindSpec]] = {
    Kind.IDENTITY: identity.KIND,
    Kind.FEDERATED_CREDENTIAL: federated_credential.KIND,
    Kind.ROLE_ASSIGNMENT: role_assignment.KIND,
    Kind.SERVICE_CONNECTION: service_connection.KIND,
}


def kind_of(kind: Kind) -> KindSpec:
    return REGISTRY[kind]


def concurrency_key(change: ChangeLike) -> str | None:
    """The apply engine's key: changes sharing one never overlap (a credential's identity)."""
    return REGISTRY[change.address.kind].concurrency_key(change)


__all__ = ["REGISTRY", "ChangeLike", "KindSpec", "concurrency_key", "kind_of"]
