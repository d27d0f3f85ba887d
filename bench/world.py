"""Synthetic organisations: spec files and matching simulator seeds, deterministic by size.

Shape (issue 6): each identity has 3 federated credentials and 3 role assignments; every fifth
identity has a service connection (which implies one more credential and declares pipeline
permissions); identities spread round-robin over 20 resource groups in 4 subscriptions, the
connections over 10 projects of one Azure DevOps organisation. 1,000 identities declare 7,400
resources.

Seeds: ``cold`` holds only the subscriptions, resource groups and projects; ``warm`` holds
every declared object exactly as an apply would have left it (owner markers included);
``drift`` is ``warm`` with 1% of the declared resources changed out of band; ``migrate`` is
``warm`` before the issuer deadline (issue 11 §2, §3): every connection on the Azure DevOps
(legacy) issuer, and every fourth one a hand-made secret-based connection instead, which the
specs take over and convert; ``unmarked`` is ``warm`` made by hand (no owner marker anywhere),
the estate ``export`` takes over (the ``roundtrip`` scenario).
"""

from __future__ import annotations

import copy
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.model import implied_credential_name
from reconciler.ownership import ORG_TAG_PREFIX, OWNER_TAG, mark_description, mark_tags
from reconciler.sim.seed import default_seed, entra_issuer, entra_subject

OWNER = "bench"
ORG = "bench"
LOCATION = "westeurope"
GITHUB = "https://token.actions.githubusercontent.com"
AUDIENCE = "api://AzureADTokenExchange"
ROLE_GUIDS = {
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
}
MSI_API = "2024-11-30"
AUTHZ_API = "2022-04-01"
_NS = uuid.UUID("6f1c1a52-9a55-4b8e-bf2e-3f8f3c0b0e11")
# a secret-based connection's client secret in the ``migrate`` seed (the simulator keeps only
# that one is set; nothing may ever print it)
BENCH_SECRET = "bench-client-secret-never-printed-4e1f"
# every CONVERT_EVERY-th connection of the ``migrate`` seed signs in with a secret
CONVERT_EVERY = 4
# Change.operation values of the plan document (docs/plan-format.md)
MIGRATE_OP = "migrate-issuer"
CONVERT_OP = "convert-to-workload-identity"


def _uuid(*parts: object) -> str:
    return str(uuid.uuid5(_NS, "/".join(str(p) for p in parts)))


@dataclass(frozen=True)
class Shape:
    identities: int
    subscriptions: int = 4
    resource_groups: int = 20
    projects: int = 10
    credentials: int = 3
    assignments: int = 3
    connection_every: int = 5


@dataclass
class Credential:
    name: str
    issuer: str
    subject: str


@dataclass
class Assignment:
    name: str  # the live assignment's GUID name (seeded)
    role: str
    scope: str
    description: str | None


@dataclass
class Connection:
    name: str
    project: str
    endpoint_id: str
    description: str
    permissions: str | list[str]


@dataclass
class Identity:
    index: int
    name: str
    subscription: str
    resource_group: str
    principal_id: str
    client_id: str
    tags: dict[str, str]
    credentials: list[Credential] = field(default_factory=list)
    assignments: list[Assignment] = field(default_factory=list)
    connection: Connection | None = None

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{self.name}"
        )


class BenchWorld:
    """The declared organisation for one size, and the seeds that match it."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        base = default_seed()
        self.tenant = str(base["tenant"])
        self.clients = base["clients"]
        self.subscriptions = [
            (f"b{k:07d}-0000-4000-8000-{k:012d}", f"bench-sub-{k}")
            for k in range(1, shape.subscriptions + 1)
        ]
        per_sub = shape.resource_groups // shape.subscriptions
        self.groups = [
            (self.subscriptions[g // per_sub][0], f"bench-rg-{g:02d}")
            for g in range(shape.resource_groups)
        ]
        self.org_id = _uuid("org", ORG)
        self.project_names = [f"proj-{p:02d}" for p in range(shape.projects)]
        self.identities = [self._identity(i, per_sub) for i in range(shape.identities)]

    def _identity(self, i: int, per_sub: int) -> Identity:
        g = i % self.shape.resource_groups
        sub, rg = self.groups[g]
        sibling = self.groups[(g // per_sub) * per_sub + (g + 1) % per_sub][1]
        name = f"mi-{i:05d}"
        ident = Identity(
            index=i,
            name=name,
            subscription=sub,
            resource_group=rg,
            principal_id=_uuid("principal", i),
            client_id=_uuid("client", i),
            tags={"team": f"team-{i % 10:02d}", "app": f"app-{i:05d}"},
        )
        subjects = [
            ("gh-main", f"repo:bench/app-{i:05d}:ref:refs/heads/main"),
            ("gh-staging", f"repo:bench/app-{i:05d}:environment:staging"),
            ("gh-production", f"repo:bench/app-{i:05d}:environment:production"),
        ]
        for cname, subject in subjects[: self.shape.credentials]:
            ident.credentials.append(Credential(cname, GITHUB, subject))
        roles = [
            ("Reader", f"/subscriptions/{sub}/resourceGroups/{rg}", None),
            ("Contributor", f"/subscriptions/{sub}/resourceGroups/{sibling}", None),
            ("Key Vault Secrets User", f"/subscriptions/{sub}", f"app-{i:05d} reads its secrets"),
        ]
        for k, (role, scope, description) in enumerate(roles[: self.shape.assignments]):
            ident.assignments.append(Assignment(_uuid("ra", i, k), role, scope, description))
        if i % self.shape.connection_every == 0:
            project = self.project_names[(i // self.shape.connection_every) % self.shape.projects]
            permissions: str | list[str] = (
                "all" if (i // self.shape.connection_every) % 2 else [f"{project}-deploy"]
            )
            ident.connection = Connection(
                name=f"sc-{i:05d}",
                project=project,
                endpoint_id=_uuid("endpoint", i),
                description=f"deployments of app-{i:05d}",
                permissions=permissions,
            )
        return ident

    # -- sizes -----------------------------------------------------------------------------

    @property
    def connections(self) -> list[Identity]:
        return [i for i in self.identities if i.connection is not None]

    def declared(self) -> dict[str, int]:
        """Declared resources by kind (an implied credential counts as a credential)."""
        n_conn = len(self.connections)
        return {
            "identity": len(self.identities),
            "federated_credential": sum(len(i.credentials) for i in self.identities) + n_conn,
            "role_assignment": sum(len(i.assignments) for i in self.identities),
            "service_connection": n_conn,
        }

    # -- specs -----------------------------------------------------------------------------

    def write_specs(self, directory: Path) -> Path:
        """One spec file per resource group (a team's file), as a platform repo would hold."""
        directory.mkdir(parents=True, exist_ok=True)
        for sub, rg in self.groups:
            members = [i for i in self.identities if i.resource_group == rg]
            if not members:
                continue
            doc: dict[str, Any] = {
                "version": 1,
                "owner": OWNER,
                "defaults": {
                    "subscription": sub,
                    "resourceGroup": rg,
                    "location": LOCATION,
                    "organization": ORG,
                },
                "identities": [self._identity_spec(i) for i in members],
            }
            connections = [self._connection_spec(i) for i in members if i.connection]
            if connections:
                doc["serviceConnections"] = connections
            text = yaml.safe_dump(doc, sort_keys=False, width=200)
            (directory / f"{rg}.yaml").write_text(text, encoding="utf-8")
        return directory

    def _identity_spec(self, ident: Identity) -> dict[str, Any]:
        ras: list[dict[str, Any]] = []
        for a in ident.assignments:
            entry: dict[str, Any] = {"role": a.role, "scope": a.scope}
            if a.description:
                entry["description"] = a.description
            ras.append(entry)
        return {
            "name": ident.name,
            "tags": dict(ident.tags),
            "federatedCredentials": [
                {"name": c.name, "issuer": c.issuer, "subject": c.subject}
                for c in ident.credentials
            ],
            "roleAssignments": ras,
        }

    def _connection_spec(self, ident: Identity) -> dict[str, Any]:
        c = ident.connection
        assert c is not None
        return {
            "name": c.name,
            "project": c.project,
            "description": c.description,
            "identity": ident.name,
            "subscriptionName": self._subscription_name(ident.subscription),
            "pipelinePermissions": c.permissions,
        }

    def _subscription_name(self, sub: str) -> str:
        return dict(self.subscriptions)[sub]

    # -- seeds -----------------------------------------------------------------------------

    def seed(self, scenario: str) -> dict[str, Any]:
        if scenario in ("cold", "apply"):
            return self._base_seed()
        if scenario == "unmarked":
            return self._warm_seed(marked=False)
        if scenario == "migrate":
            return self._migrate_seed()
        seed = self._warm_seed()
        if scenario == "drift":
            self._drift(seed)
        return seed

    # -- migration (issue 11 §2, §3) ---------------------------------------------------------

    def converted(self, ident: Identity) -> bool:
        """Whether ``ident``'s connection is secret-based in the ``migrate`` seed."""
        return (
            ident.connection is not None
            and (ident.index // self.shape.connection_every) % CONVERT_EVERY == CONVERT_EVERY - 1
        )

    def migrations(self) -> tuple[int, int]:
        """(connections on the legacy issuer, secret-based connections) in the ``migrate``
        seed: the issuer migrations and the conversions its plan holds."""
        secret = sum(1 for i in self.connections if self.converted(i))
        return len(self.connections) - secret, secret

    def app_registration(self, ident: Identity) -> str:
        """Client id of the app registration a secret-based connection signs in as."""
        return _uuid("app", ident.index)

    def _migrate_seed(self) -> dict[str, Any]:
        """``warm`` before the deadline: the connections the tool made are on the Azure DevOps
        issuer (their identities hold the credential for it, under the name the tool gives a
        connection's credential); those ``converted`` were made by hand with a client secret,
        signing in as an app registration, and carry no owner marker (their identities, the
        tool's, hold no credential for them and no inventory tag for the organisation)."""
        seed = self._warm_seed()
        org = seed["devops"]["organizations"][0]
        endpoints = {e["name"]: e for e in org["serviceEndpoints"]}
        by_name = {i["name"]: i for i in seed["identities"]}
        for ident in self.connections:
            c = ident.connection
            assert c is not None
            endpoint = endpoints[c.name]
            live = by_name[ident.name]
            implied = implied_credential_name(ORG, c.project, c.name)
            if self.converted(ident):
                endpoint.update(
                    scheme="ServicePrincipal",
                    description=c.description,
                    parameters={
                        "serviceprincipalid": self.app_registration(ident),
                        "tenantid": self.tenant,
                        "authenticationType": "spnKey",
                        "serviceprincipalkey": BENCH_SECRET,
                    },
                )
                live["federatedCredentials"] = [
                    f for f in live["federatedCredentials"] if f["name"] != implied
                ]
                live["tags"] = mark_tags(dict(ident.tags), OWNER)
                continue
            # Azure DevOps' own issuer and subject for a connection (estate-and-ci.md §1)
            endpoint["issuer"] = "devops"
            for f in live["federatedCredentials"]:
                if f["name"] == implied:
                    f["issuer"] = f"https://vstoken.dev.azure.com/{self.org_id}"
                    f["subject"] = f"sc://{ORG}/{c.project}/{c.name}"
        return seed

    def _base_seed(self) -> dict[str, Any]:
        groups: dict[str, list[dict[str, str]]] = {}
        for sub, rg in self.groups:
            groups.setdefault(sub, []).append({"name": rg, "location": LOCATION})
        return {
            "tenant": self.tenant,
            "clients": copy.deepcopy(self.clients),
            "subscriptions": [
                {"id": sub, "name": name, "resourceGroups": groups.get(sub, [])}
                for sub, name in self.subscriptions
            ],
            "identities": [],
            "roleAssignments": [],
            "devops": {
                "organizations": [
                    {
                        "name": ORG,
                        "id": self.org_id,
                        "issuerFormat": "entra",
                        "projects": [
                            {
                                "name": p,
                                "id": _uuid("project", p),
                                "pipelines": [
                                    {"id": 1, "name": f"{p}-deploy"},
                                    {"id": 2, "name": f"{p}-ci"},
                                    {"id": 3, "name": f"{p}-release"},
                                ],
                            }
                            for p in self.project_names
                        ],
                        "serviceEndpoints": [],
                        "pipelinePermissions": [],
                    }
                ]
            },
        }

    def _warm_seed(self, *, marked: bool = True) -> dict[str, Any]:
        """Every declared object as an apply leaves it; ``marked=False``: the same objects made
        by hand, without the owner's markers (tag, inventory, description marker)."""
        seed = self._base_seed()
        org = seed["devops"]["organizations"][0]

        def described(text: str | None) -> str | None:
            return mark_description(text, OWNER) if marked else text

        def tagged(ident: Identity, inventory: dict[str, str] | None) -> dict[str, str]:
            return mark_tags(dict(ident.tags), OWNER, inventory) if marked else dict(ident.tags)

        for ident in self.identities:
            fics = [
                {"name": c.name, "issuer": c.issuer, "subject": c.subject, "audiences": [AUDIENCE]}
                for c in ident.credentials
            ]
            c = ident.connection
            if c is not None:
                fics.append(
                    {
                        "name": implied_credential_name(ORG, c.project, c.name),
                        "issuer": entra_issuer(self.tenant),
                        "subject": entra_subject(self.tenant, self.org_id, c.endpoint_id),
                        "audiences": [AUDIENCE],
                    }
                )
                org["serviceEndpoints"].append(
                    {
                        "id": c.endpoint_id,
                        "name": c.name,
                        "type": "azurerm",
                        "scheme": "WorkloadIdentityFederation",
                        "description": described(c.description),
                        "projects": [c.project],
                        "parameters": {
                            "serviceprincipalid": ident.client_id,
                            "tenantid": self.tenant,
                        },
                        "data": {
                            "subscriptionId": ident.subscription,
                            "subscriptionName": self._subscription_name(ident.subscription),
                            "environment": "AzureCloud",
                            "scopeLevel": "Subscription",
                            "creationMode": "Manual",
                        },
                    }
                )
                perm: dict[str, Any] = {"project": c.project, "endpoint": c.name}
                if c.permissions == "all":
                    perm["allPipelines"] = True
                else:
                    perm["pipelines"] = list(c.permissions)
                org["pipelinePermissions"].append(perm)
            seed["identities"].append(
                {
                    "subscription": ident.subscription,
                    "resourceGroup": ident.resource_group,
                    "name": ident.name,
                    "location": LOCATION,
                    # as the tool writes them: owner tag and the inventory (README "Safety")
                    "tags": tagged(ident, {self.org_id: ORG} if c is not None else None),
                    "principalId": ident.principal_id,
                    "clientId": ident.client_id,
                    "federatedCredentials": fics,
                }
            )
            for a in ident.assignments:
                seed["roleAssignments"].append(
                    {
                        "name": a.name,
                        "identity": {
                            "subscription": ident.subscription,
                            "resourceGroup": ident.resource_group,
                            "name": ident.name,
                        },
                        "scope": a.scope,
                        "roleDefinitionId": ROLE_GUIDS[a.role],
                        "principalType": "ServicePrincipal",
                        "description": described(a.description),
                    }
                )
        return seed

    # -- drift -----------------------------------------------------------------------------

    def drift_count(self) -> int:
        return max(1, round(sum(self.declared().values()) / 100))

    def _drift(self, seed: dict[str, Any]) -> None:
        """Change 1% of the declared resources as a portal user would, one change each,
        rotating over six kinds of edit on identities spread evenly through the organisation."""
        n = len(self.identities)
        k = self.drift_count()
        by_name = {i["name"]: i for i in seed["identities"]}
        ras = {ra["name"]: ra for ra in seed["roleAssignments"]}
        endpoints = {e["name"]: e for e in seed["devops"]["organizations"][0]["serviceEndpoints"]}
        deleted: set[str] = set()
        for j in range(k):
            ident = self.identities[math.floor(j * n / k)]
            live = by_name[ident.name]
            edit = j % 6
            if edit == 5:
                owner_of = self.identities[(ident.index // 5) * 5]
                assert owner_of.connection is not None
                e = endpoints[owner_of.connection.name]
                e["description"] = mark_description("edited in the portal", OWNER)
            elif edit == 0:
                live["tags"]["team"] = "edited-in-portal"
            elif edit == 1:
                live["federatedCredentials"][min(1, len(ident.credentials) - 1)]["subject"] += "-x"
            elif edit == 2:
                deleted.add(ident.assignments[0].name)
            elif edit == 3:
                live["federatedCredentials"].pop(len(ident.credentials) - 1)
            else:
                ras[ident.assignments[-1].name]["description"] = mark_description(
                    "widened in the portal", OWNER
                )
        seed["roleAssignments"] = [
            ra for ra in seed["roleAssignments"] if ra["name"] not in deleted
        ]

    def drift_edits(self) -> list[dict[str, Any]]:
        """The same 1% of changes as the ``drift`` seed, as admin API edits of a ``warm``
        world (``POST /_sim/edit``), each by a named portal user, so that the Activity Log
        and the audit log record them (the ``incremental`` scenario)."""
        seed = self._warm_seed()
        by_name = {i["name"]: i for i in seed["identities"]}
        n = len(self.identities)
        k = self.drift_count()
        edits: list[dict[str, Any]] = []
        for j in range(k):
            ident = self.identities[math.floor(j * n / k)]
            live = by_name[ident.name]
            caller = f"portal-user-{j % 7}@contoso.com"
            fics = live["federatedCredentials"]
            edit = j % 6
            if edit == 5:
                owner_of = self.identities[(ident.index // 5) * 5]
                assert owner_of.connection is not None
                body: dict[str, Any] = {
                    "kind": "service_endpoint",
                    "id": owner_of.connection.endpoint_id,
                    "patch": {"description": mark_description("edited in the portal", OWNER)},
                }
            elif edit == 0:
                tags = dict(live["tags"], team="edited-in-portal")
                body = {"kind": "identity", "id": ident.arm_id, "patch": {"tags": tags}}
            elif edit == 1:
                fic = fics[min(1, len(ident.credentials) - 1)]
                body = {
                    "kind": "federated_credential",
                    "id": f"{ident.arm_id}/federatedIdentityCredentials/{fic['name']}",
                    "patch": {"subject": fic["subject"] + "-x"},
                }
            elif edit == 2:
                body = {"kind": "role_assignment", "id": ident.assignments[0].name, "delete": True}
            elif edit == 3:
                fic = fics[len(ident.credentials) - 1]
                body = {
                    "kind": "federated_credential",
                    "id": f"{ident.arm_id}/federatedIdentityCredentials/{fic['name']}",
                    "delete": True,
                }
            else:
                body = {
                    "kind": "role_assignment",
                    "id": ident.assignments[-1].name,
                    "patch": {"description": mark_description("widened in the portal", OWNER)},
                }
            edits.append({**body, "caller": caller})
        return edits

    # -- what a per-resource refresh reads ---------------------------------------------------

    def refresh_reads(self) -> list[dict[str, str]]:
        """One GET per declared resource (two per role assignment: the assignment and its role
        definition; pipeline permissions are a resource of their own, as in Terraform)."""
        reads: list[dict[str, str]] = []
        msi = f"?api-version={MSI_API}"
        authz = f"?api-version={AUTHZ_API}"
        for ident in self.identities:
            key = ident.arm_id.lower()
            sub = ident.subscription
            reads.append(
                {"path": ident.arm_id + msi, "cls": "reads", "msi": "get", "sub": sub, "res": key}
            )
            names = [c.name for c in ident.credentials]
            c = ident.connection
            if c is not None:
                names.append(implied_credential_name(ORG, c.project, c.name))
            for name in names:
                reads.append(
                    {
                        "path": f"{ident.arm_id}/federatedIdentityCredentials/{name}{msi}",
                        "cls": "reads",
                        "msi": "get",
                        "sub": sub,
                        "res": key,
                    }
                )
            for a in ident.assignments:
                reads.append(
                    {
                        "path": f"{a.scope}/providers/Microsoft.Authorization/roleAssignments/"
                        f"{a.name}{authz}",
                        "cls": "reads",
                        "sub": sub,
                    }
                )
                reads.append(
                    {
                        "path": f"/subscriptions/{sub}/providers/Microsoft.Authorization/"
                        f"roleDefinitions/{ROLE_GUIDS[a.role]}{authz}",
                        "cls": "reads",
                        "sub": sub,
                    }
                )
            if c is not None:
                base = f"/devops/{ORG}/{c.project}/_apis"
                reads.append(
                    {
                        "path": f"{base}/serviceendpoint/endpoints/{c.endpoint_id}?api-version=7.1",
                        "cls": "ado",
                    }
                )
                reads.append(
                    {
                        "path": f"{base}/pipelines/pipelinePermissions/endpoint/{c.endpoint_id}"
                        "?api-version=7.1-preview.1",
                        "cls": "ado",
                    }
                )
        return reads


# -- the round trip's check: live state unchanged but for the owner's markers -----------------


def _fics(identity: dict[str, Any]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return sorted(
        (str(f["name"]), str(f["issuer"]), str(f["subject"]), tuple(f.get("audiences") or []))
        for f in identity.get("federatedCredentials") or []
    )


def _refs(endpoint: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted(
        (str(r["projectReference"]["name"]), str(r.get("name")))
        for r in endpoint.get("serviceEndpointProjectReferences") or []
    )


def marker_only_changes(before: dict[str, Any], after: dict[str, Any], owner: str) -> list[str]:
    """What differs between two ``GET /_sim/state`` snapshots other than ``owner``'s markers
    being stamped (an empty list: adoption touched nothing else).

    Checked: the same identities (location, principal and client ids, every tag but the
    owner tag and the inventory tags, which must be the owner's and organisations the estate
    holds), their federated credentials (name, issuer, subject, audiences); the same role
    assignments (role, scope, principal, condition; description = the old one marked); the same
    service connections (id, name, scheme, every authorization parameter including the issuer
    and subject, data, projects; description = the old one marked) and pipeline permissions.
    Each difference is one line naming the object."""
    out: list[str] = []
    orgs = {str(o["id"]).lower(): str(o["name"]) for o in after["devops"]["organizations"]}

    def idents(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {
            f"{i['subscription']}/{i['resourceGroup']}/{i['name']}".lower(): i
            for i in state["identities"]
        }

    old_i, new_i = idents(before), idents(after)
    if set(old_i) != set(new_i):
        out.append(f"identities: {sorted(set(old_i) ^ set(new_i))[:5]} added or removed")
    for key in sorted(set(old_i) & set(new_i)):
        a, b = old_i[key], new_i[key]
        for field_ in ("location", "principalId", "clientId"):
            if a.get(field_) != b.get(field_):
                out.append(f"identity {key}: {field_} {a.get(field_)!r} -> {b.get(field_)!r}")
        if _fics(a) != _fics(b):
            out.append(f"identity {key}: federated credentials {_fics(a)} -> {_fics(b)}")
        tags_a, tags_b = dict(a.get("tags") or {}), dict(b.get("tags") or {})
        if tags_b.get(OWNER_TAG) != owner:
            out.append(f"identity {key}: owner tag {tags_b.get(OWNER_TAG)!r}, not {owner!r}")
        for k in sorted(set(tags_a) | set(tags_b)):
            if k == OWNER_TAG:
                continue
            if k.startswith(ORG_TAG_PREFIX) and k not in tags_a:
                if orgs.get(k[len(ORG_TAG_PREFIX) :]) != tags_b[k]:
                    out.append(f"identity {key}: inventory tag {k}={tags_b[k]!r} names no org")
            elif tags_a.get(k) != tags_b.get(k):
                out.append(f"identity {key}: tag {k} {tags_a.get(k)!r} -> {tags_b.get(k)!r}")

    old_r = {str(r["name"]).lower(): r for r in before["roleAssignments"]}
    new_r = {str(r["name"]).lower(): r for r in after["roleAssignments"]}
    if set(old_r) != set(new_r):
        out.append(f"role assignments: {sorted(set(old_r) ^ set(new_r))[:5]} added or removed")
    for key in sorted(set(old_r) & set(new_r)):
        a, b = old_r[key], new_r[key]
        for field_ in ("scope", "roleDefinitionId", "principalId", "principalType", "condition"):
            if a.get(field_) != b.get(field_):
                out.append(
                    f"role assignment {key}: {field_} {a.get(field_)!r} -> {b.get(field_)!r}"
                )
        if b.get("description") != mark_description(a.get("description"), owner):
            out.append(
                f"role assignment {key}: description {a.get('description')!r} -> "
                f"{b.get('description')!r}"
            )

    for org_a, org_b in zip(
        before["devops"]["organizations"], after["devops"]["organizations"], strict=True
    ):
        old_e = {str(e["id"]).lower(): e for e in org_a["serviceEndpoints"]}
        new_e = {str(e["id"]).lower(): e for e in org_b["serviceEndpoints"]}
        if set(old_e) != set(new_e):
            out.append(f"connections: {sorted(set(old_e) ^ set(new_e))[:5]} added or removed")
        for key in sorted(set(old_e) & set(new_e)):
            a, b = old_e[key], new_e[key]
            for field_ in ("name", "type", "scheme", "parameters", "data"):
                if a.get(field_) != b.get(field_):
                    out.append(f"connection {key}: {field_} {a.get(field_)!r} -> {b.get(field_)!r}")
            if _refs(a) != _refs(b):
                out.append(f"connection {key}: projects {_refs(a)} -> {_refs(b)}")
            if b.get("description") != mark_description(a.get("description"), owner):
                out.append(
                    f"connection {key}: description {a.get('description')!r} -> "
                    f"{b.get('description')!r}"
                )

        def perms(org: dict[str, Any]) -> list[tuple[Any, ...]]:
            return sorted(
                (
                    p["project"],
                    p["resourceType"],
                    p["resourceId"],
                    p["allPipelines"],
                    tuple(p["pipelines"]),
                )
                for p in org["pipelinePermissions"]
            )

        if perms(org_a) != perms(org_b):
            out.append(f"organisation {org_a['name']}: pipeline permissions changed")
    return out


def migration_problems(world: BenchWorld, state: dict[str, Any]) -> list[str]:
    """What a ``GET /_sim/state`` snapshot after migrating the ``migrate`` seed still lacks:
    every connection keeps its id, signs in with workload identity federation as its spec's
    identity, on the Microsoft Entra issuer and subject Azure DevOps generates for it, with no
    client secret; its identity holds the credential for that pair and none for the Azure
    DevOps issuer."""
    out: list[str] = []
    (org,) = state["devops"]["organizations"]
    endpoints = {str(e["id"]).lower(): e for e in org["serviceEndpoints"]}
    idents = {str(i["name"]): i for i in state["identities"]}
    issuer = entra_issuer(world.tenant)
    for ident in world.connections:
        c = ident.connection
        assert c is not None
        e = endpoints.get(c.endpoint_id.lower())
        if e is None:
            out.append(f"connection {c.name}: id {c.endpoint_id} gone")
            continue
        params = e["parameters"]
        subject = entra_subject(world.tenant, world.org_id, c.endpoint_id)
        if e["scheme"] != "WorkloadIdentityFederation" or "serviceprincipalkey" in params:
            out.append(f"connection {c.name}: scheme {e['scheme']}, parameters {sorted(params)}")
        if (
            params.get("workloadIdentityFederationIssuer"),
            params.get("workloadIdentityFederationSubject"),
        ) != (issuer, subject):
            out.append(f"connection {c.name}: not on the Entra issuer and subject")
        if str(params.get("serviceprincipalid")).lower() != ident.client_id:
            out.append(f"connection {c.name}: signs in as {params.get('serviceprincipalid')}")
        pairs = {(f["issuer"], f["subject"]) for f in idents[ident.name]["federatedCredentials"]}
        if (issuer, subject) not in pairs:
            out.append(f"identity {ident.name}: no credential for its connection's Entra pair")
        if any(i.startswith("https://vstoken.dev.azure.com/") for i, _ in pairs):
            out.append(f"identity {ident.name}: the Azure DevOps issuer's credential is left")
    return out


# -- what the plans of ``migrate`` and ``roundtrip`` must hold ---------------------------------


def migration_plan(
    world: BenchWorld, changes: list[dict[str, Any]]
) -> tuple[dict[str, int], list[str]]:
    """Exactly one issuer migration per legacy connection, one conversion per secret-based
    one, and for each converted connection its identity gaining the organisation's
    inventory tag (a connection of the owner now signs in as it); nothing else."""
    migrate: set[str] = set()
    convert: set[str] = set()
    tagged: set[str] = set()
    for ident in world.connections:
        c = ident.connection
        assert c is not None
        key = f"service_connection.{ORG}/{c.project}/{c.name}"
        if world.converted(ident):
            convert.add(key)
            tagged.add(f"identity.{ident.subscription}/{ident.resource_group}/{ident.name}")
        else:
            migrate.add(key)
    counts = {MIGRATE_OP: 0, CONVERT_OP: 0, "inventory": 0}
    wrong: list[str] = []
    for change in changes:
        address, operation = str(change["address"]), change.get("operation")
        paths = {str(f["path"]) for f in change.get("fields") or []}
        if change["action"] == "update" and operation == MIGRATE_OP and address in migrate:
            counts[MIGRATE_OP] += 1
            migrate.discard(address)
        elif change["action"] == "update" and operation == CONVERT_OP and address in convert:
            counts[CONVERT_OP] += 1
            convert.discard(address)
        elif (
            change["action"] == "update"
            and address in tagged
            and paths
            and all(p.startswith("organizations.") for p in paths)
        ):
            counts["inventory"] += 1
            tagged.discard(address)
        else:
            wrong.append(f"unexpected change {change['action']} {address} {operation}")
    for left in sorted(migrate | convert | tagged)[:5]:
        wrong.append(f"no change planned for {left}")
    return counts, wrong


def adoption_plan(
    world: BenchWorld, changes: list[dict[str, Any]]
) -> tuple[dict[str, int], list[str]]:
    """Adoption only (issue 11 §1): every change an update for adoption that stamps the
    owner marker (and, on an identity, the inventory tag), one per declared identity, role
    assignment and connection."""
    counts: dict[str, int] = {}
    wrong: list[str] = []
    for change in changes:
        paths = {str(f["path"]) for f in change.get("fields") or []}
        extra = {p for p in paths if p != "owner" and not p.startswith("organizations.")}
        if (change["action"], change.get("reason")) != ("update", "adoption") or extra:
            wrong.append(
                f"not an adoption: {change['action']} {change['address']} "
                f"({change.get('reason')}) {sorted(extra)}"
            )
        counts[str(change["kind"])] = counts.get(str(change["kind"]), 0) + 1
    declared = world.declared()
    want = {k: declared[k] for k in ("identity", "role_assignment", "service_connection")}
    if counts != want:
        wrong.append(f"adoptions by kind {counts}, expected {want}")
    return counts, wrong
