"""User-assigned managed identity: location is immutable; replacing it changes its ids."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler import normalize
from reconciler.kinds.base import DELETE_THEN_CREATE, DESTROYS_IDS, LOSING, short_name
from reconciler.model import Address, Kind, identity_key


class IdentityKind:
    kind: Kind = Kind.IDENTITY
    # organizations: the inventory (README "Safety"), organisation id -> name, derived by the
    # planner from the connections that sign in as the identity and kept in its tags
    declared_fields: tuple[str, ...] = ("location", "tags", "organizations")
    immutable_fields: tuple[str, ...] = ("location",)
    # the name stays the same, so the old identity must go before the new one can be created
    replace_action: str | None = DELETE_THEN_CREATE
    optional_fields: tuple[str, ...] = ()
    has_marker: bool = True
    noun: str = "identity"
    shown_fields: tuple[str, ...] = ("location", "tags", "principalId", "clientId")
    destructive_warning: str = DESTROYS_IDS

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

    def is_destructive(self, action: str) -> bool:
        # a new identity has new principal and client ids: every grant to the old one is lost
        return action in LOSING

    def title(self, change: Mapping[str, Any]) -> str:
        attrs = change.get("after") or change.get("before") or {}
        key = str(change.get("key", ""))
        where = key.rsplit("/", 1)[0] if "/" in key else ""
        return f"identity {attrs.get('name') or short_name(key)}" + (f" ({where})" if where else "")

    def display(
        self, address: Address, attrs: Mapping[str, Any], label: Callable[[str], str | None]
    ) -> str | None:
        parts = address.key.split("/")
        if len(parts) != 3:
            return None
        return str(label(address.key) or attrs.get("name") or parts[2])

    def identity_in_key(self, address: Address) -> str | None:
        return address.key


KIND = IdentityKind()
