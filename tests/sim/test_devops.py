"""Azure DevOps: organisation data, projects, pipelines, service endpoints, permissions."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from reconciler.sim.server import Simulator

from .clients import Http

V = "api-version=7.1"
PV = "api-version=7.1-preview.1"
CONTOSO = "0c7a5f0e-8d8b-4f7e-9a53-2f0b1f6c9d21"
FABRIKAM = "5d3e2c1b-7a9f-4e6d-8c0b-1a2b3c4d5e6f"
EP = "/contoso/_apis/serviceendpoint/endpoints"


def projects(http: Http, org: str = "contoso") -> dict[str, str]:
    return {
        p["name"]: p["id"] for p in http.ado("GET", f"/{org}/_apis/projects?{V}").json()["value"]
    }


def wif(
    http: Http,
    name: str,
    project_ids: list[str],
    org: str = "contoso",
    client_id: str | None = None,
    **extra: Any,
) -> Any:
    body = {
        "name": name,
        "type": "azurerm",
        "url": "https://management.azure.com/",
        "description": extra.pop("description", ""),
        "authorization": {
            "scheme": "WorkloadIdentityFederation",
            "parameters": {
                "serviceprincipalid": client_id or str(uuid.uuid4()),
                "tenantid": http.sim.tenant_id,
                "workloadIdentityFederationSubject": "client-cannot-set-this",
            },
        },
        "data": {
            "subscriptionId": "11111111-1111-1111-1111-111111111111",
            "subscriptionName": "Sandbox",
            "environment": "AzureCloud",
            "scopeLevel": "Subscription",
            "creationMode": "Manual",
        },
        "serviceEndpointProjectReferences": [
            {"projectReference": {"id": p}, "name": name} for p in project_ids
        ],
        **extra,
    }
    return http.ado("POST", f"/{org}/_apis/serviceendpoint/endpoints?{V}", json=body)


def test_connection_data_projects_pipelines(sim: Simulator, http: Http) -> None:
    assert http.ado("GET", "/contoso/_apis/connectionData").json()["instanceId"] == CONTOSO
    assert (
        http.ado("GET", "/fabrikam/_apis/connectionData?api-version=7.1-preview").json()[
            "instanceId"
        ]
        == FABRIKAM
    )
    listed = http.ado("GET", f"/contoso/_apis/projects?{V}").json()
    assert listed["count"] == 3 and {p["name"] for p in listed["value"]} == {
        "platform",
        "team-a",
        "team-b",
    }
    pipelines = http.ado("GET", f"/contoso/team-a/_apis/pipelines?{V}").json()
    assert [(p["id"], p["name"], p["folder"]) for p in pipelines["value"]] == [
        (3, "team-a-deploy", "\\"),
        (4, "team-a-ci", "\\"),
    ]
    pid = projects(http)["platform"]
    assert http.ado("GET", f"/contoso/_apis/projects/{pid}?{V}").json()["name"] == "platform"
    assert [
        p["name"] for p in http.ado("GET", f"/contoso/{pid}/_apis/pipelines?{V}").json()["value"]
    ] == ["infra-deploy", "app-ci"]
    r = http.ado("GET", f"/contoso/nope/_apis/pipelines?{V}")
    assert r.status_code == 404 and r.json()["typeKey"] == "ProjectDoesNotExistWithNameException"


def test_entra_issuer_and_subject(sim: Simulator, http: Http) -> None:
    r = wif(http, "entra-sc", [projects(http)["platform"]])
    assert r.status_code == 200
    e = r.json()
    params = e["authorization"]["parameters"]
    tenant_segment = (
        base64.urlsafe_b64encode(uuid.UUID(sim.tenant_id).bytes_le).decode().rstrip("=")
    )
    assert (
        params["workloadIdentityFederationIssuer"]
        == f"https://login.microsoftonline.com/{sim.tenant_id}/v2.0"
    )
    assert (
        params["workloadIdentityFederationSubject"]
        == f"/eid1/c/pub/t/{tenant_segment}/a/rISbSSETf0KqFyZ8ppdXmA/sc/{CONTOSO}/{e['id']}"
    )
    assert params["workloadIdentityFederationIssuerType"] == "EntraID"
    assert (
        e["isReady"] is True
        and e["operationStatus"]["state"] == "Ready"
        and e["owner"] == "library"
    )


def test_legacy_vstoken_organisation(sim: Simulator, http: Http) -> None:
    r = wif(http, "legacy-sc", [projects(http, "fabrikam")["legacy-app"]], org="fabrikam")
    params = r.json()["authorization"]["parameters"]
    assert params["workloadIdentityFederationIssuer"] == f"https://vstoken.dev.azure.com/{FABRIKAM}"
    assert params["workloadIdentityFederationSubject"] == "sc://fabrikam/legacy-app/legacy-sc"
    assert params["workloadIdentityFederationIssuerType"] == "AzureDevOps"


def test_get_unknown_is_200_null(sim: Simulator, http: Http) -> None:
    r = http.ado("GET", f"/contoso/platform/_apis/serviceendpoint/endpoints/{uuid.uuid4()}?{V}")
    assert r.status_code == 200 and r.text == "null"
    created = wif(http, "elsewhere-sc", [projects(http)["team-a"]]).json()
    r = http.ado("GET", f"/contoso/platform/_apis/serviceendpoint/endpoints/{created['id']}?{V}")
    assert r.text == "null"  # not shared with this project


def test_list_filters(sim: Simulator, http: Http) -> None:
    pid = projects(http)["platform"]
    a = wif(http, "alpha-sc", [pid]).json()
    b = wif(http, "beta-sc", [pid]).json()
    http.ado(
        "POST",
        f"{EP}?{V}",
        json={
            "name": "generic",
            "type": "Generic",
            "url": "https://x",
            "owner": "agentcloud",
            "authorization": {
                "scheme": "UsernamePassword",
                "parameters": {"username": "u", "password": "p"},
            },
            "serviceEndpointProjectReferences": [
                {"projectReference": {"id": pid}, "name": "generic"}
            ],
        },
    )

    def names(query: str) -> list[str]:
        body = http.ado(
            "GET", f"/contoso/platform/_apis/serviceendpoint/endpoints?{V}{query}"
        ).json()
        assert body["count"] == len(body["value"])
        return sorted(e["name"] for e in body["value"])

    assert names("") == ["alpha-sc", "beta-sc", "generic"]
    assert names("&type=AzureRM") == ["alpha-sc", "beta-sc"]
    assert names("&authSchemes=WorkloadIdentityFederation,ServicePrincipal") == [
        "alpha-sc",
        "beta-sc",
    ]
    assert names("&endpointNames=ALPHA-SC,generic") == ["alpha-sc", "generic"]
    assert names(f"&endpointIds={b['id']}") == ["beta-sc"]
    assert names("&owner=library") == ["alpha-sc", "beta-sc"]
    assert names("&type=azurerm&endpointNames=missing") == []
    assert a["id"] != b["id"]


def test_not_ready_connections_are_hidden_from_lists(sim: Simulator, http: Http) -> None:
    sim.update_faults(ready_after_ms=60_000)
    e = wif(http, "slow-sc", [projects(http)["platform"]]).json()
    assert e["isReady"] is False and e["operationStatus"]["state"] == "InProgress"
    assert (
        http.ado("GET", f"/contoso/platform/_apis/serviceendpoint/endpoints?{V}").json()["count"]
        == 0
    )
    assert (
        http.ado(
            "GET", f"/contoso/platform/_apis/serviceendpoint/endpoints?{V}&includeFailed=true"
        ).json()["count"]
        == 1
    )
    got = http.ado("GET", f"/contoso/platform/_apis/serviceendpoint/endpoints/{e['id']}?{V}").json()
    assert got["isReady"] is False
    sim.update_faults(ready_after_ms=0)
    assert (
        http.ado("GET", f"/contoso/platform/_apis/serviceendpoint/endpoints/{e['id']}?{V}").json()[
            "isReady"
        ]
        is True
    )


def test_create_errors(sim: Simulator, http: Http) -> None:
    pid = projects(http)["platform"]
    assert wif(http, "dup-sc", [pid]).status_code == 200
    dup = wif(http, "DUP-SC", [pid])
    assert dup.status_code == 409
    assert dup.json()["typeKey"] == "DuplicateServiceConnectionException"
    assert dup.json()["typeName"].startswith(
        "Microsoft.TeamFoundation.DistributedTask.WebApi.DuplicateServiceConnectionException"
    )
    none = wif(http, "orphan-sc", [])
    assert (
        none.status_code == 400
        and none.json()["message"]
        == "At least one project reference required to create an endpoint."
    )
    assert none.json()["typeKey"] == "ArgumentException"
    unversioned = http.ado("POST", EP, json={"name": "x"})
    assert (
        unversioned.status_code == 400
        and unversioned.json()["typeKey"] == "VssVersionNotSpecifiedException"
    )
    future = http.ado("GET", "/contoso/_apis/projects?api-version=9.0")
    assert future.status_code == 400 and future.json()["typeKey"] == "VssVersionOutOfRangeException"


def test_update_keeps_id_issuer_subject_and_never_returns_secrets(
    sim: Simulator, http: Http
) -> None:
    pid = projects(http)["platform"]
    created = wif(http, "upd-sc", [pid]).json()
    body = dict(created)
    body["name"] = "upd-sc-renamed"
    body["description"] = "now with text [reconciler-owner: platform-team]"
    body["authorization"] = {
        "scheme": "WorkloadIdentityFederation",
        "parameters": {
            "serviceprincipalid": "11111111-2222-3333-4444-555555555555",
            "tenantid": sim.tenant_id,
            "serviceprincipalkey": "hunter2",
            "workloadIdentityFederationIssuer": "https://evil",
        },
    }
    r = http.ado("PUT", f"{EP}/{created['id']}?{V}", json=body)
    assert r.status_code == 200
    got = r.json()
    assert got["id"] == created["id"] and got["name"] == "upd-sc-renamed"
    params = got["authorization"]["parameters"]
    for key in (
        "workloadIdentityFederationIssuer",
        "workloadIdentityFederationSubject",
        "workloadIdentityFederationIssuerType",
    ):
        assert params[key] == created["authorization"]["parameters"][key]
    assert params["serviceprincipalid"] == "11111111-2222-3333-4444-555555555555"
    assert params["serviceprincipalkey"] is None
    assert "hunter2" not in str(sim.state())
    again = http.ado(
        "GET", f"/contoso/platform/_apis/serviceendpoint/endpoints/{created['id']}?{V}"
    ).json()
    assert again["description"].endswith("[reconciler-owner: platform-team]")
    assert again["createdBy"] == created["createdBy"]


def test_scheme_change_needs_the_convert_operation(sim: Simulator, http: Http) -> None:
    pid = projects(http)["platform"]
    created = http.ado(
        "POST",
        f"{EP}?{V}",
        json={
            "name": "spn-sc",
            "type": "azurerm",
            "url": "https://management.azure.com/",
            "authorization": {
                "scheme": "ServicePrincipal",
                "parameters": {
                    "serviceprincipalid": str(uuid.uuid4()),
                    "tenantid": sim.tenant_id,
                    "authenticationType": "spnKey",
                    "serviceprincipalkey": "s",
                },
            },
            "serviceEndpointProjectReferences": [
                {"projectReference": {"id": pid}, "name": "spn-sc"}
            ],
        },
    ).json()
    body = dict(created)
    body["authorization"] = {
        "scheme": "WorkloadIdentityFederation",
        "parameters": {
            "serviceprincipalid": created["authorization"]["parameters"]["serviceprincipalid"],
            "tenantid": sim.tenant_id,
        },
    }
    assert http.ado("PUT", f"{EP}/{created['id']}?{V}", json=body).status_code == 400
    r = http.ado(
        "PUT", f"{EP}/{created['id']}?operation=ConvertAuthenticationScheme&{V}", json=body
    )
    assert r.status_code == 200 and r.json()["id"] == created["id"]
    assert (
        r.json()["authorization"]["parameters"]["workloadIdentityFederationIssuerType"] == "EntraID"
    )


def test_share_then_delete_per_project(sim: Simulator, http: Http) -> None:
    p = projects(http)
    created = wif(http, "shared-sc", [p["platform"]]).json()
    r = http.ado(
        "PATCH",
        f"{EP}/{created['id']}?{V}",
        json=[{"projectReference": {"id": p["team-a"]}, "name": "shared-sc"}],
    )
    assert r.status_code == 204
    got = http.ado(
        "GET", f"/contoso/team-a/_apis/serviceendpoint/endpoints/{created['id']}?{V}"
    ).json()
    assert got["isShared"] is True and len(got["serviceEndpointProjectReferences"]) == 2
    missing = http.ado("DELETE", f"{EP}/{created['id']}?{V}")
    assert missing.status_code == 400 and missing.json()["typeKey"] == "ArgumentNullException"
    assert (
        http.ado("DELETE", f"{EP}/{created['id']}?projectIds={p['team-a']}&{V}").status_code == 204
    )
    assert (
        http.ado("GET", f"/contoso/team-a/_apis/serviceendpoint/endpoints/{created['id']}?{V}").text
        == "null"
    )
    assert (
        http.ado(
            "GET", f"/contoso/platform/_apis/serviceendpoint/endpoints/{created['id']}?{V}"
        ).json()["id"]
        == created["id"]
    )
    assert (
        http.ado("DELETE", f"{EP}/{created['id']}?projectIds={p['platform']}&{V}").status_code
        == 204
    )
    assert (
        http.ado(
            "GET", f"/contoso/platform/_apis/serviceendpoint/endpoints/{created['id']}?{V}"
        ).text
        == "null"
    )
    assert (
        http.ado("DELETE", f"{EP}/{created['id']}?projectIds={p['platform']}&{V}").status_code
        == 204
    )


def test_delete_refused_while_a_matching_credential_exists(
    sim: Simulator, http: Http, msi: Any
) -> None:
    mi = msi.user_assigned_identities.create_or_update(
        "identities-rg", "ado-mi", {"location": "westeurope"}
    )
    pid = projects(http)["platform"]
    created = wif(http, "guarded-sc", [pid], client_id=mi.client_id).json()
    params = created["authorization"]["parameters"]
    msi.federated_identity_credentials.create_or_update(
        "identities-rg",
        "ado-mi",
        "ado-cred",
        {
            "issuer": params["workloadIdentityFederationIssuer"],
            "subject": params["workloadIdentityFederationSubject"],
            "audiences": ["api://AzureADTokenExchange"],
        },
    )
    r = http.ado("DELETE", f"{EP}/{created['id']}?projectIds={pid}&{V}")
    assert r.status_code == 400
    assert r.json()["message"] == (
        f"Cannot delete this service connection while federated credentials for app {mi.client_id} exist in Entra tenant "
        f"{sim.tenant_id}. Please make sure federated credentials have been removed prior to deleting the service connection."
    )
    sim.update_faults(fic_delete_lag_ms=60_000)
    msi.federated_identity_credentials.delete("identities-rg", "ado-mi", "ado-cred")
    assert (
        http.ado("DELETE", f"{EP}/{created['id']}?projectIds={pid}&{V}").status_code == 400
    )  # eventual consistency
    sim.update_faults(fic_delete_lag_ms=0)
    assert http.ado("DELETE", f"{EP}/{created['id']}?projectIds={pid}&{V}").status_code == 204


def test_pipeline_permissions_merge(sim: Simulator, http: Http) -> None:
    pid = projects(http)["platform"]
    eid = wif(http, "perm-sc", [pid]).json()["id"]
    url = f"/contoso/platform/_apis/pipelines/pipelinePermissions/endpoint/{eid}?{PV}"
    empty = http.ado("GET", url).json()
    assert (
        empty["pipelines"] == []
        and "allPipelines" not in empty
        and empty["resource"] == {"type": "endpoint", "id": eid, "name": "perm-sc"}
    )
    http.ado("PATCH", url, json={"pipelines": [{"id": 1, "authorized": True}]})
    after = http.ado("PATCH", url, json={"pipelines": [{"id": 2, "authorized": True}]}).json()
    assert [p["id"] for p in after["pipelines"]] == [1, 2]
    after = http.ado("PATCH", url, json={"pipelines": [{"id": 1, "authorized": False}]}).json()
    assert [p["id"] for p in after["pipelines"]] == [2]
    assert after["pipelines"][0]["authorizedBy"]["id"]
    after = http.ado(
        "PATCH",
        url,
        json={"resource": {"type": "endpoint", "id": eid}, "allPipelines": {"authorized": True}},
    ).json()
    assert after["allPipelines"]["authorized"] is True and [
        p["id"] for p in after["pipelines"]
    ] == [2]
    after = http.ado("PATCH", url, json={"allPipelines": {"authorized": False}}).json()
    assert "allPipelines" not in after
    lower = http.ado(
        "GET", f"/contoso/platform/_apis/pipelines/pipelinepermissions/endpoint/{eid}?{PV}"
    ).json()
    assert lower["pipelines"] == after["pipelines"]


@pytest.mark.parametrize(
    ("suffix", "body", "status"),
    [
        ("?api-version=7.1", {"pipelines": []}, 400),  # preview flag required
        (
            "?api-version=7.1-preview.1",
            {"pipelines": [{"id": 5, "authorized": True}]},
            400,
        ),  # team-b's pipeline
    ],
)
def test_pipeline_permission_errors(
    sim: Simulator, http: Http, suffix: str, body: Any, status: int
) -> None:
    eid = wif(http, "perm-err-sc", [projects(http)["platform"]]).json()["id"]
    r = http.ado(
        "PATCH",
        f"/contoso/platform/_apis/pipelines/pipelinePermissions/endpoint/{eid}{suffix}",
        json=body,
    )
    assert r.status_code == status


def test_permissions_go_with_a_deleted_endpoint(sim: Simulator, http: Http) -> None:
    pid = projects(http)["platform"]
    eid = wif(http, "gone-sc", [pid]).json()["id"]
    url = f"/contoso/platform/_apis/pipelines/pipelinePermissions/endpoint/{eid}?{PV}"
    http.ado("PATCH", url, json={"allPipelines": {"authorized": True}})
    http.ado("DELETE", f"{EP}/{eid}?projectIds={pid}&{V}")
    assert "allPipelines" not in http.ado("GET", url).json()


def test_projects_and_pipelines_page_with_continuation_tokens(sim: Simulator, http: Http) -> None:
    sim.update_faults(devops_page_size=2)
    first = http.ado("GET", f"/contoso/_apis/projects?{V}")
    assert first.json()["count"] == 2 and first.headers["x-ms-continuationtoken"] == "2"
    rest = http.ado("GET", f"/contoso/_apis/projects?{V}&continuationToken=2")
    assert rest.json()["count"] == 1 and "x-ms-continuationtoken" not in rest.headers
    top = http.ado("GET", f"/contoso/platform/_apis/pipelines?{V}&$top=1")
    assert [p["name"] for p in top.json()["value"]] == ["infra-deploy"] and top.headers[
        "x-ms-continuationtoken"
    ] == "1"
