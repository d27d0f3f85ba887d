"""User-assigned managed identity: location is immutable; replacing it changes its ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler import normalize
from reconciler.kinds.base import (
    DELETE_THEN_CREATE,
    LOSING,
    ChangeLike,
)
from reconciler.model import Address, Kind, identity_key


class IdentityKind:
    kind: Kind = Kind.IDENTITY
    # organizations: the inventory (README "Safety"), organisation id -> name, derived by the
    # planner from the connections that sign in as the identity and kept in its tags
    declared_fields: tuple[str, ...] = ("location", "tags", "organizations")
    immutable_fields: tuple[str, ...] = ("location",)
    # the name stays the same, so the old identity must go before the new one can be created
    replace_action: str = DELETE_THEN_CREATE
    optional_fields: tuple[str, ...] = ()
    has_marker: bool = True

    def natural_key(self, attrs: Mapping[str, Any]) -> str:
        return identity_key(attrs["subscription"], attrs["resourceGroup"], attrs["name"])

    def canonical(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "location": normalize.location(attrs.get("location")),
            "tags": normalize.tags(attrs.get("tags")),
            "organizations": {
                str(k).lower(): str(v).lower()
                for k, v in (attrs.get("organizations") or {}).items()
            },
        }

    def dependencies(self, attrs: Mapping[str, Any]) -> tuple[Address, ...]:
        return ()

    def identity_of(self, attrs: Mapping[str, Any]) -> str | None:
        return self.natural_key(attrs)

    def concurrency_key(self, change: ChangeLike) -> str | None:
        return None

    def is_destructive(self, action: str) -> bool:
        # a new identity has new principal and client ids: every grant to the old one is lost
        return action in LOSING


KIND = IdentityKind()
