"""The shared vocabulary: addresses, desired and live resources, and the two states.

Pure data, no I/O. Every attribute value is JSON-able (str, int, bool, None, list, dict)
or the ``UNKNOWN`` sentinel ("known after apply").

Canonical attribute sets per kind (``Resource.attrs`` / ``LiveResource.attrs``); keys are
camelCase as in the spec. ``*`` marks live-only (computed) fields.

identity             key ``{subscription}/{resourceGroup}/{name}`` (lower-cased)
    subscription, resourceGroup, name, location, tags (dict, without the owner tag),
    *id, *principalId, *clientId, *tenantId
federated_credential key ``{identity key}/{name}`` (lower-cased)
    identity (identity key), name, issuer, subject, audiences (sorted list),
    serviceConnection (connection key for a credential a connection implies, else None;
    desired only), *id
role_assignment      key ``{identity key}/{scope}/{role definition GUID}`` (lower-cased);
                     before role names are resolved the last part is ``name:{role name}``
    identity (identity key or None for an orphan), role (as written, desired only),
    roleDefinitionId (GUID, lower-case, None until resolved), scope, description,
    condition, conditionVersion, *id, *name (assignment GUID), *principalId, *principalType
service_connection   key ``{organization}/{project}/{name}`` (lower-cased)
    organization, project, name, description, identity (identity key), subscriptionId,
    subscriptionName, scope (resource-group ARM id or None), sharedWith (sorted project
    names), pipelinePermissions ("all", sorted list of pipeline names, or None = unmanaged),
    issuerKind ("entra" | "devops", desired only, when the spec sets ``issuer``),
    *id, *servicePrincipalId, *tenantId, *issuer, *subject, *issuerType, *isReady,
    *scheme (WorkloadIdentityFederation or ServicePrincipal), *environment (AzureCloud...);
    a migration or conversion sets issuer, subject (and scheme) in the plan's ``after``
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final


class Kind(StrEnum):
    IDENTITY = "identity"
    FEDERATED_CREDENTIAL = "federated_credential"
    ROLE_ASSIGNMENT = "role_assignment"
    SERVICE_CONNECTION = "service_connection"


class _Unknown:
    """A value only the service can tell, after apply (like Terraform's "known after apply")."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()

# The default and recommended audience for every federated credential.
DEFAULT_AUDIENCE: Final = "api://AzureADTokenExchange"
# Azure DevOps' first-party application id, the resource its Entra tokens are issued for.
DEVOPS_RESOURCE_ID: Final = "499b84ac-1321-427f-aa17-267ca6975798"
MAX_CREDENTIALS_PER_IDENTITY: Final = 20
MAX_ROLE_ASSIGNMENTS_PER_SUBSCRIPTION: Final = 4000
MAX_ROLE_ASSIGNMENTS_PER_MANAGEMENT_GROUP: Final = 500
# tags on one Azure resource [doc: learn.microsoft.com/azure/azure-resource-manager/management/
# tag-resources, "Limitations"]; the owner tag and the inventory tags count too
MAX_TAGS_PER_RESOURCE: Final = 50


@dataclass(frozen=True, order=True)
class Address:
    """A resource's identity inside the tool: its kind and canonical natural key."""

    kind: Kind
    key: str

    # written out: the generated pair builds tuples and calls Enum.__hash__ (Python code) on
    # every lookup, and a plan of 7,400 resources does some 150,000 of them
    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            assert isinstance(other, Address)
            return self.key == other.key and self.kind == other.kind
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return f"{self.kind}.{self.key}"

    @classmethod
    def parse(cls, text: str) -> Address:
        kind, _, key = text.partition(".")
        return cls(Kind(kind), key)


@dataclass(frozen=True)
class Source:
    """Where a desired resource was declared."""

    file: str
    line: int
    column: int = 1
    path: str = ""

    def __str__(self) -> str:
        """``file:line:column``, as validation problems are located (editors jump to it)."""
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Resource:
    """A desired resource, flattened from the specs, in canonical form."""

    address: Address
    attrs: Mapping[str, Any]
    source: Source | None = None
    depends_on: tuple[Address, ...] = ()
    # where single fields were written, for errors only live state can find (a misspelt project,
    # pipeline, role or resource group): "project", "role", "scope", "sharedWith/{name lower}",
    # "pipelinePermissions/{name lower}", ... A value taken from `defaults` points there.
    fields: Mapping[str, Source] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Reach:
    """Places the specs ask to search for the owner's objects besides those found by
    discovery (``reach`` in the specs): subscription ids (lower-case), management group scopes
    (``/providers/Microsoft.Management/managementGroups/{name}``) and organisation names."""

    subscriptions: tuple[str, ...] = ()
    management_groups: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportScope:
    """What ``reconciler export`` reads: every identity, federated credential, role assignment
    and service connection in these places, declared or not, whoever marked it.

    ``subscriptions``: ids (lower-case); ``resource_groups``: names (lower-case) that limit the
    identities to those groups, empty for every group; ``organizations``: Azure DevOps
    organisation names; ``projects``: names (lower-case) that limit the connections to those
    projects, empty for every project."""

    subscriptions: tuple[str, ...] = ()
    resource_groups: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()

    def holds_identity(self, key: str) -> bool:
        """Whether the identity ``{subscription}/{resourceGroup}/{name}`` (lower) is in scope."""
        sub, rg, _ = key.split("/", 2)
        return sub in self.subscriptions and (
            not self.resource_groups or rg in self.resource_groups
        )

    def holds_project(self, organization: str, project: str) -> bool:
        """Whether connections of ``organization``/``project`` are in scope."""
        return organization.lower() in {o.lower() for o in self.organizations} and (
            not self.projects or project.lower() in self.projects
        )


@dataclass(frozen=True)
class DesiredState:
    owner: str
    resources: Mapping[Address, Resource]
    files: tuple[str, ...] = ()
    reach: Reach = field(default_factory=Reach)

    def of_kind(self, kind: Kind) -> list[Resource]:
        # in address order; within one kind that is key order (sorting only the kind's own
        # resources by their key string is ~15x faster than sorting every Address)
        found = [r for a, r in self.resources.items() if a.kind is kind]
        return sorted(found, key=lambda r: r.address.key)


class Ownership(StrEnum):
    OWNED = "owned"
    FOREIGN = "foreign"
    UNMARKED = "unmarked"


@dataclass(frozen=True)
class LiveResource:
    """A live object as observed, in canonical form, with its ownership marker decoded."""

    address: Address
    attrs: Mapping[str, Any]
    owner: str | None = None
    # Digest of the raw object as read, so that a saved plan can detect that it moved.
    fingerprint: str = ""


@dataclass(frozen=True)
class RoleDefinition:
    guid: str  # lower-case
    name: str
    role_type: str = "BuiltInRole"  # or "CustomRole"


@dataclass(frozen=True)
class LiveState:
    """Everything observed that the planner needs; built by ``observe``."""

    resources: Mapping[Address, LiveResource] = field(default_factory=dict)
    # role definitions known per subscription (lower-case subscription id -> definitions)
    role_definitions: Mapping[str, tuple[RoleDefinition, ...]] = field(default_factory=dict)
    # how many role assignments each subscription already holds (all principals), for limits
    role_assignment_counts: Mapping[str, int] = field(default_factory=dict)
    # Azure DevOps: organisation name (lower) -> organisation id
    organizations: Mapping[str, str] = field(default_factory=dict)
    # "{org}/{project}" (lower) -> project id
    projects: Mapping[str, str] = field(default_factory=dict)
    # "{org}/{project}" (lower) -> {pipeline name: pipeline id}
    pipelines: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # Entra tenant the target lives in (for new connections' tenantid parameter)
    tenant_id: str = ""
    # (issuer, subject) -> keys of the live service connections that sign in with that pair:
    # every connection read, owned or not (a credential they use must not vanish silently)
    federations: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    # subscription (lower) -> names of its resource groups the caller can read, for every
    # subscription whose resource group list was read (absent: not read, nothing to check)
    resource_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # subscription (lower) -> why it could not be read ("SubscriptionNotFound", 403, ...)
    subscription_errors: Mapping[str, str] = field(default_factory=dict)
    # organisation (lower) -> names of its projects as Azure DevOps spells them
    project_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # organisation (lower) -> why it could not be read (it does not exist, or no access)
    organization_errors: Mapping[str, str] = field(default_factory=dict)

    def of_kind(self, kind: Kind) -> list[LiveResource]:
        found = [r for a, r in self.resources.items() if a.kind is kind]
        return sorted(found, key=lambda r: r.address.key)


def identity_key(subscription: str, resource_group: str, name: str) -> str:
    return f"{subscription}/{resource_group}/{name}".lower()


def credential_key(identity: str, name: str) -> str:
    return f"{identity}/{name}".lower()


def role_assignment_key(identity: str, scope: str, role_ref: str) -> str:
    return f"{identity}/{scope.rstrip('/')}/{role_ref}".lower()


def connection_key(organization: str, project: str, name: str) -> str:
    return f"{organization}/{project}/{name}".lower()


def implied_credential_name(organization: str, project: str, connection: str) -> str:
    """The name of the federated credential a service connection implies on its identity.

    Deterministic so that plan can find it again; fits the API's name pattern
    ``^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$`` (long names are cut and keep a short hash).
    """
    import hashlib
    import re

    raw = f"ado-{organization}-{project}-{connection}"
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", raw).strip("-_") or "ado"
    if len(name) > 120 or name != raw:
        digest = hashlib.sha256(raw.lower().encode()).hexdigest()[:8]
        name = f"{name[:111].rstrip('-_')}-{digest}"
    return name
