"""Canonical forms, so that equal things compare equal before anything is diffed.

ARM ids are case-insensitive, role definitions have three spellings (name, GUID, full id), set-like
lists come back in any order. Pure functions; the kinds build their comparable projection from
these, and ``resolve_role`` turns a role name into its definition GUID with the live catalogue
(``kinds.role_assignment.resolve_roles`` applies it to the specs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from reconciler.errors import PlanError
from reconciler.model import (
    UNKNOWN,
    LiveState,
    Resource,
    RoleDefinition,
)

_GUID_RE: Final = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE
)
_ROLE_ID_RE: Final = re.compile(
    r"^(?:/subscriptions/[^/]+)?/providers/Microsoft\.Authorization/roleDefinitions/"
    r"([0-9a-f-]{36})/?$",
    re.IGNORECASE,
)
_SUBSCRIPTION_RE: Final = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)
_MANAGEMENT_GROUP_RE: Final = re.compile(
    r"^/providers/Microsoft\.Management/managementGroups/([^/]+)$", re.IGNORECASE
)


def is_guid(text: str) -> bool:
    return bool(_GUID_RE.match(text))


def scope(value: Any) -> Any:
    """ARM scopes compare case-insensitively and without a trailing slash."""
    if value is None or value is UNKNOWN:
        return value
    text = value.strip().rstrip("/").lower()
    return text if text.startswith("/") else f"/{text}"


def location(value: Any) -> Any:
    """``West Europe`` and ``westeurope`` are the same region."""
    if value is None or value is UNKNOWN:
        return value
    return value.replace(" ", "").lower()


def guid(value: Any) -> Any:
    if value is None or value is UNKNOWN:
        return value
    return value.strip().lower()


def role_guid(reference: str) -> str | None:
    """The definition GUID of a role given as a GUID or a full role definition id, else None."""
    text = reference.strip()
    if is_guid(text):
        return text.lower()
    match = _ROLE_ID_RE.match(text)
    return match.group(1).lower() if match else None


def subscription_of(scope_text: str) -> str | None:
    match = _SUBSCRIPTION_RE.match(scope_text)
    return match.group(1).lower() if match else None


def management_group_of(scope_text: str) -> str | None:
    match = _MANAGEMENT_GROUP_RE.match(scope_text.rstrip("/"))
    return match.group(1).lower() if match else None


def name_set(values: Iterable[str] | None) -> list[str] | None:
    """Set-like lists of names (projects, pipelines): sorted, case-insensitive, no duplicates."""
    if values is None:
        return None
    return sorted({v.lower() for v in values})


def sorted_list(values: Iterable[str] | None) -> list[str] | None:
    if values is None:
        return None
    return sorted(set(values))


def text(value: Any) -> Any:
    """Empty and missing descriptions are the same thing to every service here."""
    if value is UNKNOWN:
        return value
    return value if value else None


def marked_text(value: Any) -> Any:
    """A description that carries the owner marker: its text without trailing whitespace (the
    marker follows the text after one space, ``ownership.mark_description``, so trailing
    whitespace is never kept live), empty and missing the same."""
    if isinstance(value, str):
        value = value.rstrip()
    return text(value)


def tags(value: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


def pipeline_permissions(value: Any) -> Any:
    if value is None or value is UNKNOWN:
        return value
    if isinstance(value, str):
        return value.lower()
    return name_set(value)


def catalogue(live: LiveState, scope_text: str) -> tuple[RoleDefinition, ...]:
    """The role definitions assignable at a scope, as observed (its subscription's list)."""
    sub = subscription_of(scope_text)
    if sub is not None:
        return tuple(live.role_definitions.get(sub, ()))
    # Management-group scopes: custom roles assignable there are listed under any subscription.
    merged: dict[str, RoleDefinition] = {}
    for definitions in live.role_definitions.values():
        for definition in definitions:
            merged.setdefault(definition.guid, definition)
    return tuple(merged.values())


def resolve_role(resource: Resource, live: LiveState) -> str:
    """The definition GUID for a role assignment's ``role``, by name from the live catalogue."""
    attrs = resource.attrs
    known = attrs.get("roleDefinitionId")
    if known:
        return str(known).lower()
    role = str(attrs.get("role") or "")
    by_reference = role_guid(role)
    if by_reference is not None:
        return by_reference
    scope_text = str(attrs.get("scope") or "")
    matches = {d.guid for d in catalogue(live, scope_text) if d.name.lower() == role.lower()}
    where = f"{resource.source}: " if resource.source else ""
    if len(matches) == 1:
        return matches.pop().lower()
    if not matches:
        raise PlanError(
            f"{where}unknown role '{role}': no role definition with that name is assignable at "
            f"{scope_text} (give a built-in or custom role name, a GUID or a full role id)"
        )
    raise PlanError(
        f"{where}role name '{role}' is ambiguous at {scope_text}: "
        f"{', '.join(sorted(matches))}; give the role definition GUID instead"
    )
