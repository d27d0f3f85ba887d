"""What every kind's executor shares to tell observe where to read (``ReadPlan``) and to decode
what it read: the raw answers (``Raw``),
the index the decoders build and read (``LiveIndex``), and the object fingerprint.

Observe reads (``reconciler.observe``); each kind's executor decodes its objects out of
``Raw`` into canonical ``LiveResource`` values (``KindExecutor.decode``), in plan order, so
that the identity's index (principal and client ids) is there for its dependents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import Address, ExportScope, Kind, LiveResource, identity_key

# one encoder for every fingerprint (json.dumps builds one per call); parsed JSON cannot hold
# a cycle, so the circular-reference check is skipped: the text is the same
_CANONICAL_JSON = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), default=str, check_circular=False
)


def fingerprint(raw: Any) -> str:
    """Digest of an object as read: a saved plan compares it to tell that the object moved."""
    return hashlib.sha256(_CANONICAL_JSON.encode(raw).encode()).hexdigest()


def resource_group_of(arm_id: str) -> str:
    parts = arm_id.strip("/").split("/")
    for i, part in enumerate(parts[:-1]):
        if part.lower() == "resourcegroups":
            return parts[i + 1]
    return ""


def identity_key_of(item: Mapping[str, Any], subscription: str) -> str:
    return identity_key(subscription, resource_group_of(str(item["id"])), str(item["name"]))


@dataclass
class Raw:
    """Everything read, still in the services' shapes."""

    # subscription (lower) -> identities
    identities: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # identity key -> credentials
    credentials: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # subscription (lower) or management group scope (lower) -> assignments
    assignments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # subscription (lower) or management group scope (lower) -> definitions
    definitions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # org (as the specs spell it) -> organisation id
    organizations: dict[str, str] = field(default_factory=dict)
    # org -> projects
    projects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # (org, project name) -> endpoints
    endpoints: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    # (org, project) lower -> pipelines
    pipelines: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    # endpoint id (lower) -> pipeline permissions
    permissions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # subscription (lower) -> resource groups, for the subscriptions whose list could be read
    resource_groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # subscription (lower) -> why its resource groups could not be listed
    subscription_errors: dict[str, str] = field(default_factory=dict)
    # org (as the specs spell it) -> why it could not be read
    organization_errors: dict[str, str] = field(default_factory=dict)


@dataclass
class LiveIndex:
    """The decoded objects and the indexes decoders share. Identities decode first: every
    identity read is indexed by principal and client id (role assignments and connections
    point at them), only desired or owned ones become resources (``relevant``)."""

    owner: str
    resources: dict[Address, LiveResource] = field(default_factory=dict)
    by_principal: dict[str, str] = field(default_factory=dict)
    by_client: dict[str, str] = field(default_factory=dict)
    identity_owner: dict[str, str | None] = field(default_factory=dict)
    relevant: set[str] = field(default_factory=set)
    # "{org}/{project}" (lower) -> pipeline name -> id
    pipelines: dict[str, dict[str, int]] = field(default_factory=dict)
    # (issuer, subject) -> the connections read that sign in with it
    federations: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # ``reconciler export``: every object in this scope becomes a resource, declared or not
    export: ExportScope | None = None

    def add(self, kind: Kind, key: str, attrs: dict[str, Any], owner: str | None, obj: Any) -> None:
        address = Address(kind, key)
        if address not in self.resources:
            self.resources[address] = LiveResource(address, attrs, owner, fingerprint(obj))


@dataclass
class ReadPlan:
    """Where the specs send observe's reads; each kind's executor adds what its declared
    objects name (``KindExecutor.plan_reads``). Keys are lower case, values as declared."""

    # subscription -> resource groups the declared identities live in (the 403 fallback)
    identity_groups: dict[str, dict[str, str]] = field(default_factory=dict)
    # declared identities: their credentials are listed whoever owns them
    identities: set[str] = field(default_factory=set)
    # subscriptions and management groups that declared role assignments are scoped to
    scope_subscriptions: set[str] = field(default_factory=set)
    management_groups: dict[str, str] = field(default_factory=dict)
    # subscriptions whose resource group list is read besides those (connections')
    group_subscriptions: set[str] = field(default_factory=set)
    # Azure DevOps organisations, and the projects whose pipelines are read
    organizations: dict[str, str] = field(default_factory=dict)
    permission_projects: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    # declared connections, and those whose pipeline permissions the specs manage
    connections: set[str] = field(default_factory=set)
    permission_connections: set[str] = field(default_factory=set)
