"""The identity's executor: PUT and DELETE of a user-assigned managed identity through the
``IdentityPort``; a replace deletes first (the name must be free). Its writes count against the
Managed Identity service's per-subscription rate limit."""

from __future__ import annotations

from typing import Any

from reconciler.changes import Action, Change
from reconciler.kinds.executors.context import ApplyContext, ExecutorDefaults, guard_identity, step
from reconciler.kinds.executors.decoding import (
    LiveIndex,
    Raw,
    ReadPlan,
    identity_key_of,
    resource_group_of,
)
from reconciler.model import Address, DesiredState, Kind, Resource
from reconciler.ownership import mark_tags, read_inventory, read_tags


class IdentityExecutor(ExecutorDefaults):
    kind: Kind = Kind.IDENTITY

    def perform(self, change: Change, ctx: ApplyContext) -> dict[str, Any]:
        return _perform_identity(change, ctx)

    def plan_reads(self, resources: list[Resource], plan: ReadPlan) -> None:
        """Identities are listed per subscription; the declared resource groups are the
        fallback when only some groups are readable."""
        for res in resources:
            sub = str(res.attrs["subscription"]).lower()
            rg = str(res.attrs["resourceGroup"])
            plan.identity_groups.setdefault(sub, {})[rg.lower()] = rg
            plan.identities.add(res.address.key)

    def decode(self, raw: Raw, index: LiveIndex, desired: DesiredState) -> None:
        """Every identity read is indexed (role assignments and connections point at them by
        principal and client id); only desired or owned ones become live resources."""
        desired_keys = set(desired.resources)
        for sub, items in sorted(raw.identities.items()):
            for item in sorted(items, key=lambda i: str(i.get("id", "")).lower()):
                key = identity_key_of(item, sub)
                props = item.get("properties") or {}
                tags, marker = read_tags(item.get("tags"))
                if props.get("principalId"):
                    index.by_principal.setdefault(str(props["principalId"]).lower(), key)
                if props.get("clientId"):
                    index.by_client.setdefault(str(props["clientId"]).lower(), key)
                index.identity_owner[key] = marker
                if index.export is not None:
                    if not index.export.holds_identity(key):
                        continue
                elif Address(Kind.IDENTITY, key) not in desired_keys and marker != index.owner:
                    continue
                index.relevant.add(key)
                attrs = {
                    "subscription": sub,
                    "resourceGroup": resource_group_of(str(item["id"])),
                    "name": item.get("name"),
                    "location": item.get("location"),
                    "tags": tags,
                    "organizations": read_inventory(item.get("tags")),
                    "id": item.get("id"),
                    "principalId": props.get("principalId"),
                    "clientId": props.get("clientId"),
                    "tenantId": props.get("tenantId"),
                }
                index.add(Kind.IDENTITY, key, attrs, marker, item)

    def lane(self, change: Change) -> str:
        """The Managed Identity service's limit, per subscription (2 writes per second)."""
        attrs = change.after or change.before or {}
        subscription = attrs.get("subscription") or change.address.key.split("/", 1)[0]
        return f"managed-identity:{str(subscription).lower()}"


EXECUTOR = IdentityExecutor()


def _perform_identity(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    action = change.action
    if action is Action.DELETE:
        _delete_identity(change, ctx)
        return {}
    if action.is_replace:
        # same name: the old one has to go first whichever replace the plan names
        step(ctx, change, "delete old", lambda: _delete_identity(change, ctx))
        return step(ctx, change, "create new", lambda: _put_identity(change, ctx, created=True))
    return _put_identity(change, ctx, created=action is not Action.UPDATE)


def _put_identity(change: Change, ctx: ApplyContext, *, created: bool) -> dict[str, Any]:
    after = change.after or {}
    sub, rg, name = str(after["subscription"]), str(after["resourceGroup"]), str(after["name"])
    body = {
        "location": after["location"],
        "tags": mark_tags(
            dict(after.get("tags") or {}), ctx.owner, dict(after.get("organizations") or {})
        ),
    }
    raw = ctx.services.arm.put_identity(sub, rg, name, body)
    props = raw.get("properties") or {}
    principal = props.get("principalId")
    if created and principal:
        ctx.add_principal(str(principal))
    return {
        "subscription": sub,
        "resourceGroup": rg,
        "name": raw.get("name", name),
        "location": raw.get("location", after["location"]),
        "tags": dict(after.get("tags") or {}),
        "organizations": dict(after.get("organizations") or {}),
        "id": raw.get("id"),
        "principalId": principal,
        "clientId": props.get("clientId"),
        "tenantId": props.get("tenantId"),
    }


def _delete_identity(change: Change, ctx: ApplyContext) -> None:
    before = change.before or {}
    sub, rg, name = str(before["subscription"]), str(before["resourceGroup"]), str(before["name"])
    if not guard_identity(ctx, change.address.key):
        return
    ctx.services.arm.delete_identity(sub, rg, name)
