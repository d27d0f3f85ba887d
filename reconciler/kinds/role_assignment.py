"""Azure RBAC role assignment: identity, scope and role are its address; the rest updates in place."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from reconciler import normalize
from reconciler.kinds.base import (
    CREATE_THEN_DELETE,
    DESTROYS_IDS,
    IdentityChild,
    identity_label,
    short_name,
)
from reconciler.model import Address, Kind, role_assignment_key

_SUBSCRIPTION_SCOPE: Final = re.compile(r"^/subscriptions/([^/]+)$", re.IGNORECASE)
_GROUP_SCOPE: Final = re.compile(r"^/subscriptions/[^/]+/resourcegroups/([^/]+)$", re.IGNORECASE)


class RoleAssignmentKind(IdentityChild):
    kind: Kind = Kind.ROLE_ASSIGNMENT
    # a PUT under the same assignment name updates these; principal, scope and role cannot change
    declared_fields: tuple[str, ...] = ("description", "condition", "conditionVersion")
    immutable_fields: tuple[str, ...] = ()
    # the old assignment goes only after its replacement exists, so access never lapses
    replace_action: str | None = CREATE_THEN_DELETE
    optional_fields: tuple[str, ...] = ()
    has_marker: bool = True
    noun: str = "role assignment"
    shown_fields: tuple[str, ...] = (
        "roleDefinitionId",
        "scope",
        "description",
        "condition",
        "principalId",
    )
    destructive_warning: str = DESTROYS_IDS

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

    def title(self, change: Mapping[str, Any]) -> str:
        attrs = change.get("after") or change.get("before") or {}
        role = change.get("role_name") or attrs.get("role") or attrs.get("roleDefinitionId")
        identity = attrs.get("identity")
        who = short_name(identity) if identity else f"deleted principal {attrs.get('principalId')}"
        return f"role_assignment {role} at {attrs.get('scope')} for {who}"

    def display(
        self, address: Address, attrs: Mapping[str, Any], label: Callable[[str], str | None]
    ) -> str | None:
        if "//" not in address.key:
            return None
        owner, _, rest = address.key.partition("//")
        scope, _, role_ref = f"/{rest}".rpartition("/")
        # a role written as a full role definition id reads better as its GUID
        role = str(attrs.get("role") or role_ref.removeprefix("name:")).rpartition("/")[2]
        where = _short_scope(str(attrs.get("scope") or scope))
        return f"{identity_label(owner, label)}: {role} on {where}"

    def identity_in_key(self, address: Address) -> str | None:
        return address.key.partition("//")[0] if "//" in address.key else None


KIND = RoleAssignmentKind()


def _short_scope(scope: str) -> str:
    if m := _GROUP_SCOPE.match(scope):
        return m.group(1)
    if m := _SUBSCRIPTION_SCOPE.match(scope):
        return f"subscription {m.group(1)}"
    return scope
