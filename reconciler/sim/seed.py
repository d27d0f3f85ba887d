"""Seeds: the world the simulator starts from, as YAML, JSON or a plain dict.

The format is documented in ``reconciler/sim/README.md``; ``default_seed.yaml`` is the
example. ``build_world`` turns a seed into a ``World``; ``snapshot`` turns a world back into
a seed (ids, timestamps and generated values included), which is what ``--state`` persists.
Big worlds for benchmarks and load tests (objects marked as the tool marks them) are built
by ``bench.estates.large_seed``: the simulator knows nothing of the tool.

Seeding is a single pass of plain loops, no schema validation: 10,000 objects take a few
tens of milliseconds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from reconciler.sim.world import (
    BUILTIN_ROLES,
    DEVOPS_APP_SEGMENT,
    SECRET_PARAMETERS,
    SECRET_SET,
    Client,
    Endpoint,
    Fic,
    Identity,
    Organization,
    PermissionSet,
    Pipeline,
    Principal,
    Project,
    ResourceGroup,
    RoleAssignment,
    RoleDefinition,
    Subscription,
    World,
    guid_segment,
    identity_key,
    iso,
    norm_scope,
    stable_uuid,
)

SeedSource = Mapping[str, Any] | Path | str | None

_BUILTIN_PERMISSIONS: dict[str, list[dict[str, list[str]]]] = {
    "Owner": [{"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []}],
    "Contributor": [
        {
            "actions": ["*"],
            "notActions": [
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
            ],
            "dataActions": [],
            "notDataActions": [],
        }
    ],
    "Reader": [{"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}],
}


# A seed YAML is bounded like a spec (its own guard: the simulator does not import the tool's
# loader). Generous: the benchmark's 10,000-identity worlds are JSON, and a hand-written YAML
# seed is a few hundred nodes; an alias bomb of a few hundred bytes would otherwise expand to
# billions of nodes when the world is built from it.
SEED_MAX_BYTES: Final = 64 * 1024 * 1024
SEED_MAX_NODES: Final = 5_000_000
SEED_MAX_DEPTH: Final = 64


def _check_yaml_size(text: str, source: str) -> None:
    """Refuse (``ValueError`` naming ``source:line``) a YAML text over the seed limits, from
    its event stream alone: an alias counts as every node under its anchor."""
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    sizes: dict[str, int] = {}
    starts: list[tuple[int, str | None]] = []
    nodes = 0
    for event in yaml.parse(text, Loader=loader_class):
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if isinstance(event, yaml.AliasEvent):
            nodes += sizes.get(event.anchor or "", 1)
        elif isinstance(event, yaml.ScalarEvent):
            nodes += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            nodes += 1
            starts.append((nodes - 1, event.anchor))
            if len(starts) > SEED_MAX_DEPTH:
                raise ValueError(f"{source}:{line}: seed nesting deeper than {SEED_MAX_DEPTH}")
        elif isinstance(event, yaml.CollectionEndEvent):
            start, anchor = starts.pop()
            if anchor is not None:
                sizes[anchor] = nodes - start
        if nodes > SEED_MAX_NODES:
            raise ValueError(
                f"{source}:{line}: seed larger than {SEED_MAX_NODES:,} nodes with its aliases "
                "expanded"
            )


def default_seed() -> dict[str, Any]:
    """The default world (``default_seed.yaml``), as a fresh dict."""
    text = resources.files("reconciler.sim").joinpath("default_seed.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def load_seed(source: SeedSource) -> dict[str, Any]:
    """A seed dict from None (the default), a dict (copied), or a YAML/JSON file path."""
    if source is None:
        return default_seed()
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    if str(source).endswith(".json"):
        # JSON has no aliases; --state files and the benchmark's large worlds are JSON
        data = json.loads(Path(source).read_text("utf-8"))
    else:
        with open(source, "rb") as stream:
            raw = stream.read(SEED_MAX_BYTES + 1)
        if len(raw) > SEED_MAX_BYTES:
            raise ValueError(f"{source}:1: a YAML seed is limited to {SEED_MAX_BYTES:,} bytes")
        text = raw.decode("utf-8")
        _check_yaml_size(text, str(source))
        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a seed must be a mapping")
    return data


def entra_issuer(tenant: str) -> str:
    return f"https://login.microsoftonline.com/{tenant}/v2.0"


def entra_subject(tenant: str, org_id: str, endpoint_id: str) -> str:
    return f"/eid1/c/pub/t/{guid_segment(tenant)}/a/{DEVOPS_APP_SEGMENT}/sc/{org_id}/{endpoint_id}"


def federation(
    world: World,
    org: Organization,
    project: str,
    name: str,
    endpoint_id: str,
    issuer_type: str | None = None,
) -> tuple[str, str, str]:
    """(issuer, subject, issuer type) Azure DevOps generates for a WIF connection: the
    organisation's default, or ``issuer_type`` (``EntraID`` / ``AzureDevOps``) when given."""
    legacy = org.issuer_format == "vstoken"
    if issuer_type is not None:
        legacy = issuer_type.lower() != "entraid"
    if legacy:
        return (
            f"https://vstoken.dev.azure.com/{org.id}",
            f"sc://{org.name}/{project}/{name}",
            "AzureDevOps",
        )
    return (
        entra_issuer(world.tenant_id),
        entra_subject(world.tenant_id, org.id, endpoint_id),
        "EntraID",
    )


def _identity_ref(world: World, ref: Any) -> Identity:
    if isinstance(ref, Mapping):
        key = identity_key(ref["subscription"], ref["resourceGroup"], ref["name"])
    else:
        key = str(ref).lower()
    found = world.identities.get(key)
    if found is None:
        raise ValueError(f"seed: unknown identity {ref!r}")
    return found


def _role_guid(world: World, entry: Mapping[str, Any]) -> str:
    if "roleDefinitionId" in entry:
        guid = str(entry["roleDefinitionId"]).rstrip("/").rsplit("/", 1)[-1].lower()
    else:
        wanted = str(entry["role"]).lower()
        matches = [d.guid for d in world.role_definitions.values() if d.role_name.lower() == wanted]
        if not matches:
            raise ValueError(f"seed: unknown role {entry['role']!r}")
        guid = matches[0]
    if guid not in world.role_definitions:
        raise ValueError(f"seed: unknown role definition {guid}")
    return guid


def build_world(seed: Mapping[str, Any], *, world: World | None = None) -> World:
    """A world from a seed dict; into ``world`` (cleared first) when given, keeping its lock."""
    tenant = str(seed.get("tenant") or seed.get("tenantId") or "")
    if not tenant:
        raise ValueError("seed: 'tenant' is required")
    if not seed.get("clients"):
        raise ValueError(
            "seed: at least one entry in 'clients' is required (the tool signs in as it)"
        )
    if world is None:
        world = World(tenant_id=tenant)
    else:
        _clear(world, tenant)
    now = world.clock()

    for c in seed.get("clients") or []:
        client = Client(
            client_id=str(c["clientId"]),
            secret=str(c["clientSecret"]),
            object_id=str(c.get("objectId") or stable_uuid(tenant, "client", str(c["clientId"]))),
            display_name=str(c.get("displayName") or "sim-client"),
        )
        world.clients[client.client_id.lower()] = client
        world.principals[client.object_id.lower()] = Principal(
            client.object_id, "ServicePrincipal", client.display_name, now - 86400
        )
    for p in seed.get("principals") or []:
        world.principals[str(p["id"]).lower()] = Principal(
            str(p["id"]), str(p.get("type", "User")), str(p.get("displayName", "")), now - 86400
        )
    for pat in seed.get("pats") or []:
        world.pats[str(pat["token"])] = str(pat.get("user", "PAT user"))

    mg_of: dict[str, list[str]] = {}
    for mg in seed.get("managementGroups") or []:
        for sub in mg.get("subscriptions") or []:
            mg_of.setdefault(str(sub).lower(), []).append(str(mg["name"]))
    for s in seed.get("subscriptions") or []:
        sub = Subscription(
            str(s["id"]), str(s.get("name", s["id"])), mg_of.get(str(s["id"]).lower(), [])
        )
        world.subscriptions[sub.id.lower()] = sub
        for rg in s.get("resourceGroups") or []:
            group = ResourceGroup(
                sub.id, str(rg["name"]), _location(str(rg.get("location", "westeurope")))
            )
            world.resource_groups[(sub.id.lower(), group.name.lower())] = group

    for guid, (role_name, description) in BUILTIN_ROLES.items():
        world.role_definitions[guid] = RoleDefinition(
            guid,
            role_name,
            "BuiltInRole",
            description,
            ["/"],
            copy.deepcopy(
                _BUILTIN_PERMISSIONS.get(
                    role_name,
                    [
                        {
                            "actions": ["*/read"],
                            "notActions": [],
                            "dataActions": [],
                            "notDataActions": [],
                        }
                    ],
                )
            ),
        )
    for d in seed.get("roleDefinitions") or []:
        guid = str(d["id"]).rsplit("/", 1)[-1].lower()
        world.role_definitions[guid] = RoleDefinition(
            guid,
            str(d["roleName"]),
            str(d.get("type", "CustomRole")),
            str(d.get("description", "")),
            [norm_scope(s) for s in d.get("assignableScopes") or ["/"]],
            list(
                d.get("permissions")
                or [{"actions": [], "notActions": [], "dataActions": [], "notDataActions": []}]
            ),
        )

    for i in seed.get("identities") or []:
        rg = world.resource_group(str(i["subscription"]), str(i["resourceGroup"]))
        if rg is None:
            raise ValueError(
                f"seed: identity {i['name']!r}: unknown resource group {i['resourceGroup']!r}"
            )
        sub = world.subscriptions[rg.subscription.lower()]
        key = identity_key(sub.id, rg.name, str(i["name"]))
        created = float(i.get("createdAt", now - 86400))
        ident = Identity(
            subscription=sub.id,
            resource_group=rg.name,
            name=str(i["name"]),
            location=_location(str(i.get("location", rg.location))),
            tags={str(k): str(v) for k, v in (i.get("tags") or {}).items()},
            principal_id=str(i.get("principalId") or stable_uuid(tenant, "principal", key)),
            client_id=str(i.get("clientId") or stable_uuid(tenant, "client", key)),
            tenant_id=tenant,
            created=created,
            isolation_scope=str(i.get("isolationScope", "None")),
        )
        for f in i.get("federatedCredentials") or []:
            ident.fics[str(f["name"]).lower()] = Fic(
                str(f["name"]),
                str(f["issuer"]),
                str(f["subject"]),
                list(f.get("audiences") or ["api://AzureADTokenExchange"]),
                float(f.get("createdAt", created)),
                float(f.get("writtenAt", 0.0)),
            )
        world.identities[key] = ident
        world.principals[ident.principal_id.lower()] = Principal(
            ident.principal_id, "ServicePrincipal", ident.name, created, key
        )

    for n, a in enumerate(seed.get("roleAssignments") or []):
        if "identity" in a:
            ident = _identity_ref(world, a["identity"])
            principal_id, principal_type = ident.principal_id, "ServicePrincipal"
        else:
            principal_id = str(a["principalId"])
            known = world.principals.get(principal_id.lower())
            principal_type = known.type if known else "User"
        scope = norm_scope(str(a["scope"]))
        role = _role_guid(world, a)
        name = str(
            a.get("name")
            or stable_uuid(tenant, "ra", scope.lower(), principal_id.lower(), role, str(n))
        )
        created = float(a.get("createdAt", now - 86400))
        world.role_assignments[name.lower()] = RoleAssignment(
            name=name,
            scope=scope,
            role_guid=role,
            principal_id=principal_id,
            principal_type=str(a.get("principalType", principal_type)),
            description=a.get("description"),
            condition=a.get("condition"),
            condition_version=a.get("conditionVersion"),
            created=created,
            updated=float(a.get("updatedAt", created)),
            created_by=str(a.get("createdBy", "")),
            updated_by=str(a.get("updatedBy", a.get("createdBy", ""))),
        )

    devops = seed.get("devops") or {}
    for o in devops.get("organizations") or []:
        org = Organization(
            str(o["name"]),
            str(o.get("id") or stable_uuid("org", str(o["name"]).lower())),
            "vstoken" if str(o.get("issuerFormat", "entra")).lower() == "vstoken" else "entra",
            auditing=bool(o.get("auditing", False)),
            audit_readers=(
                [str(r) for r in o["auditReaders"]] if o.get("auditReaders") is not None else None
            ),
        )
        world.organizations[org.name.lower()] = org
        for p in o.get("projects") or []:
            project = Project(
                str(p.get("id") or stable_uuid("project", org.id, str(p["name"]).lower())),
                str(p["name"]),
                str(p.get("description", "")),
            )
            for pl in p.get("pipelines") or []:
                project.pipelines[int(pl["id"])] = Pipeline(
                    int(pl["id"]), str(pl["name"]), str(pl.get("folder", "\\"))
                )
            org.projects[project.name.lower()] = project
        for e in o.get("serviceEndpoints") or []:
            _seed_endpoint(world, org, e, now)
        for perm in o.get("pipelinePermissions") or []:
            _seed_permissions(world, org, perm, now)
    world.touch()
    return world


def _location(text: str) -> str:
    return text.replace(" ", "").lower()


def _clear(world: World, tenant: str) -> None:
    world.tenant_id = tenant
    for table in (
        world.clients,
        world.pats,
        world.principals,
        world.subscriptions,
        world.resource_groups,
        world.identities,
        world.role_definitions,
        world.role_assignments,
        world.organizations,
        world.endpoints,
        world.permissions,
    ):
        table.clear()
    world.deleted_fics.clear()
    world.deleted_endpoints.clear()


def _seed_endpoint(world: World, org: Organization, e: Mapping[str, Any], now: float) -> None:
    endpoint_id = str(e.get("id") or stable_uuid("endpoint", org.id, str(e["name"]).lower()))
    refs: list[dict[str, Any]] = []
    if "serviceEndpointProjectReferences" in e:
        refs = copy.deepcopy(list(e["serviceEndpointProjectReferences"]))
    else:
        for pname in e.get("projects") or []:
            project = org.project(str(pname))
            if project is None:
                raise ValueError(f"seed: endpoint {e['name']!r}: unknown project {pname!r}")
            refs.append(
                {
                    "projectReference": {"id": project.id, "name": project.name},
                    "name": str(e["name"]),
                    "description": str(e.get("description", "")),
                }
            )
    if not refs:
        raise ValueError(f"seed: endpoint {e['name']!r} needs a project")
    # a seeded secret (serviceprincipalkey...) is remembered as set, never kept
    params: dict[str, str | None] = {
        str(k): (
            None if v is None else SECRET_SET if str(k).lower() in SECRET_PARAMETERS else str(v)
        )
        for k, v in (e.get("parameters") or {}).items()
    }
    scheme = str(e.get("scheme", "WorkloadIdentityFederation"))
    if (
        scheme.lower() == "workloadidentityfederation"
        and "workloadIdentityFederationIssuer" not in params
    ):
        first = str(refs[0]["projectReference"].get("name", ""))
        # ``issuer: devops|entra`` stages one connection on an issuer other than its
        # organisation's default (a legacy connection in an organisation that now uses Entra)
        chosen = e.get("issuer")
        if chosen not in (None, "devops", "entra"):
            raise ValueError(f"seed: endpoint {e['name']!r}: issuer is devops or entra")
        forced = None if chosen is None else ("AzureDevOps" if chosen == "devops" else "EntraID")
        issuer, subject, kind = federation(world, org, first, str(e["name"]), endpoint_id, forced)
        params.update(
            workloadIdentityFederationIssuer=issuer,
            workloadIdentityFederationSubject=subject,
            workloadIdentityFederationIssuerType=kind,
        )
    params.setdefault("tenantid", world.tenant_id)
    world.endpoints[endpoint_id.lower()] = Endpoint(
        id=endpoint_id,
        organization=org.name.lower(),
        name=str(e["name"]),
        type=str(e.get("type", "azurerm")),
        url=str(e.get("url", "https://management.azure.com/")),
        description=str(e.get("description", "")),
        owner=str(e.get("owner", "library")),
        scheme=scheme,
        parameters=params,
        data=dict(e.get("data") or {}),
        project_refs=refs,
        created=float(e.get("createdAt", now - 86400)),
        created_by=dict(
            e.get("createdBy") or {"displayName": "Seed", "id": stable_uuid("user", "seed")}
        ),
        operation_status=dict(e["operationStatus"]) if e.get("operationStatus") else None,
        recovery=dict(e["recoveryParameters"]) if e.get("recoveryParameters") else None,
    )


def _seed_permissions(world: World, org: Organization, perm: Mapping[str, Any], now: float) -> None:
    project = org.project(str(perm["project"]))
    if project is None:
        raise ValueError(f"seed: permissions: unknown project {perm['project']!r}")
    rtype = str(perm.get("resourceType", "endpoint")).lower()
    rid = perm.get("resourceId")
    if rid is None:
        wanted = str(perm["endpoint"]).lower()
        match = [e.id for e in world.endpoints_of(org.name) if e.name.lower() == wanted]
        if not match:
            raise ValueError(f"seed: permissions: unknown endpoint {perm['endpoint']!r}")
        rid = match[0]
    by = {"displayName": "Seed", "id": stable_uuid("user", "seed")}
    pset = PermissionSet()
    if perm.get("allPipelines"):
        pset.all_pipelines = {"authorized": True, "authorizedBy": by, "authorizedOn": iso(now)}
    names = {p.name.lower(): p.id for p in project.pipelines.values()}
    for ref in perm.get("pipelines") or []:
        pid = int(ref) if isinstance(ref, int) or str(ref).isdigit() else names[str(ref).lower()]
        pset.pipelines[pid] = {
            "id": pid,
            "authorized": True,
            "authorizedBy": by,
            "authorizedOn": iso(now),
        }
    world.permissions[(org.name.lower(), project.id.lower(), rtype, str(rid).lower())] = pset


def snapshot(world: World) -> dict[str, Any]:
    """The world as a seed dict that ``build_world`` restores exactly (call under the lock)."""
    mgs: dict[str, list[str]] = {}
    for sub in world.subscriptions.values():
        for mg in sub.management_groups:
            mgs.setdefault(mg, []).append(sub.id)
    seed_users = [
        p
        for p in world.principals.values()
        if p.identity is None
        and p.id.lower() not in {c.object_id.lower() for c in world.clients.values()}
    ]
    orgs = []
    for org in world.organizations.values():
        perms = []
        for (o, pid, rtype, rid), pset in world.permissions.items():
            if o != org.name.lower():
                continue
            project = org.project(pid)
            perms.append(
                {
                    "project": project.name if project else pid,
                    "resourceType": rtype,
                    "resourceId": rid,
                    "allPipelines": bool(
                        pset.all_pipelines and pset.all_pipelines.get("authorized")
                    ),
                    "pipelines": sorted(pset.pipelines),
                }
            )
        orgs.append(
            {
                "name": org.name,
                "id": org.id,
                "issuerFormat": org.issuer_format,
                "auditing": org.auditing,
                **(
                    {"auditReaders": list(org.audit_readers)}
                    if org.audit_readers is not None
                    else {}
                ),
                "projects": [
                    {
                        "name": p.name,
                        "id": p.id,
                        "description": p.description,
                        "pipelines": [
                            {"id": pl.id, "name": pl.name, "folder": pl.folder}
                            for pl in p.pipelines.values()
                        ],
                    }
                    for p in org.projects.values()
                ],
                "serviceEndpoints": [
                    {
                        "id": e.id,
                        "name": e.name,
                        "type": e.type,
                        "url": e.url,
                        "description": e.description,
                        "owner": e.owner,
                        "scheme": e.scheme,
                        "parameters": dict(e.parameters),
                        "data": dict(e.data),
                        "serviceEndpointProjectReferences": copy.deepcopy(e.project_refs),
                        "createdAt": e.created,
                        "createdBy": dict(e.created_by),
                        **(
                            {"operationStatus": dict(e.operation_status)}
                            if e.operation_status
                            else {}
                        ),
                        **({"recoveryParameters": dict(e.recovery)} if e.recovery else {}),
                    }
                    for e in world.endpoints_of(org.name)
                ],
                "pipelinePermissions": perms,
            }
        )
    return {
        "tenant": world.tenant_id,
        "clients": [
            {
                "clientId": c.client_id,
                "clientSecret": c.secret,
                "objectId": c.object_id,
                "displayName": c.display_name,
            }
            for c in world.clients.values()
        ],
        "principals": [
            {"id": p.id, "type": p.type, "displayName": p.display_name} for p in seed_users
        ],
        "pats": [{"token": t, "user": u} for t, u in world.pats.items()],
        "managementGroups": [{"name": k, "subscriptions": v} for k, v in mgs.items()],
        "subscriptions": [
            {
                "id": s.id,
                "name": s.display_name,
                "resourceGroups": [
                    {"name": rg.name, "location": rg.location}
                    for (sub, _), rg in world.resource_groups.items()
                    if sub == s.id.lower()
                ],
            }
            for s in world.subscriptions.values()
        ],
        "roleDefinitions": [
            {
                "id": d.guid,
                "roleName": d.role_name,
                "type": d.role_type,
                "description": d.description,
                "assignableScopes": list(d.assignable_scopes),
                "permissions": copy.deepcopy(d.permissions),
            }
            for d in world.role_definitions.values()
            if d.role_type != "BuiltInRole"
        ],
        "identities": [
            {
                "subscription": i.subscription,
                "resourceGroup": i.resource_group,
                "name": i.name,
                "location": i.location,
                "tags": dict(i.tags),
                "principalId": i.principal_id,
                "clientId": i.client_id,
                "createdAt": i.created,
                "isolationScope": i.isolation_scope,
                "federatedCredentials": [
                    {
                        "name": f.name,
                        "issuer": f.issuer,
                        "subject": f.subject,
                        "audiences": list(f.audiences),
                        "createdAt": f.created,
                        **({"writtenAt": f.written} if f.written else {}),
                    }
                    for f in i.fics.values()
                ],
            }
            for i in world.identities.values()
        ],
        "roleAssignments": [
            {
                "name": a.name,
                "scope": a.scope,
                "roleDefinitionId": a.role_guid,
                "principalId": a.principal_id,
                "principalType": a.principal_type,
                "description": a.description,
                "condition": a.condition,
                "conditionVersion": a.condition_version,
                "createdAt": a.created,
                "updatedAt": a.updated,
                "createdBy": a.created_by,
                "updatedBy": a.updated_by,
            }
            for a in world.role_assignments.values()
        ],
        "devops": {"organizations": orgs},
    }
