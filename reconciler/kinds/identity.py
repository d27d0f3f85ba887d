"""User-assigned managed identity: location is immutable; replacing it changes its ids."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler import normalize
from reconciler.changes import Action
from reconciler.kinds.base import (
    DELETE_THEN_CREATE,
    DESTROYS_IDS,
    LOSING,
    BuildContext,
    DeclaredIdentity,
    Edge,
    Exported,
    ExportView,
    PlanView,
    Rules,
    short_identity,
    short_name,
)
from reconciler.model import (
    MAX_TAGS_PER_RESOURCE,
    Address,
    Kind,
    LiveResource,
    Resource,
    identity_key,
)
from reconciler.ownership import ORG_TAG_PREFIX, OWNER_TAG, is_reserved_tag
from reconciler.references import Place


class IdentityKind(Rules):
    kind: Kind = Kind.IDENTITY
    # planned first: whether an identity is created or replaced decides what its dependents
    # can know (a connection's client id, an assignment's principal)
    plan_order: int = 0
    selectable: bool = True
    is_identity: bool = True
    spec_section: str = "identities"
    plural: str = "identities"
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

    # -- planning ---------------------------------------------------------------------------

    def enrich(self, address: Address, after: dict[str, Any], view: PlanView) -> None:
        after["organizations"] = _inventory_of(address.key, view)

    def checks(self, view: PlanView) -> list[str]:
        problems = []
        for change in view.changes.values():
            after = change.after
            if change.address.kind is not Kind.IDENTITY or after is None:
                continue
            user, inventory = len(after.get("tags") or {}), len(after.get("organizations") or {})
            if user + 1 + inventory > MAX_TAGS_PER_RESOURCE:
                where = f"{change.source}: " if change.source else ""
                problems.append(
                    f"{where}identity {short_identity(change.address.key)} would carry "
                    f"{user + 1 + inventory} tags ({user} in the specs, the owner tag, and one "
                    f"per Azure DevOps organisation its connections are in: {inventory}); "
                    f"Azure allows at most {MAX_TAGS_PER_RESOURCE}"
                )
        return problems

    def edges(self, view: PlanView, edge: Edge) -> None:
        """An identity update that drops an organisation from its inventory runs after the
        delete of every connection of this owner in that organisation that signs in as it: an
        apply stopped half-way never loses the record while such a connection lives.
        (Additions need nothing: a connection's create already waits for its identity.) A
        connection moved to another identity in place needs no edge: the other identity's
        inventory records the organisation before the move (the update waits for it)."""
        for change in view.changes.values():
            if change.address.kind is not Kind.IDENTITY or change.action is not Action.UPDATE:
                continue
            before = dict((change.before or {}).get("organizations") or {})
            after = {str(k).lower() for k in ((change.after or {}).get("organizations") or {})}
            dropped = {str(k).lower() for k in before} - after
            if not dropped:
                continue
            for other in view.changes.values():
                if other.address.kind is not Kind.SERVICE_CONNECTION or other.before is None:
                    continue
                if other.action is not Action.DELETE or str(other.before.get("identity")) != (
                    change.address.key
                ):
                    continue
                org = str(other.before.get("organization") or "").lower()
                if str(view.live.organizations.get(org) or "").lower() in dropped:
                    edge(other.address, change.address)

    output_section: str | None = "identities"

    def output(
        self, resource: Resource, found: LiveResource | None, tenant_id: str
    ) -> dict[str, Any]:
        """``clientId``, ``principalId``, ``tenantId`` (the identity's, else ``tenant_id``)
        and ``id`` (the ARM resource id)."""
        attrs = found.attrs if found is not None else {}
        return {
            "address": str(resource.address),
            "name": resource.attrs.get("name"),
            "subscription": resource.attrs.get("subscription"),
            "resourceGroup": resource.attrs.get("resourceGroup"),
            "present": found is not None,
            "clientId": attrs.get("clientId"),
            "principalId": attrs.get("principalId"),
            "tenantId": (attrs.get("tenantId") or tenant_id or None) if found else None,
            "id": attrs.get("id"),
        }

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
        """An entry of ``identities`` (its credentials and role assignments are built by
        their kinds, ``BuildContext.build_children``)."""
        values = {}
        for name in ("subscription", "resourceGroup", "location"):
            value = spec.get(name, defaults.get(name))
            if value is None and name not in defaults:
                ctx.problem(
                    file,
                    root,
                    [*path, name],
                    f"required field missing (set it here or in defaults.{name})",
                )
            if value is None:
                ctx.incomplete = True
            values[name] = value
        tags = dict(spec.get("tags") or {})
        for tag in tags:
            if is_reserved_tag(str(tag)):
                why = (
                    "the tool writes it from `owner` to mark what it owns"
                    if str(tag).lower() == OWNER_TAG
                    else f"tags starting with `{ORG_TAG_PREFIX}` are the tool's record of the "
                    "Azure DevOps organisations where this owner's connections sign in as the "
                    "identity"
                )
                ctx.problem(file, root, [*path, "tags", tag], f"reserved tag: {why}", key=True)
        if any(v is None for v in values.values()):
            return
        subscription = values["subscription"].lower()
        resource_group = values["resourceGroup"]
        name = spec["name"]
        key = identity_key(subscription, resource_group, name)
        address = Address(Kind.IDENTITY, key)
        source = ctx.source(file, spec, path)
        resource = Resource(
            address,
            {
                "subscription": subscription,
                "resourceGroup": resource_group,
                "name": name,
                "location": values["location"].replace(" ", "").lower(),
                "tags": {k: v for k, v in tags.items() if not is_reserved_tag(str(k))},
            },
            source,
            fields={
                name: ctx.given(file, root, path, spec, name)
                for name in ("subscription", "resourceGroup")
            },
        )
        if not ctx.add(resource, f"identity {key}", file, root, path):
            return
        record = DeclaredIdentity(key, name, subscription, resource_group, address, source)
        ctx.declare_identity(record)
        ctx.build_children(file, root, path, spec, record, bad)

    def describe(self, resource: Resource, roles: Mapping[str, str]) -> list[str]:
        a = resource.attrs
        lines = [
            f"identity {a['resourceGroup']}/{a['name']}  "
            f"(subscription {a['subscription']}, {a['location']})  [{resource.source}]"
        ]
        if a["tags"]:
            lines.append("    tags " + ", ".join(f"{k}={v}" for k, v in sorted(a["tags"].items())))
        return lines

    def place(self, attrs: Mapping[str, Any]) -> Place | None:
        return (
            str(attrs["subscription"]),
            "subscription",
            str(attrs["resourceGroup"]),
            "resourceGroup",
        )

    def includes(self, address: Address, other: Address, attrs: Mapping[str, Any]) -> bool:
        """Its federated credentials, its role assignments and the connections that sign in
        as it."""
        under = other.kind in (
            Kind.FEDERATED_CREDENTIAL,
            Kind.ROLE_ASSIGNMENT,
        ) and other.key.startswith(f"{address.key}/")
        signs_in = other.kind is Kind.SERVICE_CONNECTION and (
            str(attrs.get("identity") or "").lower() == address.key
        )
        return under or signs_in

    def export(self, current: LiveResource, view: ExportView) -> Exported | None:
        """The identity as an ``identities[]`` entry (its credentials and role assignments are
        exported by their kinds, under it)."""
        attrs = current.attrs
        node: dict[str, Any] = {
            "name": attrs["name"],
            "subscription": str(attrs["subscription"]).lower(),
            "resourceGroup": attrs["resourceGroup"],
            "location": normalize.location(attrs.get("location")),
        }
        tags = attrs.get("tags") or {}
        if tags:
            node["tags"] = {str(k): str(v) for k, v in sorted(tags.items())}
        unexpressed = ""
        if len(tags) >= MAX_TAGS_PER_RESOURCE:
            unexpressed = (
                f"it has {len(tags)} tags: adopting it adds the owner tag, and Azure allows "
                f"{MAX_TAGS_PER_RESOURCE} per resource; remove a tag, then export again"
            )
        return Exported(
            label=f"identity {attrs['name']} (resource group {attrs['resourceGroup']}, "
            f"subscription {node['subscription']})",
            node={} if unexpressed else node,
            unexpressed=unexpressed,
            section="identities",
            defaults=("subscription", "resourceGroup", "location"),
            place={"subscription": node["subscription"], "resourceGroup": node["resourceGroup"]},
        )


def _inventory_of(identity: str, view: PlanView) -> dict[str, str]:
    """The identity's inventory (README "Safety"): organisation id -> name for every declared
    connection that signs in as it. The ids come from live state: observe reads every
    organisation the specs name, and a plan naming one it could not read has already
    failed (``check_references``); one left unread (planner cases) is left out."""
    inventory: dict[str, str] = {}
    for connection in view.desired_of[Kind.SERVICE_CONNECTION]:
        if str(connection.attrs.get("identity")) != identity:
            continue
        org = str(connection.attrs["organization"])
        org_id = view.live.organizations.get(org.lower())
        if org_id:
            inventory.setdefault(str(org_id).lower(), org)
    return dict(sorted(inventory.items()))


KIND = IdentityKind()
