"""Fixtures for the simulator tests (the simulator itself is in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.sim.server import Simulator

from .clients import SANDBOX, Http, arm_kwargs


@pytest.fixture(scope="session")
def credential(simulator: Simulator) -> Any:
    from azure.identity import ClientSecretCredential

    c = simulator.connection
    return ClientSecretCredential(
        c["tenant_id"],
        c["client_id"],
        c["client_secret"],
        authority=c["authority"],
        disable_instance_discovery=True,
        connection_verify=c["ca_bundle"],
    )


@pytest.fixture(scope="session")
def msi(simulator: Simulator, credential: Any) -> Any:
    from azure.mgmt.msi import ManagedServiceIdentityClient

    return ManagedServiceIdentityClient(credential, SANDBOX, **arm_kwargs(simulator))


@pytest.fixture(scope="session")
def authz(simulator: Simulator, credential: Any) -> Any:
    from azure.mgmt.authorization import AuthorizationManagementClient

    return AuthorizationManagementClient(credential, SANDBOX, **arm_kwargs(simulator))


@pytest.fixture(scope="session")
def http(simulator: Simulator, credential: Any) -> Iterator[Http]:
    client = Http(simulator, credential)
    yield client
    client.session.close()
