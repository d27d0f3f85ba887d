"""What a resource kind is: its semantics, as data and small pure functions.

A kind knows its natural key, which fields are declared (compared), which are immutable (a
change forces a replacement, and how), what it depends on, which writes must not overlap, and
whether losing it hurts. It makes no service calls: those live in the providers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from reconciler.model import Address, Kind
from reconciler.plan import Action, Change


class KindSpec(Protocol):
    kind: Kind
    # fields compared between desired and live (live-only computed fields never make a diff)
    declared_fields: tuple[str, ...]
    # declared fields that cannot change in place: a change replaces the object
    immutable_fields: tuple[str, ...]
    # how a replacement runs (delete first when the name must be free, create first otherwise)
    replace_action: Action
    # declared fields left alone when the spec does not set them (None = unmanaged)
    optional_fields: tuple[str, ...]
    # whether the object carries its own owner marker (credentials belong to their identity)
    has_marker: bool

    def natural_key(self, attrs: Mapping[str, Any]) -> str:
        """The canonical key (``Address.key``) of an object with these attributes."""
        ...

    def canonical(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """The declared fields in comparable form (case, order and spelling folded away)."""
        ...

    def dependencies(self, attrs: Mapping[str, Any]) -> tuple[Address, ...]:
        """Objects that must exist before this one (deletes run the other way round)."""
        ...

    def identity_of(self, attrs: Mapping[str, Any]) -> str | None:
        """The identity key this object belongs to (for grouping and create-before-delete)."""
        ...

    def concurrency_key(self, change: Change) -> str | None:
        """Changes with the same key must never run at the same time."""
        ...

    def is_destructive(self, action: Action) -> bool:
        """Whether this action loses something a user cannot get back by applying again."""
        ...
