"""Synthetic organisations: spec files and matching simulator seeds, deterministic by size.

Shape (issue 6): each identity has 3 federated credentials and 3 role assignments; every fifth
identity has a service connection (which implies one more credential and declares pipeline
permissions); identities spread round-robin over 20 resource groups in 4 subscriptions, the
connections over 10 projects of one Azure DevOps organisation. 1,000 identities declare 7,400
resources.

Seeds: ``cold`` holds only the subscriptions, resource groups and projects; ``warm`` holds
every declared object exactly as an apply would have left it (owner markers included);
``drift`` is ``warm`` with 1% of the declared resources changed out of band.
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
from reconciler.ownership import mark_description, mark_tags
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
        seed = self._warm_seed()
        if scenario == "drift":
            self._drift(seed)
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

    def _warm_seed(self) -> dict[str, Any]:
        seed = self._base_seed()
        org = seed["devops"]["organizations"][0]
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
                        "description": mark_description(c.description, OWNER),
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
                    "tags": mark_tags(
                        dict(ident.tags), OWNER, {self.org_id: ORG} if c is not None else None
                    ),
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
                        "description": mark_description(a.description, OWNER),
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
