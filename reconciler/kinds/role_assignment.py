"""Azure RBAC role assignment: identity, scope and role are its address; the rest updates in place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler import normalize
from reconciler.kinds.base import (
    CREATE_THEN_DELETE,
    ChangeLike,
)
from reconciler.model import Address, Kind, role_assignment_key


class RoleAssignmentKind:
    kind: Kind = Kind.ROLE_ASSIGNMENT
    # a PUT under the same assignment name updates these; principal, scope and role cannot change
    declared_fields: tuple[str, ...] = ("description", "condition", "conditionVersion")
    immutable_fields: tuple[str, ...] = ()
    # the old assignment goes only after its replacement exists, so access never lapses
    replace_action: str = CREATE_THEN_DELETE
    optional_fields: tuple[str, ...] = ()
    has_marker: bool = True

    def natural_key(self, attrs: Mapping[str, Any]) -> str:
        identity = attrs.get("identity") or f"orphan:{attrs.get('principalId')}"
        role = attrs.get("roleDefinitionId") or f"name:{attrs.get('role')}"
        return role_assignment_key(identity, attrs["scope"], role)

    def canonical(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "description": normalize.text(attrs.get("description")),
            "condition": normalize.text(attrs.get("condition")),
            "conditionVersion": normalize.text(attrs.get("conditionVersion")),
        }

    def dependencies(self, attrs: Mapping[str, Any]) -> tuple[Address, ...]:
        identity = attrs.get("identity")
        return (Address(Kind.IDENTITY, identity),) if identity else ()

    def identity_of(self, attrs: Mapping[str, Any]) -> str | None:
        value = attrs.get("identity")
        return str(value) if value else None

    def concurrency_key(self, change: ChangeLike) -> str | None:
        return None

    def is_destructive(self, action: str) -> bool:
        return False


KIND = RoleAssignmentKind()
