"""Azure RBAC role assignment: identity, scope and role are its address; the rest updates in place."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Final

from reconciler import normalize
from reconciler.changes import Action, Notice, NoticeLevel, Reason
from reconciler.errors import PlanError, Problem
from reconciler.kinds.base import (
    CREATE_THEN_DELETE,
    DESTROYS_IDS,
    BuildContext,
    DeclaredIdentity,
    Exported,
    ExportView,
    IdentityChild,
    PlanView,
    identity_label,
    identity_live,
    short_identity,
    short_name,
)
from reconciler.model import (
    MAX_ROLE_ASSIGNMENTS_PER_MANAGEMENT_GROUP,
    MAX_ROLE_ASSIGNMENTS_PER_SUBSCRIPTION,
    UNKNOWN,
    Address,
    DesiredState,
    Kind,
    LiveResource,
    LiveState,
    Ownership,
    Resource,
    RoleDefinition,
    role_assignment_key,
)
from reconciler.references import Place, Report, closest, did_you_mean, resource_group_of

_SUBSCRIPTION_SCOPE: Final = re.compile(r"^/subscriptions/([^/]+)$", re.IGNORECASE)
_GROUP_SCOPE: Final = re.compile(r"^/subscriptions/[^/]+/resourcegroups/([^/]+)$", re.IGNORECASE)
_GROUP_IN: Final = re.compile(r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)$", re.IGNORECASE)


class RoleAssignmentKind(IdentityChild):
    kind: Kind = Kind.ROLE_ASSIGNMENT
    plan_order: int = 3
    spec_section: str = "roleAssignments"
    spec_parent: str | None = "identities"
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
            "description": normalize.marked_text(attrs.get("description")),
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

    # -- planning ---------------------------------------------------------------------------

    def enrich(self, address: Address, after: dict[str, Any], view: PlanView) -> None:
        """The identity's principal id (unknown until a new or replaced identity exists)."""
        identity = identity_live(view, after.get("identity"))
        known = (
            identity is not None
            and Address(Kind.IDENTITY, str(after.get("identity"))) not in view.replaced
        )
        after["principalId"] = identity.attrs.get("principalId") if known and identity else UNKNOWN

    def cascade(self, parent: Address) -> tuple[Action, str]:
        name = parent.key.rsplit("/", 1)[-1]
        return (
            Action.DELETE_THEN_CREATE,
            f"identity {name} is replaced; granted again to its new principal",
        )

    def plan_live_only(self, current: LiveResource, ownership: Ownership, view: PlanView) -> None:
        attrs = current.attrs
        parent = self.identity_of(attrs)
        if ownership is Ownership.OWNED:
            detail = ""
            if parent is None:
                detail = f"its identity no longer exists (principal {attrs.get('principalId')})"
            view.prune(current, Reason.NOT_IN_SPEC, detail, destructive=False)
            return
        if parent is None:
            return
        parent_address = Address(Kind.IDENTITY, parent)
        parent_live = view.live.resources.get(parent_address)
        parent_owned = parent_live is not None and parent_live.owner == view.owner
        if parent_address in view.desired.resources or parent_owned:
            who = f"owner '{current.owner}'" if current.owner else "no owner marker"
            view.notices.append(
                Notice(
                    NoticeLevel.WARNING,
                    f"role assignment {_role_name(attrs, view)} at {attrs.get('scope')} on "
                    f"identity {short_identity(parent)} was not made by these specs ({who}): "
                    "reported, not removed",
                    current.address,
                )
            )

    def checks(self, view: PlanView) -> list[str]:
        """Azure's limits of role assignments per subscription and per management group."""
        problems = []
        delta: dict[str, list[int]] = {}
        for change in view.changes.values():
            if change.address.kind is not Kind.ROLE_ASSIGNMENT:
                continue
            step = {Action.CREATE: 0, Action.DELETE: 1}.get(change.action)
            if step is None:
                continue
            attrs = change.after if change.action is Action.CREATE else change.before
            scope_text = str((attrs or {}).get("scope") or "")
            bucket = normalize.subscription_of(scope_text) or normalize.scope(scope_text) or ""
            delta.setdefault(bucket, [0, 0])[step] += 1
        for bucket, (creates, deletes) in sorted(delta.items()):
            if creates <= deletes:
                continue
            held = view.live.role_assignment_counts.get(bucket, 0)
            total = held + creates - deletes
            if bucket.startswith("/"):
                limit, what = MAX_ROLE_ASSIGNMENTS_PER_MANAGEMENT_GROUP, "management group"
            else:
                limit, what = MAX_ROLE_ASSIGNMENTS_PER_SUBSCRIPTION, "subscription"
            if total > limit:
                problems.append(
                    f"{what} {bucket} would hold {total:,} role assignments ({held:,} live + "
                    f"{creates} new - {deletes} removed); Azure allows at most {limit:,}"
                )
        return problems

    def place(self, attrs: Mapping[str, Any]) -> Place | None:
        scope = str(attrs.get("scope") or "")
        sub = normalize.subscription_of(scope)
        return (sub, "scope", resource_group_of(scope), "scope") if sub is not None else None

    def check_references(
        self, resources: Iterable[Resource], live: LiveState, report: Report
    ) -> None:
        """A role given by name exists in the catalogue of its scope."""
        for resource in resources:
            attrs = resource.attrs
            role = str(attrs.get("role") or "")
            if attrs.get("roleDefinitionId") or not role or normalize.role_guid(role) is not None:
                continue
            scope = str(attrs.get("scope") or "")
            definitions = _observed_catalogue(live, scope)
            if definitions is None:
                continue
            if any(d.name.lower() == role.lower() for d in definitions):
                continue
            hint = did_you_mean(role, (d.name for d in definitions)) or (
                " (give a built-in or custom role name, a GUID or a full role id)"
            )
            report.add(
                resource,
                "role",
                f"unknown role '{role}': no role definition with that name is assignable at "
                f"{scope}" + hint,
            )

    def build(
        self,
        ctx: BuildContext,
        file: str,
        root: Any,
        path: list[str | int],
        spec: Mapping[str, Any],
        identity: DeclaredIdentity | None,
        defaults: Mapping[str, Any],
        bad: set[tuple[str | int, ...]],
    ) -> None:
        """An entry of an identity's ``roleAssignments``."""
        if identity is None:
            return
        ok = True
        if ("scope" in spec) == ("resourceGroup" in spec):
            ctx.problem(file, root, path, "give exactly one of scope or resourceGroup")
            return
        if "scope" in spec:
            scope = spec["scope"].rstrip("/") or "/"
            error = ctx.check_scope(scope)
            if error is not None:
                ctx.problem(file, root, [*path, "scope"], error)
                ok = False
        else:
            scope = f"/subscriptions/{identity.subscription}/resourceGroups/{spec['resourceGroup']}"
        role = spec["role"]
        guid, error = ctx.role_definition(role)
        if error is not None:
            ctx.problem(file, root, [*path, "role"], error)
            ok = False
        condition = spec.get("condition")
        if "conditionVersion" in spec and condition is None:
            ctx.problem(
                file,
                root,
                [*path, "conditionVersion"],
                "conditionVersion without a condition: add the condition or remove this",
            )
            ok = False
        if not ok:
            return
        role_ref = guid if guid is not None else f"name:{role}"
        address = Address(Kind.ROLE_ASSIGNMENT, role_assignment_key(identity.key, scope, role_ref))
        resource = Resource(
            address,
            {
                "identity": identity.key,
                "role": role,
                "roleDefinitionId": guid,
                "scope": scope,
                "description": spec.get("description"),
                "condition": condition,
                "conditionVersion": "2.0" if condition is not None else None,
            },
            ctx.source(file, spec, path),
            (identity.address,),
            fields={
                "role": ctx.at(file, root, [*path, "role"]),
                "scope": ctx.at(
                    file, root, [*path, "scope" if "scope" in spec else "resourceGroup"]
                ),
            },
        )
        label = f"role assignment of {role} at {scope} to identity {identity.key}"
        ctx.add(resource, label, file, root, path)

    def describe(self, resource: Resource, roles: Mapping[str, str]) -> list[str]:
        r = resource.attrs
        guid = r["roleDefinitionId"]
        if guid is None:
            role = f"{r['role']} (resolved from the live role catalogue)"
        else:
            role = roles.get(guid) or (guid if r["role"].startswith("/") else r["role"])
            role = f"{role} ({guid})" if role.lower() != guid else role
        return [
            f"    role {role}",
            f"        on {r['scope']}" + (" with an ABAC condition" if r["condition"] else ""),
        ]

    def warnings(self, resources: list[Resource], builtin: Mapping[str, str]) -> list[Problem]:
        """Role names that are not built-in but close to one (``role: Contributer``), at the
        ``role`` value, naming the built-in role meant.

        A warning, not an error: a custom role may have any name, and only the live catalogue
        knows it, so ``plan`` decides (it refuses a name its scope's role definitions lack).
        Offline, a name within ``references.SUGGESTION_CUTOFF`` of a built-in one is most
        likely a typo of it."""
        found: list[Problem] = []
        for resource in resources:
            attrs = resource.attrs
            role = str(attrs.get("role") or "")
            if attrs.get("roleDefinitionId") or not role or role.startswith("/"):
                continue
            suggestion = closest(role, builtin)
            where = resource.fields.get("role") or resource.source
            if suggestion is None or where is None:
                continue
            found.append(
                Problem(
                    where.file,
                    where.line,
                    where.column,
                    where.path,
                    f"warning: '{role}' is not an Azure built-in role; did you mean "
                    f"'{suggestion}'? (if it is a custom role, plan checks it against the live "
                    "role definitions)",
                )
            )
        return found

    def resolve(self, desired: DesiredState, live: LiveState) -> DesiredState:
        return resolve_roles(desired, live)

    def role_guid(self, attrs: Mapping[str, Any]) -> str | None:
        return str(attrs.get("roleDefinitionId") or "").rpartition("/")[2].lower()

    export_order: int = 2

    def export(self, current: LiveResource, view: ExportView) -> Exported | None:
        """The assignment as a ``roleAssignments[]`` entry of its identity: the role by name
        when the spec can name it (else its GUID), a resource group of the identity's
        subscription as ``resourceGroup``, any other scope in full. None for an assignment
        whose principal is no identity in scope (it has no entry to go under)."""
        attrs = current.attrs
        identity = attrs.get("identity")
        if not identity:
            return None
        scope = str(attrs.get("scope") or "")
        guid = str(attrs.get("roleDefinitionId") or "")
        role = view.role_name(guid, scope) or guid
        label = f"role assignment {role} at {scope} for identity {short_name(identity)}"
        node: dict[str, Any] = {"role": role}
        found = _GROUP_IN.match(scope)
        if found and found.group(1).lower() == str(identity).split("/", 1)[0]:
            node["resourceGroup"] = found.group(2)
        else:
            node["scope"] = scope
        if attrs.get("description"):
            node["description"] = attrs["description"]
        unexpressed = ""
        if attrs.get("condition"):
            node["condition"] = attrs["condition"]
            if str(attrs.get("conditionVersion") or "2.0") != "2.0":
                unexpressed = (
                    f"its condition is version {attrs.get('conditionVersion')}; a spec "
                    "declares version 2.0 conditions only"
                )
        return Exported(
            label,
            node,
            parent=Address(Kind.IDENTITY, str(identity)),
            under="roleAssignments",
            unexpressed=unexpressed,
        )


KIND = RoleAssignmentKind()


def _role_name(attrs: Mapping[str, Any], view: PlanView) -> str:
    """A live assignment's role as people know it (its name), falling back to the GUID."""
    guid = str(attrs.get("roleDefinitionId") or "")
    sub = normalize.subscription_of(str(attrs.get("scope") or ""))
    catalogues = [view.live.role_definitions.get(sub or "", ())]
    catalogues += list(view.live.role_definitions.values())
    for catalogue in catalogues:
        for definition in catalogue:
            if definition.guid.lower() == guid.lower():
                return f"'{definition.name}'"
    return guid or "?"


def _short_scope(scope: str) -> str:
    if m := _GROUP_SCOPE.match(scope):
        return m.group(1)
    if m := _SUBSCRIPTION_SCOPE.match(scope):
        return f"subscription {m.group(1)}"
    return scope


def resolve_roles(desired: DesiredState, live: LiveState) -> DesiredState:
    """Fill every role assignment's ``roleDefinitionId`` and key it by the GUID.

    Raises ``PlanError`` for an unknown role name or for two declarations that turn out to be
    the same assignment (the same role written once by name and once by GUID).
    """
    renamed: dict[Address, Address] = {}
    resources: dict[Address, Resource] = {}
    seen: dict[Address, Resource] = {}
    for address, resource in desired.resources.items():
        if address.kind is not Kind.ROLE_ASSIGNMENT:
            resources[address] = resource
            continue
        role_id = normalize.resolve_role(resource, live)
        attrs = dict(resource.attrs)
        attrs["roleDefinitionId"] = role_id
        new_address = Address(
            Kind.ROLE_ASSIGNMENT,
            role_assignment_key(str(attrs["identity"]), str(attrs["scope"]), role_id),
        )
        other = seen.get(new_address)
        if other is not None:
            raise PlanError(
                f"{resource.source or new_address}: role assignment duplicates the one declared "
                f"at {other.source or other.address} (same identity, scope and role)"
            )
        seen[new_address] = resource
        renamed[address] = new_address
        resources[new_address] = replace(resource, address=new_address, attrs=attrs)
    if all(old == new for old, new in renamed.items()):
        return replace(desired, resources=resources)
    fixed = {
        address: replace(r, depends_on=tuple(renamed.get(d, d) for d in r.depends_on))
        for address, r in resources.items()
    }
    return replace(desired, resources=fixed)


def _observed_catalogue(live: LiveState, scope: str) -> tuple[RoleDefinition, ...] | None:
    sub = normalize.subscription_of(scope)
    if sub is not None:
        if sub in live.subscription_errors or sub not in live.role_definitions:
            return None  # the subscription is reported instead, or was not read
        return normalize.catalogue(live, scope)
    return normalize.catalogue(live, scope) if live.role_definitions else None
