"""The role assignment's executor: PUT (under a deterministic name, so a lost answer is found
again) and DELETE through the ``RoleAssignmentPort``; ``RoleAssignmentExists`` adopts the equal
assignment; ``PrincipalNotFound`` for a principal this run created is transient (directory
replication). Its writes count against ARM's authorization limit."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any, Final

from reconciler.changes import Action, Change
from reconciler.errors import (
    ConflictError,
    NotFoundError,
    PermanentError,
    ProviderError,
    TransientError,
)
from reconciler.kinds.executors.context import (
    ApplyContext,
    ExecutorDefaults,
    guard_description,
    identity_attrs,
    known,
    need,
    step,
)
from reconciler.kinds.executors.decoding import LiveIndex, Raw, ReadPlan
from reconciler.model import (
    Address,
    DesiredState,
    Kind,
    Resource,
    role_assignment_key,
)
from reconciler.ownership import mark_description, read_description

MANAGEMENT_GROUPS: Final = "/providers/microsoft.management/managementgroups/"
_EXISTING_ID_RE: Final = re.compile(r"existing role assignment is ([0-9a-fA-F]{32})")


class RoleAssignmentExecutor(ExecutorDefaults):
    kind: Kind = Kind.ROLE_ASSIGNMENT

    def perform(self, change: Change, ctx: ApplyContext) -> dict[str, Any]:
        return _perform_assignment(change, ctx)

    def plan_reads(self, resources: list[Resource], plan: ReadPlan) -> None:
        """Assignments are listed per subscription and per management group they are scoped
        to (the role catalogues too)."""
        for res in resources:
            scope = str(res.attrs["scope"]).rstrip("/")
            if is_management_group(scope):
                plan.management_groups[scope.lower()] = scope
            elif (sub := subscription_of(scope)) is not None:
                plan.scope_subscriptions.add(sub)

    def decode(self, raw: Raw, index: LiveIndex, desired: DesiredState) -> None:
        """Assignments to a relevant identity or carrying this owner's marker (an orphan's
        principal no longer resolves: ``orphan:{principal}``), each once however many lists
        returned it."""
        seen: set[str] = set()
        for _, items in sorted(raw.assignments.items()):
            for item in sorted(items, key=lambda i: str(i.get("id", "")).lower()):
                assignment_id = str(item.get("id") or "").lower()
                if assignment_id in seen:
                    continue
                seen.add(assignment_id)
                props = item.get("properties") or {}
                principal = str(props.get("principalId") or "").lower()
                description, marker = read_description(props.get("description"))
                assignee = index.by_principal.get(principal)
                if not (assignee in index.relevant or marker == index.owner):
                    continue
                guid = guid_of(props.get("roleDefinitionId"))
                scope = str(props.get("scope") or "").rstrip("/") or "/"
                attrs = {
                    "identity": assignee,
                    "roleDefinitionId": guid,
                    "scope": scope,
                    "description": description,
                    "condition": props.get("condition"),
                    "conditionVersion": props.get("conditionVersion"),
                    "id": item.get("id"),
                    "name": item.get("name"),
                    "principalId": props.get("principalId"),
                    "principalType": props.get("principalType"),
                }
                key = role_assignment_key(assignee or f"orphan:{principal}", scope, guid or "")
                index.add(Kind.ROLE_ASSIGNMENT, key, attrs, marker, item)

    def lane(self, change: Change) -> str:
        """ARM's own authorization limit (far larger than the Managed Identity service's)."""
        return "authorization"


EXECUTOR = RoleAssignmentExecutor()


def assignment_name(scope: str, principal_id: str, role_guid: str) -> str:
    """Deterministic, so that a re-run after a lost response finds the same assignment."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}|{principal_id}|{role_guid}".lower()))


def _role_definition_id(scope: str, guid: str) -> str:
    parts = scope.strip("/").split("/")
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return f"/subscriptions/{parts[1]}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    return f"/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def _perform_assignment(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    action = change.action
    if action is Action.DELETE:
        _delete_assignment(change.address, change.before or {}, ctx)
        return {}
    old = change.before
    if action is Action.DELETE_THEN_CREATE and old is not None:
        step(ctx, change, "delete old", lambda: _delete_assignment(change.address, old, ctx))
        return step(ctx, change, "create new", lambda: _put_assignment(change, ctx, existing=None))
    if action is Action.UPDATE and old is not None and old.get("name"):
        return _put_assignment(change, ctx, existing=old)
    if action is not Action.CREATE_THEN_DELETE or old is None:
        return _put_assignment(change, ctx, existing=None)
    # create the new one before deleting the old, so that access never lapses
    result = step(ctx, change, "create new", lambda: _put_assignment(change, ctx, existing=None))
    # the same triple lands on the same deterministic name: nothing old left to delete
    if str(old.get("name") or "").lower() != str(result.get("name")).lower():
        step(ctx, change, "delete old", lambda: _delete_assignment(change.address, old, ctx))
    return result


def _assignment_body(
    after: Mapping[str, Any], scope: str, principal: str, guid: str, owner: str
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "roleDefinitionId": _role_definition_id(scope, guid),
        "principalId": principal,
        # skips the directory lookup that fails during replication of a new identity
        "principalType": "ServicePrincipal",
        "description": mark_description(after.get("description"), owner),
    }
    if after.get("condition"):
        props["condition"] = after["condition"]
        props["conditionVersion"] = after.get("conditionVersion") or "2.0"
    return {"properties": props}


def _put_assignment(
    change: Change, ctx: ApplyContext, *, existing: Mapping[str, Any] | None
) -> dict[str, Any]:
    after = change.after or {}
    scope = str(after["scope"]).rstrip("/")
    guid = after.get("roleDefinitionId")
    if not known(guid):
        raise PermanentError(
            f"{change.address}: role {after.get('role')!r} was not resolved to a definition id",
            code="RoleDefinitionNotResolved",
        )
    guid = str(guid).lower()
    ident_key = str(after["identity"])
    if existing is not None and known(existing.get("principalId")):
        principal = str(existing["principalId"])
    else:
        principal = need(identity_attrs(ctx, ident_key), "principalId", ident_key)
    name = (
        str(existing["name"])
        if existing is not None and existing.get("name")
        else assignment_name(scope, principal, guid)
    )
    body = _assignment_body(after, scope, principal, guid, ctx.owner)
    arm = ctx.services.arm
    try:
        raw = arm.put_role_assignment(scope, name, body)
    except ConflictError as exc:
        if exc.code != "RoleAssignmentExists":
            raise
        raw = _adopt_assignment(exc, ctx, scope, principal, guid, body)
    except PermanentError as exc:
        if exc.code != "PrincipalNotFound":
            raise
        raise _principal_not_found(exc, ctx, principal, ident_key) from None
    return _assignment_result(raw, ident_key)


def _assignment_result(raw: Mapping[str, Any], ident_key: str) -> dict[str, Any]:
    props = raw.get("properties") or {}
    description, _ = read_description(props.get("description"))
    role = str(props.get("roleDefinitionId") or "").rstrip("/").rsplit("/", 1)[-1].lower()
    return {
        "identity": ident_key,
        "roleDefinitionId": role or None,
        "scope": props.get("scope"),
        "description": description,
        "condition": props.get("condition"),
        "conditionVersion": props.get("conditionVersion"),
        "id": raw.get("id"),
        "name": raw.get("name"),
        "principalId": props.get("principalId"),
        "principalType": props.get("principalType"),
    }


def _adopt_assignment(
    exc: ConflictError,
    ctx: ApplyContext,
    scope: str,
    principal: str,
    guid: str,
    body: Mapping[str, Any],
) -> dict[str, Any]:
    """An equal assignment exists under another name: take it over instead of failing."""
    arm = ctx.services.arm
    existing: dict[str, Any] | None = None
    match = _EXISTING_ID_RE.search(str(exc))
    if match is not None:
        try:
            existing = arm.get_role_assignment(scope, str(uuid.UUID(match.group(1))))
        except NotFoundError:
            existing = None
    if existing is None:
        for item in arm.list_role_assignments_for_scope(scope, principal):
            props = item.get("properties") or {}
            same_scope = str(props.get("scope") or "").rstrip("/").lower() == scope.lower()
            same_role = str(props.get("roleDefinitionId") or "").lower().endswith(guid)
            if same_scope and same_role:
                existing = item
                break
    if existing is None:
        raise PermanentError(
            f"Azure reports an equal role assignment at {scope} but it cannot be read: {exc}",
            code="RoleAssignmentExists",
        )
    props = existing.get("properties") or {}
    _, marker = read_description(props.get("description"))
    wanted = body["properties"]
    if marker == ctx.owner and props.get("description") == wanted["description"]:
        return existing
    # put our marker (and the declared description and condition) on the adopted assignment
    adopted = {
        "properties": {
            **wanted,
            "roleDefinitionId": props.get("roleDefinitionId") or wanted["roleDefinitionId"],
        }
    }
    return arm.put_role_assignment(scope, str(existing["name"]), adopted)


def _principal_not_found(
    exc: PermanentError, ctx: ApplyContext, principal: str, ident_key: str
) -> ProviderError:
    if ctx.created(principal):
        if ctx.within("principal", principal, ctx.principal_wait):
            return TransientError(
                f"principal {principal} of identity {ident_key}, created in this run, is not "
                "in the directory yet (replication delay)",
                code="PrincipalNotFound",
                status=exc.status,
                delay=ctx.wait_delay,
            )
        return PermanentError(
            f"principal {principal} of identity {ident_key} was created in this run but is "
            f"still not in the directory after {ctx.principal_wait:.0f}s: {exc}",
            code="PrincipalNotFound",
            status=exc.status,
        )
    hint = "is it a client id where an object (principal) id belongs?"
    for resource in ctx.live.resources.values():
        if resource.address.kind is Kind.IDENTITY and (
            str(resource.attrs.get("clientId") or "").lower() == principal.lower()
        ):
            hint = (
                f"it is the client id of identity {resource.address.key}; role assignments need "
                f"its principal id {resource.attrs.get('principalId')}"
            )
    return PermanentError(
        f"principal {principal} (identity {ident_key}) does not exist in the directory — "
        f"{hint} Azure said: {exc}",
        code="PrincipalNotFound",
        status=exc.status,
    )


def _delete_assignment(address: Address, before: Mapping[str, Any], ctx: ApplyContext) -> None:
    name = before.get("name")
    scope = str(before.get("scope") or "")
    if not name and before.get("id"):
        head, _, name = str(before["id"]).rpartition("/providers/Microsoft.Authorization/")
        scope, name = head, name.rsplit("/", 1)[-1]
    if not name or not scope:
        raise PermanentError("the role assignment to delete has no name", code="Plan")
    arm = ctx.services.arm
    try:
        current = arm.get_role_assignment(scope, str(name))
    except NotFoundError:
        return  # already gone
    guard_description(ctx, address, current, f"role assignment {name} at {scope}")
    arm.delete_role_assignment(scope, str(name))


def guid_of(role_definition_id: str | None) -> str | None:
    if not role_definition_id:
        return None
    return role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()


def subscription_of(scope: str) -> str | None:
    """The subscription (lower case) of an ARM scope, else None."""
    parts = scope.strip("/").split("/")
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return parts[1].lower()
    return None


def is_management_group(scope: str) -> bool:
    return scope.lower().rstrip("/").startswith(MANAGEMENT_GROUPS)
