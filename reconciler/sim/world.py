"""The simulator's in-memory world: every object the fake services know, behind one lock.

Records are plain mutable dataclasses; the HTTP layers (``arm.py``, ``devops.py``) read and
change them while holding ``World.lock``. ``snapshot()`` turns the world back into the seed
format (see ``seed.py``), so a persisted state file is itself a valid seed.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

DEVOPS_RESOURCE: Final = "499b84ac-1321-427f-aa17-267ca6975798"
ARM_RESOURCE: Final = "https://management.azure.com"
DEVOPS_APP_SEGMENT: Final = "rISbSSETf0KqFyZ8ppdXmA"  # b64url(bytes_le) of DEVOPS_RESOURCE
MSI_TYPE: Final = "Microsoft.ManagedIdentity/userAssignedIdentities"
FIC_TYPE: Final = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"

# Descriptions the simulator gives its best-known built-in roles (Microsoft Learn's wording);
# the others carry an empty description (the tool never reads them).
_KNOWN: Final = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": (
        "Owner",
        "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
    ),
    "b24988ac-6180-42a0-ab88-20f7382dd24c": (
        "Contributor",
        "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
    ),
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": (
        "Reader",
        "View all resources, but does not allow you to make any changes.",
    ),
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": (
        "User Access Administrator",
        "Lets you manage user access to Azure resources.",
    ),
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": (
        "Role Based Access Control Administrator",
        "Manage access to Azure resources by assigning roles using Azure RBAC.",
    ),
    "f1a07417-d97a-45cb-824c-7a7467783830": (
        "Managed Identity Operator",
        "Read and Assign User Assigned Identity",
    ),
    "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59": (
        "Managed Identity Contributor",
        "Create, Read, Update, and Delete User Assigned Identity",
    ),
    "4633458b-17de-408a-b874-0445c86b69e6": ("Key Vault Secrets User", "Read secret contents."),
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": (
        "Key Vault Secrets Officer",
        "Perform any action on the secrets of a key vault, except manage permissions.",
    ),
}

# Azure's built-in role catalogue (names and GUIDs, the same in every tenant): Microsoft Learn's
# "Azure built-in roles" tables, committed with their commit and date in data/. A public file of
# Azure's facts; the tool keeps its own copy for offline validation, and a test holds the two equal.
BUILTIN_ROLES_FILE: Final = Path(__file__).resolve().parent / "data" / "azure-builtin-roles.json"


def _load_builtin_roles() -> dict[str, tuple[str, str]]:
    data = json.loads(BUILTIN_ROLES_FILE.read_text(encoding="utf-8"))
    roles = {
        str(r["id"]).lower(): (str(r["roleName"]), _KNOWN.get(str(r["id"]).lower(), ("", ""))[1])
        for r in data["roles"]
    }
    roles.update(_KNOWN)  # the source's spelling of the best-known ones is the same
    return roles


# role definition GUID -> (roleName, description)
BUILTIN_ROLES: Final = _load_builtin_roles()


# Authorization parameters the service never returns (stored, answered as null).
SECRET_PARAMETERS = frozenset(
    {
        "serviceprincipalkey",
        "password",
        "apitoken",
        "accesstoken",
        "certificate",
        "privatekey",
        "clientsecret",
        "idtoken",
    }
)
# What the simulator keeps for a secret that was set (the value itself is never kept).
SECRET_SET = "(secret set)"


def iso(ts: float) -> str:
    """ARM/ADO style UTC timestamp with 7 fractional digits trimmed to microseconds."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def guid_segment(guid: str) -> str:
    """URL-safe base64 of a GUID in Microsoft (little-endian) byte order, unpadded."""
    return base64.urlsafe_b64encode(uuid.UUID(guid).bytes_le).decode().rstrip("=")


def stable_uuid(*parts: str) -> str:
    """Deterministic ids for seeded objects, so a seed always yields the same world."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "reconciler-sim:" + ":".join(parts)))


@dataclass(slots=True)
class Client:
    client_id: str
    secret: str
    object_id: str
    display_name: str


@dataclass(slots=True)
class Principal:
    """A directory object role assignments can name."""

    id: str
    type: str  # User | Group | ServicePrincipal
    display_name: str
    created: float
    identity: str | None = None  # identity key when the principal is a managed identity


@dataclass(slots=True)
class ResourceGroup:
    subscription: str
    name: str
    location: str


@dataclass(slots=True)
class Subscription:
    id: str
    display_name: str
    management_groups: list[str] = field(default_factory=list)  # nearest first


@dataclass(slots=True)
class Fic:
    name: str
    issuer: str
    subject: str
    audiences: list[str]
    created: float
    # last write (create or update): Entra honours a credential only some time after it
    # (``fic_propagation_ms``); 0 = as old as ``created``
    written: float = 0.0


@dataclass(slots=True)
class Identity:
    subscription: str
    resource_group: str
    name: str
    location: str
    tags: dict[str, str]
    principal_id: str
    client_id: str
    tenant_id: str
    created: float
    isolation_scope: str = "None"
    fics: dict[str, Fic] = field(default_factory=dict)  # lower-case name -> credential

    @property
    def key(self) -> str:
        return identity_key(self.subscription, self.resource_group, self.name)

    @property
    def arm_id(self) -> str:
        # The MSI service spells the resource group segment in lower case.
        return (
            f"/subscriptions/{self.subscription}/resourcegroups/{self.resource_group}"
            f"/providers/{MSI_TYPE}/{self.name}"
        )


@dataclass(slots=True)
class RoleDefinition:
    guid: str
    role_name: str
    role_type: str  # BuiltInRole | CustomRole
    description: str
    assignable_scopes: list[str]
    permissions: list[dict[str, list[str]]]


@dataclass(slots=True)
class RoleAssignment:
    name: str
    scope: str  # leading slash, no trailing slash, casing as created
    role_guid: str
    principal_id: str
    principal_type: str
    description: str | None
    condition: str | None
    condition_version: str | None
    created: float
    updated: float
    created_by: str
    updated_by: str
    delegated_identity: str | None = None


@dataclass(slots=True)
class Pipeline:
    id: int
    name: str
    folder: str = "\\"


@dataclass(slots=True)
class Project:
    id: str
    name: str
    description: str
    pipelines: dict[int, Pipeline] = field(default_factory=dict)


@dataclass(slots=True)
class Organization:
    name: str
    id: str
    issuer_format: str  # "entra" | "vstoken"
    projects: dict[str, Project] = field(default_factory=dict)  # lower name -> project
    # the "Log Audit Events" policy (off by default, as in Azure DevOps): audit entries are
    # recorded only while it is on
    auditing: bool = False
    # who has "View audit log" (client ids, object ids or PAT user names); None: everyone
    audit_readers: list[str] | None = None

    def project(self, ref: str) -> Project | None:
        """A project by name or id, case-insensitively."""
        found = self.projects.get(ref.lower())
        if found is not None:
            return found
        for project in self.projects.values():
            if project.id.lower() == ref.lower():
                return project
        return None


@dataclass(slots=True)
class Endpoint:
    id: str
    organization: str  # lower-case organisation name
    name: str
    type: str
    url: str
    description: str
    owner: str
    scheme: str
    parameters: dict[str, str | None]
    data: dict[str, Any]
    project_refs: list[dict[str, Any]]  # ServiceEndpointProjectReference objects
    created: float
    created_by: dict[str, Any]
    # a scheme conversion that could not sign in yet: {"state": "InProgress", ...}
    operation_status: dict[str, str] | None = None
    # parameters a ConvertAuthenticationScheme upgrade dropped (the secret), kept for a
    # revert until data.revertSchemeDeadline
    recovery: dict[str, str | None] | None = None


@dataclass(slots=True)
class PermissionSet:
    all_pipelines: dict[str, Any] | None = None
    pipelines: dict[int, dict[str, Any]] = field(default_factory=dict)


def identity_key(subscription: str, resource_group: str, name: str) -> str:
    return f"{subscription}/{resource_group}/{name}".lower()


def norm_scope(scope: str) -> str:
    return "/" + scope.strip("/")


@dataclass
class World:
    """All state. Mutate only while holding ``lock``; bump ``version`` on every mutation."""

    tenant_id: str
    clients: dict[str, Client] = field(default_factory=dict)
    pats: dict[str, str] = field(default_factory=dict)  # token -> user display name
    principals: dict[str, Principal] = field(default_factory=dict)  # lower id
    subscriptions: dict[str, Subscription] = field(default_factory=dict)  # lower id
    resource_groups: dict[tuple[str, str], ResourceGroup] = field(default_factory=dict)
    identities: dict[str, Identity] = field(default_factory=dict)  # identity key
    role_definitions: dict[str, RoleDefinition] = field(default_factory=dict)  # lower guid
    role_assignments: dict[str, RoleAssignment] = field(default_factory=dict)  # lower name
    organizations: dict[str, Organization] = field(default_factory=dict)  # lower name
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # lower id
    permissions: dict[tuple[str, str, str, str], PermissionSet] = field(default_factory=dict)
    # (issuer, subject, deleted at) of recently deleted credentials, for fic_delete_lag_ms
    deleted_fics: list[tuple[str, str, float]] = field(default_factory=list)
    # connections deleted within delete_lag_s, still visible: lower id -> (endpoint, deleted at)
    deleted_endpoints: dict[str, tuple[Endpoint, float]] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    lock: threading.RLock = field(default_factory=threading.RLock)
    version: int = 0

    def touch(self) -> None:
        self.version += 1

    # --- lookups -------------------------------------------------------------------------

    def resource_group(self, subscription: str, name: str) -> ResourceGroup | None:
        return self.resource_groups.get((subscription.lower(), name.lower()))

    def identity(self, subscription: str, resource_group: str, name: str) -> Identity | None:
        return self.identities.get(identity_key(subscription, resource_group, name))

    def assignment_for(self, principal: str, role_guid: str, scope: str) -> RoleAssignment | None:
        p, r, s = principal.lower(), role_guid.lower(), norm_scope(scope).lower()
        for ra in self.role_assignments.values():
            if ra.principal_id.lower() == p and ra.role_guid == r and ra.scope.lower() == s:
                return ra
        return None

    def endpoints_of(self, organization: str) -> Iterator[Endpoint]:
        org = organization.lower()
        return (e for e in self.endpoints.values() if e.organization == org)

    def fic_with(self, issuer: str, subject: str) -> tuple[Identity, Fic] | None:
        for ident in self.identities.values():
            for fic in ident.fics.values():
                if fic.issuer == issuer and fic.subject == subject:
                    return ident, fic
        return None

    def role_definition_id(self, guid: str, scope: str) -> str:
        """The id form ARM echoes: subscription-scoped below a subscription, else tenant form."""
        parts = norm_scope(scope).split("/")
        if len(parts) > 2 and parts[1].lower() == "subscriptions":
            return f"/subscriptions/{parts[2]}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
        return f"/providers/Microsoft.Authorization/roleDefinitions/{guid}"

    def subscription_of(self, scope: str) -> str | None:
        parts = norm_scope(scope).split("/")
        if len(parts) > 2 and parts[1].lower() == "subscriptions":
            return parts[2].lower()
        return None

    def scope_ancestors(self, scope: str) -> list[str]:
        """Lower-case scopes at and above ``scope``, including management groups and root."""
        s = norm_scope(scope).lower()
        out: list[str] = []
        parts = s.split("/")
        # resource ids nest in steps; every prefix that is a valid scope counts
        for i in range(len(parts), 1, -1):
            out.append("/".join(parts[:i]))
        sub = self.subscription_of(s)
        if sub is not None and sub in self.subscriptions:
            for mg in self.subscriptions[sub].management_groups:
                out.append(f"/providers/microsoft.management/managementgroups/{mg.lower()}")
        out.append("/")
        return out
