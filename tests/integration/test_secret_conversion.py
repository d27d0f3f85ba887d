"""A secret-based connection converted to workload identity federation in place (issue 11
§3), end to end over HTTPS against the simulator: a hand-made ``azurerm`` connection with
scheme ``ServicePrincipal`` whose organisation, project and name match a spec connection plans
as one update, "convert to workload identity federation in place, signing in as identity X";
apply creates the identity and its role first, converts (the app registration still named),
gives the identity a credential for what the connection now presents, then points the
connection at the identity, with the simulator's sign-in check passing around every write and
after an apply stopped before each; the app registration is left alone and named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.federation import entra_federation
from reconciler.kinds.service_connection import CONVERT, CONVERT_OPERATION
from reconciler.ownership import read_description
from reconciler.sim.server import Simulator
from tests.sim.estates import APP, DATA, SECRET, SPN_ID, estate

from .conftest import SANDBOX, Portal, run, target
from .stepping import Watch, apply_watched

ORG_ID = "0c7a5f0e-8d8b-4f7e-9a53-2f0b1f6c9d21"  # contoso
FABRIKAM_ID = "5d3e2c1b-7a9f-4e6d-8c0b-1a2b3c4d5e6f"  # its default issuer is Azure DevOps'
LEGACY_SPN_ID = "bbbbbbbb-0000-4000-8000-000000000001"
ADDRESS = "service_connection.contoso/platform/spn-sc"
RG_SCOPE = f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg"


def _spec(tmp_path: Path, organization: str = "contoso", project: str = "platform") -> Path:
    shared = "    sharedWith: [team-a]\n" if organization == "contoso" else ""
    spec = tmp_path / "convert.yaml"
    spec.write_text(
        f"""version: 1
owner: platform-team
defaults:
  subscription: {SANDBOX}
  resourceGroup: identities-rg
  location: westeurope
identities:
  - name: spn-mi
    roleAssignments:
      - role: Reader
        scope: {RG_SCOPE}
serviceConnections:
  - name: spn-sc
    organization: {organization}
    project: {project}
    identity: spn-mi
    subscriptionName: Sandbox
{shared}""",
        encoding="utf-8",
    )
    return spec


@pytest.fixture
def world(sim: Simulator) -> Simulator:
    """The conversion estate, plus a secret-based spn-sc in fabrikam (Azure DevOps issuer)."""
    seed = estate(sim.tenant_id)
    fabrikam = seed["devops"]["organizations"][1]
    fabrikam["serviceEndpoints"] = [
        {
            "id": LEGACY_SPN_ID,
            "name": "spn-sc",
            "scheme": "ServicePrincipal",
            "parameters": {
                "serviceprincipalid": APP,
                "tenantid": sim.tenant_id,
                "authenticationType": "spnKey",
                "serviceprincipalkey": SECRET,
            },
            "data": DATA,
            "projects": ["legacy-app"],
        }
    ]
    fabrikam["pipelinePermissions"] = [
        {"project": "legacy-app", "endpoint": "spn-sc", "pipelines": [1]}
    ]
    sim.reset(seed)
    sim.clear_log()
    return sim


def _connection(portal: Portal, org: str, project: str, endpoint_id: str) -> dict[str, Any]:
    (found,) = [c for c in portal.connections(org, project) if c["id"] == endpoint_id]
    return found


def _mi(portal: Portal) -> dict[str, Any]:
    found: dict[str, Any] = portal.identity("identities-rg", "spn-mi")
    return found


def _pairs(portal: Portal) -> set[tuple[str, str]]:
    return {
        (c["properties"]["issuer"], c["properties"]["subject"])
        for c in portal.credentials(_mi(portal)["id"])
    }


def _assert_converted(
    sim: Simulator, portal: Portal, org: str, project: str, endpoint_id: str, org_id: str
) -> None:
    conn = _connection(portal, org, project, endpoint_id)
    params = conn["authorization"]["parameters"]
    assert conn["authorization"]["scheme"] == "WorkloadIdentityFederation"
    assert params["serviceprincipalid"] == _mi(portal)["properties"]["clientId"]
    assert "serviceprincipalkey" not in params, "the client secret is removed"
    pair = (params["workloadIdentityFederationIssuer"], params["workloadIdentityFederationSubject"])
    assert pair == entra_federation(sim.tenant_id, org_id, endpoint_id)
    # only the credential the connection signs in with: a legacy one used on the way is gone
    assert _pairs(portal) == {pair}
    # converting adopts it: the owner marker is stamped
    assert read_description(conn.get("description"))[1] == "platform-team"
    assert sim.sign_in(org, endpoint_id)["ok"]


def test_plan_shows_one_in_place_conversion_naming_the_identity_and_the_app_left_alone(
    world: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = _spec(tmp_path)
    code, out, err = run(capsys, "plan", str(spec), *target(world), "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    changes = {c["address"]: c for c in document["changes"]}
    # the identity and its role, then the connection: no credential of its own in the plan
    assert sorted(c["kind"] for c in changes.values()) == [
        "identity",
        "role_assignment",
        "service_connection",
    ]
    change = changes[ADDRESS]
    assert change["action"] == "update" and change["reason"] == "adoption"
    assert change["operation"] == CONVERT
    assert change["detail"].startswith("signing in as identity spn-mi; ")
    fields = {f["path"]: (f["before"], f["after"]) for f in change["fields"]}
    assert fields["scheme"] == ("ServicePrincipal", "WorkloadIdentityFederation")
    assert fields["servicePrincipalId"] == (APP, "(known after apply)")
    assert (fields["issuer"][1], fields["subject"][1]) == entra_federation(
        world.tenant_id, ORG_ID, SPN_ID
    )
    assert fields["owner"] == (None, "platform-team")
    assert set(change["depends_on"]) == {a for a in changes if a != ADDRESS}
    (notice,) = [n for n in document["notices"] if n["address"] == ADDRESS]
    assert APP in notice["message"] and "left alone" in notice["message"]

    code, text, _ = run(capsys, "plan", str(spec), *target(world))
    assert code == 0 and APP in text
    assert CONVERT_OPERATION in text and "signing in as identity spn-mi" in text
    code, markdown, _ = run(capsys, "plan", str(spec), *target(world), "--format", "markdown")
    assert code == 0 and CONVERT_OPERATION in markdown


def test_apply_converts_in_place_keeping_id_and_permissions(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = _spec(tmp_path)
    before = portal.permissions("contoso", "platform", SPN_ID)
    shared_before = portal.permissions("contoso", "team-a", SPN_ID)
    watch = Watch(world, [("contoso", SPN_ID)])
    _, result = apply_watched(world, spec, watch)
    assert result.ok, [o.error for o in result.outcomes]
    assert watch.writes == [
        "put_identity",
        "put_role_assignment",
        "convert_authentication_scheme",
        "put_credential",
        "update_endpoint",
    ]
    assert watch.failures == []
    _assert_converted(world, portal, "contoso", "platform", SPN_ID, ORG_ID)
    assert portal.permissions("contoso", "platform", SPN_ID) == before
    assert portal.permissions("contoso", "team-a", SPN_ID) == shared_before
    conn = _connection(portal, "contoso", "team-a", SPN_ID)
    assert {r["projectReference"]["name"] for r in conn["serviceEndpointProjectReferences"]} == {
        "platform",
        "team-a",
    }
    code, out, err = run(capsys, "plan", str(spec), *target(world), "--detailed-exitcode")
    assert code == 0, out + err


@pytest.mark.parametrize("stop_before", [0, 1, 2, 3, 4])
def test_a_conversion_stopped_before_any_write_never_breaks_sign_in_and_resumes(
    world: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    stop_before: int,
) -> None:
    spec = _spec(tmp_path)
    watch = Watch(world, [("contoso", SPN_ID)], stop_before=stop_before)
    _, result = apply_watched(world, spec, watch)
    assert watch.stopped and not result.ok
    assert watch.failures == []
    assert world.sign_in("contoso", SPN_ID)["ok"]
    again = Watch(world, [("contoso", SPN_ID)])
    _, result = apply_watched(world, spec, again)
    assert result.ok, [o.error for o in result.outcomes]
    assert again.failures == []
    _assert_converted(world, portal, "contoso", "platform", SPN_ID, ORG_ID)
    code, out, err = run(capsys, "plan", str(spec), *target(world), "--detailed-exitcode")
    assert code == 0, out + err


def test_a_conversion_in_an_organisation_on_the_azure_devops_issuer_ends_on_entra(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = _spec(tmp_path, "fabrikam", "legacy-app")
    watch = Watch(world, [("fabrikam", LEGACY_SPN_ID)])
    _, result = apply_watched(world, spec, watch)
    assert result.ok, [o.error for o in result.outcomes]
    # converted onto the organisation's default (Azure DevOps) issuer, then migrated
    assert watch.writes[2:] == [
        "convert_authentication_scheme",
        "put_credential",
        "update_endpoint",
        "put_credential",
        "convert_authentication_scheme",
        "delete_credential",
    ]
    assert watch.failures == []
    _assert_converted(world, portal, "fabrikam", "legacy-app", LEGACY_SPN_ID, FABRIKAM_ID)
    perms = portal.permissions("fabrikam", "legacy-app", LEGACY_SPN_ID)
    assert [p["id"] for p in perms["pipelines"] if p["authorized"]] == [1]
    code, out, err = run(capsys, "plan", str(spec), *target(world), "--detailed-exitcode")
    assert code == 0, out + err
    code, out, _ = run(capsys, "drift", str(spec), *target(world), "--format", "json")
    assert code == 0
    assert not [n for n in json.loads(out)["notices"] if "Azure DevOps issuer" in n["message"]]
