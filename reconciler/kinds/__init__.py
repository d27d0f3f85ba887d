"""The resource kinds, listed explicitly: adding a kind means its rules module, its executor
(``reconciler.kinds.executors``) and one line in each registry.

This registry holds the pure rules (keys, canonical form, decisions, labels). Everything that
differs by kind is asked of it; nothing outside ``reconciler.kinds`` names a kind.
"""

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

_BY_VALUE: Final[dict[str, KindSpec]] = {kind.value: spec for kind, spec in REGISTRY.items()}


class UnknownKindError(LookupError):
    """A kind with no rules or no executor registered: a programming error (exit code 3),
    never a silent fallback to another kind's behaviour."""


def kind_of(kind: Kind) -> KindSpec:
    """The rules of ``kind``. Raises ``UnknownKindError`` for a kind not registered."""
    try:
        return REGISTRY[kind]
    except KeyError:
        raise UnknownKindError(f"no rules registered for kind {kind!r}") from None


def rules_named(value: str) -> KindSpec | None:
    """The rules of the kind a plan document names (``"identity"``), or None for a name this
    version does not know (a document from elsewhere: renderers show its address)."""
    return _BY_VALUE.get(value)


__all__ = ["REGISTRY", "ChangeLike", "KindSpec", "UnknownKindError", "kind_of", "rules_named"]
