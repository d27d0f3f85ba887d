"""Azure DevOps behaviours that working clients rely on (issue 10 §2): asynchronous delete,
project references in any order, updates that carry server-generated fields, and the legacy
issuer's subject following renames."""

from __future__ import annotations

from reconciler.sim.server import Simulator

from .clients import Http
from .test_devops import EP, V, projects, wif


def _get(http: Http, eid: str, project: str = "platform") -> object:
    r = http.ado("GET", f"/contoso/{project}/_apis/serviceendpoint/endpoints/{eid}?{V}")
    assert r.status_code == 200
    return r.json()


def _listed(http: Http, eid: str, project: str = "platform") -> list[dict[str, object]]:
    r = http.ado("GET", f"/contoso/{project}/_apis/serviceendpoint/endpoints?{V}")
    return [e for e in r.json()["value"] if e["id"] == eid]


def test_delete_lag_keeps_the_connection_whole_then_partial_then_gone(
    sim: Simulator, http: Http
) -> None:
    pid = projects(http)["platform"]
    created = wif(http, "lag-sc", [pid]).json()
    # the windows are moved by hand (the settings are read per request): no sleeping
    sim.set_faults(["delete-lag:600", "delete-whole:600"])
    r = http.ado("DELETE", f"{EP}/{created['id']}?projectIds={pid}&{V}")
    assert r.status_code == 204
    whole = _get(http, created["id"])
    assert isinstance(whole, dict)
    assert whole["authorization"]["scheme"] == "WorkloadIdentityFederation"
    sim.update_faults(delete_whole_s=0.0)
    partial = _get(http, created["id"])
    assert isinstance(partial, dict) and partial["id"] == created["id"]
    assert partial["authorization"] is None
    (listed,) = _listed(http, created["id"])
    assert listed["authorization"] is None
    sim.update_faults(delete_lag_s=0.0)
    assert _get(http, created["id"]) is None
    assert _listed(http, created["id"]) == []


def test_without_delete_lag_a_deleted_connection_is_gone_at_once(
    sim: Simulator, http: Http
) -> None:
    pid = projects(http)["platform"]
    created = wif(http, "nolag-sc", [pid]).json()
    http.ado("DELETE", f"{EP}/{created['id']}?projectIds={pid}&{V}")
    assert _get(http, created["id"]) is None


def test_references_can_come_in_reverse_order(sim: Simulator, http: Http) -> None:
    ids = projects(http)
    created = wif(http, "order-sc", [ids["platform"], ids["team-a"]]).json()
    names = [r["projectReference"]["name"] for r in created["serviceEndpointProjectReferences"]]
    assert names == ["platform", "team-a"]
    sim.set_faults(["reverse-references:1"])
    got = _get(http, created["id"])
    assert isinstance(got, dict)
    names = [r["projectReference"]["name"] for r in got["serviceEndpointProjectReferences"]]
    assert names == ["team-a", "platform"]


def test_strict_update_refuses_server_generated_fields(sim: Simulator, http: Http) -> None:
    pid = projects(http)["platform"]
    created = wif(http, "strict-sc", [pid]).json()
    sim.set_faults(["strict-update:1"])
    r = http.ado("PUT", f"{EP}/{created['id']}?{V}", json=created)
    assert r.status_code == 400
    message = r.json()["message"]
    for field in ("createdBy", "isReady", "operationStatus", "workloadIdentityFederationSubject"):
        assert field in message
    trimmed = {
        k: v
        for k, v in created.items()
        if k not in ("createdBy", "isReady", "isShared", "operationStatus")
    }
    trimmed["authorization"] = {
        "scheme": "WorkloadIdentityFederation",
        "parameters": {
            k: v
            for k, v in created["authorization"]["parameters"].items()
            if not k.startswith("workloadIdentityFederation")
        },
    }
    assert http.ado("PUT", f"{EP}/{created['id']}?{V}", json=trimmed).status_code == 200
    # off (the default), the same fields are ignored
    sim.set_faults(None)
    assert http.ado("PUT", f"{EP}/{created['id']}?{V}", json=created).status_code == 200


def _fabrikam_connection(http: Http, name: str) -> dict[str, object]:
    pid = projects(http, "fabrikam")["legacy-app"]
    r = wif(http, name, [pid], org="fabrikam")
    assert r.status_code == 200
    created: dict[str, object] = r.json()
    return created


def _subject(endpoint: object) -> str:
    assert isinstance(endpoint, dict)
    return str(endpoint["authorization"]["parameters"]["workloadIdentityFederationSubject"])


def test_legacy_subject_follows_a_rename_by_update_portal_and_project(
    sim: Simulator, http: Http
) -> None:
    created = _fabrikam_connection(http, "legacy-sc")
    assert _subject(created) == "sc://fabrikam/legacy-app/legacy-sc"
    body = {k: v for k, v in created.items() if k in ("name", "authorization", "data", "type")}
    body["name"] = "legacy-renamed"
    r = http.ado("PUT", f"/fabrikam/_apis/serviceendpoint/endpoints/{created['id']}?{V}", json=body)
    assert r.status_code == 200
    assert _subject(r.json()) == "sc://fabrikam/legacy-app/legacy-renamed"
    sim.edit("service_endpoint", str(created["id"]), {"name": "portal-name"})
    got = http.ado(
        "GET", f"/fabrikam/legacy-app/_apis/serviceendpoint/endpoints/{created['id']}?{V}"
    ).json()
    assert got["name"] == "portal-name"
    assert _subject(got) == "sc://fabrikam/legacy-app/portal-name"
    sim.edit("project", "fabrikam/legacy-app", {"name": "legacy-2"})
    got = http.ado(
        "GET", f"/fabrikam/legacy-2/_apis/serviceendpoint/endpoints/{created['id']}?{V}"
    ).json()
    assert _subject(got) == "sc://fabrikam/legacy-2/portal-name"


def test_entra_subject_never_changes_on_rename(sim: Simulator, http: Http) -> None:
    pid = projects(http)["platform"]
    created = wif(http, "entra-sc", [pid]).json()
    sim.edit("service_endpoint", created["id"], {"name": "entra-renamed"})
    sim.edit("project", "contoso/platform", {"name": "platform-2"})
    got = http.ado(
        "GET", f"/contoso/platform-2/_apis/serviceendpoint/endpoints/{created['id']}?{V}"
    ).json()
    assert got["name"] == "entra-renamed"
    assert _subject(got) == _subject(created)
