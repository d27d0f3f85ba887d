"""``DevOpsClient.convert_authentication_scheme`` over HTTPS against the simulator: the request
it sends (asserted through the simulator's request log and state) and how it reports the
service's answers."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.errors import NotFoundError, PermanentError
from reconciler.federation import entra_federation
from reconciler.providers import Services
from reconciler.providers.devops import conversion_pending
from reconciler.sim.server import Simulator
from tests.sim.estates import (
    LEGACY_ID,
    ORG_ID,
    SPN_ID,
    estate,
)
from tests.sim.test_convert_scheme import stored

from .conftest import SANDBOX


@pytest.fixture
def world(sim: Simulator) -> Simulator:
    sim.reset(estate(sim.tenant_id))
    sim.clear_log()
    return sim


def _conversions(sim: Simulator) -> list[dict[str, Any]]:
    return [
        r
        for r in sim.request_log(op="ServiceEndpoints_Update")
        if r["query"].get("operation") == "ConvertAuthenticationScheme"
    ]


def test_secret_connection_converted_in_place(world: Simulator, services: Services) -> None:
    devops = services.devops
    endpoint = devops.get_endpoint("contoso", "platform", SPN_ID)
    result = devops.convert_authentication_scheme("contoso", "platform", endpoint)
    assert not conversion_pending(result)
    assert result["id"] == SPN_ID
    assert result["authorization"]["scheme"] == "WorkloadIdentityFederation"
    issuer, subject = entra_federation(world.tenant_id, ORG_ID, SPN_ID)
    assert result["authorization"]["parameters"]["workloadIdentityFederationSubject"] == subject
    assert result["authorization"]["parameters"]["workloadIdentityFederationIssuer"] == issuer
    assert "serviceprincipalkey" not in stored(world, SPN_ID)["parameters"]
    (call,) = _conversions(world)
    assert call["method"] == "PUT" and call["status"] == 200
    assert (
        call["path"]
        .split("?")[0]
        .endswith(f"/contoso/platform/_apis/serviceendpoint/endpoints/{SPN_ID}")
    )
    assert call["query"]["api-version"] == "7.1"


def test_the_issuer_switch_waits_for_the_credential(world: Simulator, services: Services) -> None:
    devops = services.devops
    endpoint = devops.get_endpoint("contoso", "platform", LEGACY_ID)
    pending = devops.convert_authentication_scheme(
        "contoso", "platform", endpoint, issuer_type="EntraID"
    )
    assert conversion_pending(pending)
    issuer, subject = entra_federation(world.tenant_id, ORG_ID, LEGACY_ID)
    services.arm.put_credential(
        SANDBOX,
        "identities-rg",
        "legacy-mi",
        "entra",
        {
            "properties": {
                "issuer": issuer,
                "subject": subject,
                "audiences": ["api://AzureADTokenExchange"],
            }
        },
    )
    done = devops.convert_authentication_scheme(
        "contoso", "platform", endpoint, issuer_type="EntraID"
    )
    assert not conversion_pending(done)
    params = done["authorization"]["parameters"]
    assert params["workloadIdentityFederationIssuer"] == issuer
    assert params["workloadIdentityFederationSubject"] == subject
    assert [c["status"] for c in _conversions(world)] == [202, 200]


def test_refusals_are_classified_like_every_devops_call(
    world: Simulator, services: Services
) -> None:
    devops = services.devops
    endpoint = devops.get_endpoint("contoso", "platform", LEGACY_ID)
    # a second switch of a connection already on the Entra issuer is no conversion
    entra = devops.get_endpoint("contoso", "platform", SPN_ID)
    devops.convert_authentication_scheme("contoso", "platform", entra)
    converted = devops.get_endpoint("contoso", "platform", SPN_ID)
    with pytest.raises(PermanentError) as refused:
        devops.convert_authentication_scheme(
            "contoso", "platform", converted, issuer_type="EntraID"
        )
    assert refused.value.code == "ArgumentException" and refused.value.status == 400
    assert "neither an upgrade or a downgrade" in str(refused.value)
    # shared from platform: converting it through team-a is refused by the service
    restored = estate(world.tenant_id)
    world.reset(restored)
    shared_endpoint = devops.get_endpoint("contoso", "team-a", SPN_ID)
    with pytest.raises(PermanentError) as shared:
        devops.convert_authentication_scheme("contoso", "team-a", shared_endpoint)
    assert shared.value.status == 400 and "shared from project 'platform'" in str(shared.value)
    assert devops.get_endpoint("contoso", "platform", SPN_ID)["authorization"]["scheme"] == (
        "ServicePrincipal"
    )
    # a project the connection is not in: no request at all
    before = len(_conversions(world))
    with pytest.raises(PermanentError) as no_ref:
        devops.convert_authentication_scheme("contoso", "team-b", endpoint)
    assert no_ref.value.code == "ProjectReferenceMissing"
    assert len(_conversions(world)) == before
    gone = {**endpoint, "id": "00000000-0000-4000-8000-00000000dead"}
    with pytest.raises(NotFoundError):
        devops.convert_authentication_scheme("contoso", "platform", gone)
