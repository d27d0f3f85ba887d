"""Fixtures for the provider tests: real clients against the simulator over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from reconciler.model import (
    DEFAULT_AUDIENCE,
    Address,
    DesiredState,
    Kind,
    Resource,
    connection_key,
    credential_key,
    identity_key,
    implied_credential_name,
    role_assignment_key,
)
from reconciler.providers import Services, connect
from reconciler.providers.target import load_target
from reconciler.sim.server import Simulator

SANDBOX = "11111111-1111-1111-1111-111111111111"
PRODUCTION = "22222222-2222-2222-2222-222222222222"
TENANT = "7e1a6a0c-3c1d-4b8e-9f4a-1b2c3d4e5f60"
CONTOSO_ID = "0c7a5f0e-8d8b-4f7e-9a53-2f0b1f6c9d21"
FABRIKAM_ID = "5d3e2c1b-7a9f-4e6d-8c0b-1a2b3c4d5e6f"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
OWNER = "platform-team"


@pytest.fixture
def services(sim: Simulator) -> Iterator[Services]:
    handle = connect(load_target(Path(sim.connection_file)), workers=8)
    try:
        yield handle
    finally:
        handle.close()


class DesiredBuilder:
    """Builds a ``DesiredState`` the way the spec loader flattens one (see model.py)."""

    def __init__(self, owner: str = OWNER) -> None:
        self.owner = owner
        self.resources: dict[Address, Resource] = {}

    def _add(self, kind: Kind, key: str, attrs: Mapping[str, Any], *deps: Address) -> Address:
        address = Address(kind, key)
        self.resources[address] = Resource(address, dict(attrs), None, tuple(deps))
        return address

    def identity(
        self,
        name: str,
        *,
        subscription: str = SANDBOX,
        resource_group: str = "identities-rg",
        location: str = "westeurope",
        tags: dict[str, str] | None = None,
    ) -> str:
        key = identity_key(subscription, resource_group, name)
        self._add(
            Kind.IDENTITY,
            key,
            {
                "subscription": subscription,
                "resourceGroup": resource_group,
                "name": name,
                "location": location,
                "tags": tags or {},
            },
        )
        return key

    def credential(self, identity: str, name: str, issuer: Any, subject: Any) -> Address:
        return self._add(
            Kind.FEDERATED_CREDENTIAL,
            credential_key(identity, name),
            {
                "identity": identity,
                "name": name,
                "issuer": issuer,
                "subject": subject,
                "audiences": [DEFAULT_AUDIENCE],
                "serviceConnection": None,
            },
            Address(Kind.IDENTITY, identity),
        )

    def assignment(
        self, identity: str, scope: str, role_guid: str, description: str | None = None
    ) -> Address:
        return self._add(
            Kind.ROLE_ASSIGNMENT,
            role_assignment_key(identity, scope, role_guid),
            {
                "identity": identity,
                "role": role_guid,
                "roleDefinitionId": role_guid,
                "scope": scope,
                "description": description,
                "condition": None,
                "conditionVersion": None,
            },
            Address(Kind.IDENTITY, identity),
        )

    def connection(
        self,
        org: str,
        project: str,
        name: str,
        identity: str,
        *,
        permissions: Any = None,
        shared_with: list[str] | None = None,
        description: str | None = None,
        scope: str | None = None,
    ) -> str:
        from reconciler.model import UNKNOWN

        key = connection_key(org, project, name)
        self._add(
            Kind.SERVICE_CONNECTION,
            key,
            {
                "organization": org,
                "project": project,
                "name": name,
                "description": description,
                "identity": identity,
                "subscriptionId": SANDBOX,
                "subscriptionName": "Sandbox",
                "scope": scope,
                "sharedWith": sorted(shared_with or []),
                "pipelinePermissions": permissions,
            },
            Address(Kind.IDENTITY, identity),
        )
        implied = implied_credential_name(org, project, name)
        self._add(
            Kind.FEDERATED_CREDENTIAL,
            credential_key(identity, implied),
            {
                "identity": identity,
                "name": implied,
                "issuer": UNKNOWN,
                "subject": UNKNOWN,
                "audiences": [DEFAULT_AUDIENCE],
                "serviceConnection": key,
            },
            Address(Kind.SERVICE_CONNECTION, key),
            Address(Kind.IDENTITY, identity),
        )
        return key

    def build(self) -> DesiredState:
        return DesiredState(self.owner, dict(sorted(self.resources.items())))
