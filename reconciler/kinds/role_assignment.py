"""Azure RBAC role assignment: identity, scope and role are its address; the rest updates in place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler import normalize
from reconciler.kinds.base import (
    CREATE_THEN_DELETE,
    IdentityChild,
)
from reconciler.model import Kind, role_assignment_key


class RoleAssignmentKind(IdentityChild):
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

    def is_destructive(self, action: str) -> bool:
        return False


KIND = RoleAssignmentKind()
