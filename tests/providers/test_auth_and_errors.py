"""Authentication failures and error translation over HTTPS against the simulator."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from reconciler.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from reconciler.providers import Services, connect
from reconciler.providers.arm import ArmClient
from reconciler.providers.auth import ARM_SCOPE, DEVOPS_SCOPE, DevOpsAuth, make_credential
from reconciler.providers.devops import DevOpsClient, _check
from reconciler.providers.http import make_session
from reconciler.providers.target import Target, load_target
from reconciler.sim.server import Simulator

from .conftest import SANDBOX


def _target(sim: Simulator) -> Target:
    return load_target(Path(sim.connection_file))


class _WrongAudience:
    """A real credential that always asks for the other service's token."""

    def __init__(self, inner: Any, scope: str) -> None:
        self._inner = inner
        self._scope = scope

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return self._inner.get_token(self._scope)


def test_wrong_secret_is_an_auth_error_without_the_secret(sim: Simulator) -> None:
    target = replace(_target(sim), client_secret="definitely-wrong-secret")
    services = connect(target, workers=2)
    with pytest.raises(AuthError) as err:
        services.arm.list_identities(SANDBOX)
    message = str(err.value)
    assert "cannot get an Entra token for Azure Resource Manager" in message
    assert "definitely-wrong-secret" not in message
    with pytest.raises(AuthError, match="cannot get an Entra token for Azure DevOps"):
        services.devops.list_projects("contoso")


def test_arm_token_for_the_wrong_audience_is_rejected(sim: Simulator) -> None:
    target = _target(sim)
    credential = _WrongAudience(make_credential(target), DEVOPS_SCOPE)
    arm = ArmClient(target, credential, session=make_session(workers=2, verify=target.ca_bundle))
    with pytest.raises(AuthError) as err:
        arm.list_identities(SANDBOX)
    assert err.value.status == 401
    assert "rejected the credentials" in str(err.value)
    assert "Bearer" not in str(err.value)


def test_devops_token_for_the_wrong_audience_is_rejected(sim: Simulator) -> None:
    target = _target(sim)
    credential = _WrongAudience(make_credential(target), ARM_SCOPE)
    session = make_session(workers=2, verify=target.ca_bundle or True)
    devops = DevOpsClient(target, DevOpsAuth(credential, target=target), session=session)  # type: ignore[arg-type]
    with pytest.raises(AuthError) as err:
        devops.list_projects("contoso")
    assert err.value.status == 401  # X-TFS-FedAuthRedirect: Suppress turns the 203 into a 401
    assert "TF400813" in str(err.value)


def test_devops_sign_in_page_without_the_suppress_header(sim: Simulator) -> None:
    target = _target(sim)
    token = make_credential(target).get_token(ARM_SCOPE).token
    response = requests.get(
        f"{target.devops_url}/contoso/_apis/projects",
        params={"api-version": "7.1"},
        headers={"Authorization": f"Bearer {token}"},
        verify=target.ca_bundle,
        timeout=10,
    )
    assert response.status_code == 203
    with pytest.raises(AuthError, match="sign-in page"):
        _check(response, "listing projects of contoso")


def test_arm_errors_over_https(sim: Simulator, services: Services) -> None:
    arm = services.arm
    with pytest.raises(NotFoundError) as missing:
        arm.get_identity(SANDBOX, "identities-rg", "nope")
    assert missing.value.code == "ResourceNotFound"
    with pytest.raises(NotFoundError) as group:
        arm.put_identity(SANDBOX, "no-such-rg", "x-mi", {"location": "westeurope"})
    assert group.value.code == "ResourceGroupNotFound"
    arm.put_identity(SANDBOX, "identities-rg", "err-mi", {"location": "westeurope"})
    with pytest.raises(ConflictError) as moved:
        arm.put_identity(SANDBOX, "identities-rg", "err-mi", {"location": "northeurope"})
    assert moved.value.code == "InvalidResourceLocation"
    body = {"properties": {"issuer": "https://i", "subject": "s", "audiences": ["a", "b"]}}
    with pytest.raises(PermanentError) as bad:
        arm.put_credential(SANDBOX, "identities-rg", "err-mi", "gh-main", body)
    assert bad.value.status == 400 and "one audience" in str(bad.value).lower()
    with pytest.raises(PermanentError) as principal:
        arm.put_role_assignment(
            f"/subscriptions/{SANDBOX}",
            "6f1e2d3c-0000-4000-8000-000000000001",
            {
                "properties": {
                    "roleDefinitionId": f"/subscriptions/{SANDBOX}/providers/Microsoft."
                    "Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",
                    "principalId": "6f1e2d3c-0000-4000-8000-0000000000ff",
                }
            },
        )
    assert principal.value.code == "PrincipalNotFound"
    assert "does not exist in the directory" in str(principal.value)


def test_injected_throttling_and_server_errors_are_transient(
    sim: Simulator, services: Services
) -> None:
    sim.set_faults(rate_429=1.0, ops=("UserAssignedIdentities_Get",), retry_after_ms=2500)
    with pytest.raises(TransientError) as throttled:
        services.arm.get_identity(SANDBOX, "identities-rg", "shared-build-mi")
    assert throttled.value.status == 429 and throttled.value.delay == 2.5
    sim.set_faults(rate_5xx=1.0, ops=("Projects_List",))
    with pytest.raises(TransientError) as broken:
        services.devops.list_projects("contoso")
    assert broken.value.status >= 500
    sim.set_faults(rate_429=1.0, ops=("Projects_List",), retry_after_ms=3000)
    with pytest.raises(TransientError) as ado_throttled:
        services.devops.list_projects("contoso")
    assert ado_throttled.value.status == 429 and ado_throttled.value.delay >= 3.0
    sim.set_faults(drop=1.0, ops=("UserAssignedIdentities_ListBySubscription",))
    with pytest.raises(TransientError) as dropped:
        services.arm.list_identities(SANDBOX)
    assert dropped.value.code == "ConnectionError"
    sim.set_faults(None)
    assert services.arm.get_identity(SANDBOX, "identities-rg", "shared-build-mi")["name"]


def test_devops_errors_over_https(sim: Simulator, services: Services) -> None:
    devops = services.devops
    with pytest.raises(NotFoundError):
        devops.get_endpoint("contoso", "platform", "00000000-0000-4000-8000-0000000000ee")
    projects = {p["name"]: p["id"] for p in devops.list_projects("contoso")}
    body: dict[str, Any] = {
        "name": "dup",
        "type": "azurerm",
        "url": "https://management.azure.com/",
        "authorization": {
            "scheme": "WorkloadIdentityFederation",
            "parameters": {"serviceprincipalid": "c", "tenantid": "t"},
        },
        "data": {"subscriptionId": SANDBOX, "subscriptionName": "Sandbox"},
        "serviceEndpointProjectReferences": [
            {"projectReference": {"id": projects["platform"], "name": "platform"}, "name": "dup"}
        ],
    }
    created = devops.create_endpoint("contoso", body)
    assert created["authorization"]["parameters"]["workloadIdentityFederationSubject"]
    with pytest.raises(ConflictError) as dup:
        devops.create_endpoint("contoso", body)
    assert dup.value.code == "DuplicateServiceConnectionException"
    with pytest.raises(PermanentError) as no_project:
        devops.create_endpoint(
            "contoso", {**body, "name": "other", "serviceEndpointProjectReferences": []}
        )
    assert no_project.value.code == "ArgumentException"
    assert "project reference" in str(no_project.value)
    found = devops.list_endpoints("contoso", "platform", names=["DUP"])
    assert [e["id"] for e in found] == [created["id"]]


def test_no_token_ever_reaches_an_error_message(sim: Simulator, services: Services) -> None:
    token = make_credential(_target(sim)).get_token(ARM_SCOPE).token
    messages = []
    for call in (
        lambda: services.arm.get_identity(SANDBOX, "identities-rg", "nope"),
        lambda: services.devops.get_endpoint("contoso", "platform", "nope"),
    ):
        try:
            call()
        except Exception as exc:
            messages.append(str(exc) + json.dumps(exc.__dict__, default=str))
    assert messages and all(token not in m and "Bearer" not in m for m in messages)


def test_pat_is_never_sent_to_a_connection_file_target(sim: Simulator) -> None:
    """The simulator accepts PATs (as Azure DevOps does), but a connection file's endpoints
    are never real Azure DevOps: with no Entra token the PAT fallback does not fire there."""
    from azure.core.exceptions import ClientAuthenticationError

    from reconciler.sim.seed import default_seed

    seed = default_seed()
    seed["pats"] = [{"token": "sim-pat-value", "user": "ci@contoso.example"}]
    sim.reset(seed)

    class _NoEntra:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise ClientAuthenticationError("AADSTS50020: user account does not exist in tenant")

    target = _target(sim)
    warnings: list[str] = []
    auth = DevOpsAuth(
        _NoEntra(),  # type: ignore[arg-type]
        target=target,
        environ={"AZURE_DEVOPS_EXT_PAT": "sim-pat-value"},
        warn=warnings.append,
    )
    devops = DevOpsClient(
        target, auth, session=make_session(workers=2, verify=target.ca_bundle or True)
    )
    with pytest.raises(AuthError) as err:
        devops.list_projects("contoso")
    assert "AADSTS50020" in str(err.value) and "sim-pat-value" not in str(err.value)
    assert sim.request_log(op="Projects_List") == []
    assert warnings == [] and not auth.using_pat
