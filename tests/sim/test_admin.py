"""The admin API under /_sim/ and out-of-band edits (the portal user)."""

from __future__ import annotations

from typing import Any

from reconciler.sim.server import Simulator

from .clients import SANDBOX, Http

MI = f"/subscriptions/{SANDBOX}/resourceGroups/identities-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
V = "?api-version=2024-11-30"


def test_requests_and_stats(sim: Simulator, http: Http) -> None:
    http.arm("GET", f"{MI}/shared-build-mi{V}")
    http.arm("GET", f"{MI}/nobody-mi{V}")
    log = http.admin("GET", "requests").json()["requests"]
    gets = [e for e in log if e["op"] == "UserAssignedIdentities_Get"]
    assert [e["status"] for e in gets] == [200, 404]
    entry = gets[0]
    assert {"seq", "method", "path", "status", "duration_ms", "op", "caller"} <= set(entry)
    assert (
        entry["caller"] == sim.client_id
        and entry["method"] == "GET"
        and entry["path"].endswith("/shared-build-mi")
    )
    stats = http.admin("GET", "stats").json()
    assert stats["by_op"]["UserAssignedIdentities_Get"] == 2 and stats["by_status"]["404"] == 1
    since = http.admin("GET", f"requests?since={gets[0]['seq']}").json()["requests"]
    assert all(e["seq"] > gets[0]["seq"] for e in since)
    assert http.admin("DELETE", "requests").status_code == 204
    assert sim.request_log() == []
    assert sim.stats()["connections"] >= 1


def test_state_and_reset(sim: Simulator, http: Http, msi: Any) -> None:
    msi.user_assigned_identities.create_or_update(
        "identities-rg", "admin-mi", {"location": "westeurope"}
    )
    state = http.admin("GET", "state").json()
    assert "admin-mi" in {i["name"] for i in state["identities"]}
    assert http.admin("POST", "reset").status_code == 204
    assert "admin-mi" not in {i.name for i in msi.user_assigned_identities.list_by_subscription()}
    state["identities"] = [i for i in state["identities"] if i["name"] == "admin-mi"]
    assert http.admin("POST", "reset", json=state).status_code == 204
    assert {i.name for i in msi.user_assigned_identities.list_by_subscription()} == {"admin-mi"}


def test_faults_endpoint(sim: Simulator, http: Http) -> None:
    got = http.admin("POST", "faults", json={"specs": ["429:1"], "retry_after_ms": 10}).json()
    assert got["rate_429"] == 1.0 and got["retry_after_ms"] == 10
    assert http.arm("GET", f"{MI}/shared-build-mi{V}").status_code == 429
    assert http.admin("POST", "faults", json=["lag:5"]).json()["rate_429"] == 0.0
    assert http.admin("GET", "faults").json()["lag_ms"] == 5.0
    assert http.admin("POST", "faults", json={"nonsense": 1}).status_code == 400


def test_portal_edits_are_visible_through_the_api(
    sim: Simulator, http: Http, msi: Any, authz: Any
) -> None:
    ident = msi.user_assigned_identities.get("identities-rg", "data-team-mi")
    r = http.admin(
        "POST",
        "edit",
        json={
            "kind": "identity",
            "id": ident.id,
            "patch": {"tags": {"reconciler-owner": "data-team", "extra": "x"}},
        },
    )
    assert r.status_code == 200
    assert msi.user_assigned_identities.get("identities-rg", "data-team-mi").tags["extra"] == "x"
    cred_id = f"{ident.id}/federatedIdentityCredentials/github-data-main"
    sim.edit(
        "federated_credential",
        cred_id,
        {"subject": "repo:contoso/data-pipelines:ref:refs/heads/dev"},
    )
    assert msi.federated_identity_credentials.get(
        "identities-rg", "data-team-mi", "github-data-main"
    ).subject.endswith("/dev")
    sim.edit(
        "role_assignment",
        "7d1f4b62-8a3e-4c9d-b5f0-2e6a8c1d3f22",
        {"description": "edited in the portal"},
    )
    got = authz.role_assignments.get(
        f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg",
        "7d1f4b62-8a3e-4c9d-b5f0-2e6a8c1d3f22",
    )
    assert got.description == "edited in the portal"
    sim.delete("federated_credential", cred_id)
    assert list(msi.federated_identity_credentials.list("identities-rg", "data-team-mi")) == []
    assert (
        http.admin(
            "POST", "edit", json={"kind": "identity", "id": "/nope", "patch": {}}
        ).status_code
        == 404
    )
    assert http.admin("POST", "edit", json={"kind": "mystery", "id": "x"}).status_code == 400


def test_admin_can_delete_what_the_api_refuses(sim: Simulator, http: Http, msi: Any) -> None:
    projects = {
        p["name"]: p["id"] for p in http.ado("GET", "/contoso/_apis/projects").json()["value"]
    }
    mi = msi.user_assigned_identities.create_or_update(
        "identities-rg", "kept-mi", {"location": "westeurope"}
    )
    e = http.ado(
        "POST",
        "/contoso/_apis/serviceendpoint/endpoints?api-version=7.1",
        json={
            "name": "kept-sc",
            "type": "azurerm",
            "authorization": {
                "scheme": "WorkloadIdentityFederation",
                "parameters": {"serviceprincipalid": mi.client_id, "tenantid": sim.tenant_id},
            },
            "serviceEndpointProjectReferences": [
                {"projectReference": {"id": projects["platform"]}, "name": "kept-sc"}
            ],
        },
    ).json()
    p = e["authorization"]["parameters"]
    msi.federated_identity_credentials.create_or_update(
        "identities-rg",
        "kept-mi",
        "ado",
        {
            "issuer": p["workloadIdentityFederationIssuer"],
            "subject": p["workloadIdentityFederationSubject"],
            "audiences": ["api://AzureADTokenExchange"],
        },
    )
    sim.edit("pipeline_permissions", f"contoso/platform/endpoint/{e['id']}", {"allPipelines": True})
    perms = http.ado(
        "GET",
        f"/contoso/platform/_apis/pipelines/pipelinePermissions/endpoint/{e['id']}?api-version=7.1-preview.1",
    ).json()
    assert perms["allPipelines"]["authorized"] is True
    sim.delete("service_endpoint", e["id"])
    assert (
        http.ado(
            "GET", f"/contoso/platform/_apis/serviceendpoint/endpoints/{e['id']}?api-version=7.1"
        ).text
        == "null"
    )


def test_admin_is_not_reachable_through_azure_paths(sim: Simulator, http: Http) -> None:
    assert http.arm("GET", f"/subscriptions/{SANDBOX}/_sim/stats{V}").status_code == 404
    r = http.ado("GET", "/_sim/stats")
    assert r.status_code == 404 and "typeKey" in r.json()
    assert http.admin("GET", "stats").status_code == 200
