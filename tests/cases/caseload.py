"""Loading planner cases: ``desired.json`` and ``live.json`` in the flattened model form.

A resource is ``{"address": "kind.key", "attrs": {...}}`` or ``{"kind": "...", "attrs": {...}}``
(the key is then the kind's natural key). Desired resources may carry ``source`` ({file, line}),
``fields`` ({name: {file, line, column, path}}) and ``depends_on``; without ``depends_on`` they get what the spec loader gives them (the
identity; a connection's implied credential also its connection). Live resources carry
``owner`` and ``fingerprint`` (default: derived from the address); ``federations`` lists
the (issuer, subject) of connections read but not kept as live resources. ``"(known after apply)"``
is UNKNOWN, as in the plan document. Without ``role_definitions``, live gets the world's
catalogue (built-in roles and "Identity Auditor" in both subscriptions).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from reconciler.kinds import REGISTRY
from reconciler.model import (
    Address,
    DesiredState,
    Kind,
    LiveResource,
    LiveState,
    Resource,
    RoleDefinition,
    Source,
)
from reconciler.render.document import decode

CASES = Path(__file__).parent
SANDBOX = "11111111-1111-1111-1111-111111111111"
PRODUCTION = "22222222-2222-2222-2222-222222222222"
TENANT = "7e1a6a0c-3c1d-4b8e-9f4a-1b2c3d4e5f60"
BUILT_IN = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Managed Identity Operator": "f1a07417-d97a-45cb-824c-7a7467783830",
}
CUSTOM = {"Identity Auditor": "9f0c2a8e-5b7d-4c3e-8a1f-6d2e4b8c0a11"}


def world_catalogue() -> dict[str, tuple[RoleDefinition, ...]]:
    roles = tuple(RoleDefinition(g, n) for n, g in BUILT_IN.items()) + tuple(
        RoleDefinition(g, n, "CustomRole") for n, g in CUSTOM.items()
    )
    return {SANDBOX: roles, PRODUCTION: roles}


def case_names() -> list[str]:
    return sorted(p.name for p in CASES.iterdir() if (p / "desired.json").is_file())


def _address(item: dict[str, Any]) -> Address:
    if "address" in item:
        return Address.parse(item["address"])
    kind = Kind(item["kind"])
    return Address(kind, REGISTRY[kind].natural_key(item["attrs"]))


def _default_depends(address: Address, attrs: dict[str, Any]) -> tuple[Address, ...]:
    if address.kind is Kind.IDENTITY:
        return ()
    deps = [Address(Kind.IDENTITY, attrs["identity"])]
    if address.kind is Kind.FEDERATED_CREDENTIAL and attrs.get("serviceConnection"):
        deps.insert(0, Address(Kind.SERVICE_CONNECTION, attrs["serviceConnection"]))
    return tuple(deps)


def load_desired(data: dict[str, Any]) -> DesiredState:
    resources: dict[Address, Resource] = {}
    for item in data["resources"]:
        attrs = decode(item["attrs"])
        address = _address(item)
        source = item.get("source")
        depends = item.get("depends_on")
        resources[address] = Resource(
            address,
            attrs,
            Source(source["file"], source["line"]) if source else None,
            tuple(Address.parse(d) for d in depends)
            if depends is not None
            else _default_depends(address, attrs),
            fields={
                name: Source(f["file"], f["line"], f.get("column", 1), f.get("path", ""))
                for name, f in item.get("fields", {}).items()
            },
        )
    return DesiredState(data["owner"], resources, tuple(data.get("files", ())))


def load_live(data: dict[str, Any]) -> LiveState:
    resources: dict[Address, LiveResource] = {}
    for item in data.get("resources", []):
        address = _address(item)
        fingerprint = item.get(
            "fingerprint", "sha256:" + hashlib.sha256(str(address).encode()).hexdigest()[:12]
        )
        resources[address] = LiveResource(
            address, decode(item["attrs"]), item.get("owner"), fingerprint
        )
    catalogue = data.get("role_definitions")
    definitions = (
        world_catalogue()
        if catalogue is None
        else {
            sub: tuple(
                RoleDefinition(d["guid"], d["name"], d.get("role_type", "BuiltInRole"))
                for d in defs
            )
            for sub, defs in catalogue.items()
        }
    )
    # the pairs live connections sign in with: those of the live connections above, plus
    # "federations" ([{issuer, subject, connection}]) for connections observe read but did not
    # keep (another owner's, or unmarked and undeclared)
    federations: dict[tuple[str, str], set[str]] = {}
    for resource in resources.values():
        attrs = resource.attrs
        if resource.address.kind is Kind.SERVICE_CONNECTION and attrs.get("issuer"):
            pair = (str(attrs["issuer"]), str(attrs.get("subject")))
            federations.setdefault(pair, set()).add(resource.address.key)
    for item in data.get("federations", []):
        pair = (str(item["issuer"]), str(item["subject"]))
        federations.setdefault(pair, set()).add(str(item["connection"]).lower())
    return LiveState(
        federations={pair: tuple(sorted(keys)) for pair, keys in federations.items()},
        resources=resources,
        role_definitions=definitions,
        role_assignment_counts=data.get("role_assignment_counts", {}),
        organizations=data.get("organizations", {}),
        projects=data.get("projects", {}),
        pipelines=data.get("pipelines", {}),
        tenant_id=data.get("tenant_id", TENANT),
        resource_groups={k: tuple(v) for k, v in data.get("resource_groups", {}).items()},
        subscription_errors=data.get("subscription_errors", {}),
        project_names={k: tuple(v) for k, v in data.get("project_names", {}).items()},
        organization_errors=data.get("organization_errors", {}),
    )


def load_case(name: str) -> tuple[DesiredState, LiveState, dict[str, Any]]:
    folder = CASES / name
    desired = load_desired(json.loads((folder / "desired.json").read_text()))
    live_file = folder / "live.json"
    live = load_live(json.loads(live_file.read_text()) if live_file.is_file() else {})
    args_file = folder / "args.json"
    args = json.loads(args_file.read_text()) if args_file.is_file() else {}
    return desired, live, args
