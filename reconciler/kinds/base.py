"""What a resource kind is: its semantics, as data and small pure functions.

A kind knows its natural key, which fields are declared (compared), which are immutable (a
change forces a replacement, and how), what it depends on, which writes must not overlap, and
whether losing it hurts. It makes no service calls: those live in the providers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from reconciler.model import Address, Kind

# Action values (reconciler.plan.Action is a StrEnum): kinds do not import the planner, which
# imports them, so that no kind reaches another through it.
DELETE: Final = "delete"
CREATE: Final = "create"
DELETE_THEN_CREATE: Final = "delete-then-create"
CREATE_THEN_DELETE: Final = "create-then-delete"
LOSING: Final = frozenset({DELETE, DELETE_THEN_CREATE, CREATE_THEN_DELETE})


class ChangeLike(Protocol):
    """What a kind reads of a ``reconciler.plan.Change``."""

    @property
    def address(self) -> Address: ...

    @property
    def before(self) -> Mapping[str, Any] | None: ...

    @property
    def after(self) -> Mapping[str, Any] | None: ...


class KindSpec(Protocol):
    kind: Kind
    # fields compared between desired and live (live-only computed fields never make a diff)
    declared_fields: tuple[str, ...]
    # declared fields that cannot change in place: a change replaces the object
    immutable_fields: tuple[str, ...]
    # how a replacement runs (delete first when the name must be free, create first
    # otherwise); None for a kind that is never replaced (no field is immutable)
    replace_action: str | None  # an Action value
    # declared fields left alone when the spec does not set them (None = unmanaged)
    optional_fields: tuple[str, ...]
    # whether the object carries its own owner marker (credentials belong to their identity)
    has_marker: bool
    # how a person names the kind in progress lines and messages ("federated credential")
    noun: str
    # what a created or deleted object shows besides its title in the text and Markdown
    # renders: what a reviewer checks, plus the ids a delete will need
    shown_fields: tuple[str, ...]
    # the line next to a destructive change of this kind in the renders
    destructive_warning: str

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

    def is_destructive(self, action: str) -> bool:
        """Whether this action loses something a user cannot get back by applying again."""
        ...

    def title(self, change: Mapping[str, Any]) -> str:
        """A change of the plan document (its JSON form: ``key``, ``after``, ``before``,
        ``role_name``) as a reader names its object in the text and Markdown renders."""
        ...

    def display(
        self, address: Address, attrs: Mapping[str, Any], label: Callable[[str], str | None]
    ) -> str | None:
        """The object's short name in apply progress (after the noun), from its key with the
        declared spelling of ``attrs``; ``label(key)`` is an identity's label when identities
        share a name (else None). None when the key has not the kind's shape."""
        ...

    def identity_in_key(self, address: Address) -> str | None:
        """The identity key an address names (its own, or its parent's), else None."""
        ...


DESTROYS_IDS: Final = (
    "!! DESTRUCTIVE: this loses ids, grants or pipeline permissions; apply needs --allow-destroy"
)


def identity_label(key: str, label: Callable[[str], str | None]) -> str:
    """An identity's label, else its name (the last part of its key)."""
    return label(key) or key.rpartition("/")[2]


def short_name(identity: Any) -> str:
    """An identity's name from its key (``sub/rg/name``); '' for none."""
    return str(identity).rsplit("/", 1)[-1] if identity else ""


class IdentityChild:
    """Shared behaviour of kinds that hang off one identity (``attrs["identity"]``)."""

    def dependencies(self, attrs: Mapping[str, Any]) -> tuple[Address, ...]:
        identity = attrs.get("identity")
        return (Address(Kind.IDENTITY, identity),) if identity else ()

    def identity_of(self, attrs: Mapping[str, Any]) -> str | None:
        value = attrs.get("identity")
        return str(value) if value else None

    def identity_in_key(self, address: Address) -> str | None:
        return None
