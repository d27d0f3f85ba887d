"""The first working slice: token, identities, credentials, role assignments, DevOps."""

from __future__ import annotations

import uuid
from typing import Any

from reconciler.sim.server import Simulator

from .clients import SANDBOX, Http


def test_connection_file_has_the_contract_fields(sim: Simulator) -> None:
    import json

    data = json.loads(sim.connection_file.read_text())
    assert set(data) == {
        "arm_url",
        "devops_url",
        "vssps_url",
        "audit_url",
        "authority",
        "tenant_id",
        "client_id",
        "client_secret",
        "ca_bundle",
        "connection_file",
    }
    assert data["devops_url"] == data["arm_url"] + "/devops"
    assert data["vssps_url"] == data["arm_url"] + "/vssps"
    assert data["audit_url"] == data["arm_url"] + "/auditservice"
    assert data["arm_url"].startswith("https://127.0.0.1:")


def test_identity_credential_assignment_round_trip(sim: Simulator, msi: Any, authz: Any) -> None:
    mi = msi.user_assigned_identities.create_or_update(
        "identities-rg", "smoke-mi", {"location": "westeurope"}
    )
    fic = msi.federated_identity_credentials.create_or_update(
        "identities-rg",
        "smoke-mi",
        "github-main",
        {
            "issuer": "https://token.actions.githubusercontent.com",
            "subject": "repo:x/y:ref:refs/heads/main",
            "audiences": ["api://AzureADTokenExchange"],
        },
    )
    assert fic.name == "github-main"
    scope = f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg"
    ra = authz.role_assignments.create(
        scope,
        str(uuid.uuid4()),
        {
            "role_definition_id": f"/subscriptions/{SANDBOX}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",
            "principal_id": mi.principal_id,
            "principal_type": "ServicePrincipal",
        },
    )
    assert ra.principal_id == mi.principal_id
    assert sim.count("RoleAssignments_Create") == 1
    assert all(
        e["caller"] == sim.client_id for e in sim.request_log() if e["op"] != "OpenIdConfiguration"
    )


def test_devops_create_then_get(sim: Simulator, http: Http) -> None:
    projects = http.ado("GET", "/contoso/_apis/projects?api-version=7.1").json()
    platform = next(p for p in projects["value"] if p["name"] == "platform")
    r = http.ado(
        "POST",
        "/contoso/_apis/serviceendpoint/endpoints?api-version=7.1",
        json={
            "name": "smoke",
            "type": "azurerm",
            "url": "https://management.azure.com/",
            "authorization": {
                "scheme": "WorkloadIdentityFederation",
                "parameters": {"serviceprincipalid": str(uuid.uuid4()), "tenantid": sim.tenant_id},
            },
            "data": {"creationMode": "Manual"},
            "serviceEndpointProjectReferences": [
                {"projectReference": {"id": platform["id"]}, "name": "smoke"}
            ],
        },
    )
    assert r.status_code == 200
    got = http.ado(
        "GET", f"/contoso/platform/_apis/serviceendpoint/endpoints/{r.json()['id']}?api-version=7.1"
    ).json()
    assert got["authorization"]["parameters"]["workloadIdentityFederationIssuerType"] == "EntraID"


def test_reset_restores_the_seed(sim: Simulator, msi: Any) -> None:
    msi.user_assigned_identities.create_or_update(
        "identities-rg", "temp-mi", {"location": "westeurope"}
    )
    sim.reset()
    names = {i.name for i in msi.user_assigned_identities.list_by_subscription()}
    assert names == {"shared-build-mi", "data-team-mi"}
