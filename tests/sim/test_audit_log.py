"""The simulator's Azure DevOps audit log (``Audit Log_Query``, 7.1-preview.1): entries for
service connection and pipeline permission changes and admin edits, with their actors, only
while the organisation's "Log Audit Events" policy is on; paging by continuationToken and
hasMore, aggregation of the log's own accesses, ingestion delay, retention, permission;
responses checked against the official description (tests/sim/apispecs)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from reconciler.sim.activitylog import RETENTION_S
from reconciler.sim.seed import load_seed
from reconciler.sim.server import Simulator

from . import contract
from .clients import DEVOPS_SCOPE, Http

V = "api-version=7.1"
AUDIT_PATH = "/{organization}/_apis/audit/auditlog"
PROJECT_ACTIONS = {"Library.ServiceConnectionCreated", "Library.ServiceConnectionDeleted"}


def audit(http: Http, org: str = "contoso", **params: Any) -> requests.Response:
    q = {"api-version": "7.1-preview.1", **{k: str(v) for k, v in params.items()}}
    return http.session.get(
        f"{http.sim.audit_url}/{org}/_apis/audit/auditlog",
        params=q,
        headers={"Authorization": f"Bearer {http.token(DEVOPS_SCOPE)}"},
    )


def changes(http: Http, org: str = "contoso", **params: Any) -> list[dict[str, Any]]:
    """The entries of one query, without the log's own access entries."""
    r = audit(http, org, skipAggregation="true", **params)
    assert r.status_code == 200, r.text
    return [
        e for e in r.json()["decoratedAuditLogEntries"] if e["actionId"] != "AuditLog.AccessLog"
    ]


def schema() -> dict[str, Any]:
    s = contract.response_schema(contract.AUDIT, AUDIT_PATH, "get", "200")
    # the description types each value of ``data`` as an object; its own example (and the
    # service) carries strings and numbers there
    s["properties"]["decoratedAuditLogEntries"]["items"]["properties"]["data"] = {"type": "object"}
    return s


def projects(http: Http) -> dict[str, str]:
    r = http.ado("GET", f"/contoso/_apis/projects?{V}")
    return {p["name"]: p["id"] for p in r.json()["value"]}


def create(http: Http, name: str, *project_ids: str) -> dict[str, Any]:
    body = {
        "name": name,
        "type": "azurerm",
        "url": "https://management.azure.com/",
        "owner": "library",
        "authorization": {
            "scheme": "WorkloadIdentityFederation",
            "parameters": {"serviceprincipalid": str(uuid.uuid4()), "tenantid": http.sim.tenant_id},
        },
        "data": {"subscriptionId": "11111111-1111-1111-1111-111111111111"},
        "serviceEndpointProjectReferences": [
            {"projectReference": {"id": p}, "name": name} for p in project_ids
        ],
    }
    r = http.ado("POST", f"/contoso/_apis/serviceendpoint/endpoints?{V}", json=body)
    assert r.status_code == 200, r.text
    created: dict[str, Any] = r.json()
    return created


@pytest.fixture
def auditing(sim: Simulator) -> Simulator:
    sim.set_auditing("contoso", True)
    return sim


def test_auditing_is_off_by_default_and_nothing_is_recorded(sim: Simulator, http: Http) -> None:
    ids = projects(http)
    create(http, "audit-off-sc", ids["platform"])
    assert sim.audit_log("contoso") == []
    r = audit(http)
    assert r.status_code == 200  # assumption: the log can be read; it just holds nothing new
    body = r.json()
    contract.check(body, schema())
    assert body["decoratedAuditLogEntries"] == [] and body["hasMore"] is False


def test_changes_through_the_api_are_recorded_with_the_actor(
    auditing: Simulator, http: Http
) -> None:
    client = auditing.world.clients[auditing.client_id.lower()]
    ids = projects(http)
    sc = create(http, "audit-api-sc", ids["platform"])
    r = http.ado(
        "PUT",
        f"/contoso/_apis/serviceendpoint/endpoints/{sc['id']}?{V}",
        json={**sc, "description": "x"},
    )
    assert r.status_code == 200, r.text
    r = http.ado(
        "PATCH",
        f"/contoso/_apis/serviceendpoint/endpoints/{sc['id']}?{V}",
        json=[{"projectReference": {"id": ids["team-a"]}, "name": "audit-api-sc"}],
    )
    assert r.status_code == 204, r.text
    r = http.ado(
        "PATCH",
        f"/contoso/platform/_apis/pipelines/pipelinepermissions/endpoint/{sc['id']}?api-version=7.1-preview.1",
        json={"pipelines": [{"id": 1, "authorized": True}], "allPipelines": {"authorized": True}},
    )
    assert r.status_code == 200, r.text
    r = http.ado(
        "PATCH",
        f"/contoso/platform/_apis/pipelines/pipelinepermissions/endpoint/{sc['id']}?api-version=7.1-preview.1",
        json={"pipelines": [{"id": 1, "authorized": False}], "allPipelines": {"authorized": False}},
    )
    assert r.status_code == 200, r.text
    r = http.ado(
        "DELETE",
        f"/contoso/_apis/serviceendpoint/endpoints/{sc['id']}?projectIds={ids['team-a']}&{V}",
    )
    assert r.status_code == 204, r.text

    r = audit(http, skipAggregation="true")
    body = r.json()
    contract.check(body, schema())
    entries = [
        e
        for e in reversed(body["decoratedAuditLogEntries"])
        if e["actionId"] != "AuditLog.AccessLog"
    ]
    assert [e["actionId"] for e in entries] == [
        "OrganizationPolicy.PolicyValueUpdated",
        "Library.ServiceConnectionCreated",
        "Library.ServiceConnectionModified",
        "Library.ServiceConnectionShared",
        "Pipelines.ResourceAuthorizedForProject",
        "Pipelines.ResourceAuthorizedForPipeline",
        "Pipelines.ResourceUnauthorizedForProject",
        "Pipelines.ResourceUnauthorizedForPipeline",
        "Library.ServiceConnectionDeleted",
    ]
    mine = entries[1:]
    assert {e["actorClientId"] for e in mine} == {client.client_id}
    assert {e["actorUserId"] for e in mine} == {client.object_id}
    assert {e["actorDisplayName"] for e in mine} == {client.display_name}
    assert all("actorUPN" not in e for e in mine)  # a service principal has none
    assert {e["scopeId"] for e in mine} == {auditing.world.organizations["contoso"].id}
    created, _, shared, _, authorized, *_, deleted = mine
    assert created["data"]["ConnectionId"] == sc["id"]
    assert created["data"]["ConnectionName"] == "audit-api-sc"
    assert created["projectId"] == ids["platform"] and created["category"] == "create"
    assert created["details"] == 'Created Service Connection "audit-api-sc" of type azurerm.'
    assert shared["projectId"] == ids["team-a"]
    assert authorized["data"] == {
        "ResourceType": "endpoint",
        "ResourceId": sc["id"],
        "PipelineId": 1,
    }
    assert deleted["projectId"] == ids["team-a"] and deleted["category"] == "remove"


def test_a_connection_for_several_projects_is_one_entry(auditing: Simulator, http: Http) -> None:
    ids = projects(http)
    sc = create(http, "audit-multi-sc", ids["platform"], ids["team-b"])
    (entry,) = [e for e in changes(http) if e["actionId"].startswith("Library.")]
    assert entry["actionId"] == "Library.ServiceConnectionCreatedForMultipleProjects"
    assert entry["data"]["ProjectIds"] == [ids["platform"], ids["team-b"]]
    assert entry["data"]["ConnectionId"] == sc["id"]


def test_admin_edits_are_recorded_with_the_callers_name(auditing: Simulator, http: Http) -> None:
    ids = projects(http)
    sc = create(http, "audit-admin-sc", ids["platform"])
    auditing.edit("service_endpoint", sc["id"], {"description": "portal"})
    auditing.edit(
        "pipeline_permissions",
        f"contoso/platform/endpoint/{sc['id']}",
        {"pipelines": [2]},
        caller="carol@contoso.com",
    )
    r = http.admin(
        "POST",
        "edit",
        json={
            "kind": "service_endpoint",
            "id": sc["id"],
            "delete": True,
            "caller": "dave@contoso.com",
        },
    )
    assert r.status_code == 204
    got = [
        (e["actionId"], e.get("actorUPN"), e["actorDisplayName"])
        for e in reversed(changes(http))
        if "actorClientId" not in e and e["actionId"] != "OrganizationPolicy.PolicyValueUpdated"
    ]
    assert got == [
        ("Library.ServiceConnectionModified", "portal-user@contoso.com", "portal-user@contoso.com"),
        ("Pipelines.ResourceAuthorizedForPipeline", "carol@contoso.com", "carol@contoso.com"),
        ("Library.ServiceConnectionDeleted", "dave@contoso.com", "dave@contoso.com"),
    ]


def test_the_policy_change_itself_is_recorded(sim: Simulator, http: Http) -> None:
    sim.set_auditing("contoso", True, caller="owner@contoso.com")
    sim.set_auditing("contoso", False, caller="owner@contoso.com")
    ids = projects(http)
    create(http, "audit-after-off-sc", ids["platform"])
    entries = changes(http)
    assert [(e["actionId"], e["data"]["PolicyValue"], e["actorUPN"]) for e in entries] == [
        ("OrganizationPolicy.PolicyValueUpdated", "Off", "owner@contoso.com"),
        ("OrganizationPolicy.PolicyValueUpdated", "On", "owner@contoso.com"),
    ]
    assert entries[0]["data"]["PolicyName"] == "Policy.LogAuditEvents"


def test_pages_by_continuation_token_newest_first(auditing: Simulator, http: Http) -> None:
    ids = projects(http)
    for i in range(5):
        create(http, f"audit-page-{i}-sc", ids["team-b"])
    whole = changes(http)
    assert len(whole) == 6
    seen: list[dict[str, Any]] = []
    token = ""
    for _ in range(10):
        params: dict[str, Any] = {"batchSize": 2, "skipAggregation": "true"}
        if token:
            params["continuationToken"] = token
        body = audit(http, **params).json()
        contract.check(body, schema())
        page = body["decoratedAuditLogEntries"]
        assert len(page) <= 2
        seen.extend(page)
        token = body["continuationToken"]
        if not body["hasMore"]:
            break
    paged = [e for e in seen if e["actionId"] != "AuditLog.AccessLog"]
    assert [e["id"] for e in paged] == [e["id"] for e in whole]
    stamps = [e["timestamp"] for e in paged]
    assert stamps == sorted(stamps, reverse=True)


def test_reading_the_log_is_itself_audited_and_aggregated(auditing: Simulator, http: Http) -> None:
    for _ in range(3):
        assert audit(http).status_code == 200
    body = audit(http).json()
    contract.check(body, schema())
    access = [e for e in body["decoratedAuditLogEntries"] if e["actionId"] == "AuditLog.AccessLog"]
    assert len(access) == 1
    assert access[0]["details"] == "Accessed the audit log 3 times"
    assert len(access[0]["data"]["EventSummary"]) == 3
    r = audit(http, skipAggregation="true")
    single = [
        e for e in r.json()["decoratedAuditLogEntries"] if e["actionId"] == "AuditLog.AccessLog"
    ]
    assert len(single) == 4 and all("EventSummary" not in e["data"] for e in single)
    assert single[0]["data"]["Filter"]["BatchSize"] == 200


def test_the_ingestion_delay_hides_recent_entries(auditing: Simulator, http: Http) -> None:
    auditing.update_faults(audit_log_delay_s=60)
    ids = projects(http)
    create(http, "audit-delay-sc", ids["platform"])
    assert [e["actionId"] for e in changes(http)] == ["OrganizationPolicy.PolicyValueUpdated"]
    auditing.age_logs(61)
    assert "Library.ServiceConnectionCreated" in {e["actionId"] for e in changes(http)}


def test_the_time_window_and_retention(auditing: Simulator, http: Http) -> None:
    ids = projects(http)
    create(http, "audit-window-sc", ids["platform"])
    future = datetime.fromtimestamp(time.time() + 60, UTC).isoformat()
    later = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()
    assert changes(http, startTime=future, endTime=later) == []
    auditing.age_logs(RETENTION_S - 3600)
    assert len(changes(http)) == 2
    auditing.age_logs(7200)
    assert changes(http) == []
    # only the accesses of the last two queries are younger than the retention
    assert [e["actionId"] for e in auditing.audit_log("contoso")] == ["AuditLog.AccessLog"] * 2


def test_a_caller_without_view_audit_log_is_refused(sim: Simulator, http: Http) -> None:
    seed = load_seed(None)
    org = seed["devops"]["organizations"][0]
    org["auditing"] = True
    org["auditReaders"] = ["auditor@contoso.com"]
    sim.reset(seed)
    r = audit(http)
    assert r.status_code == 403
    body = r.json()
    assert body["typeKey"] == "AccessCheckException" and "View audit log" in body["message"]
    assert sim.state()["devops"]["organizations"][0]["auditReaders"] == ["auditor@contoso.com"]


def test_preview_version_organisation_and_sign_in(sim: Simulator, http: Http) -> None:
    r = http.session.get(
        f"{sim.audit_url}/contoso/_apis/audit/auditlog?api-version=7.1",
        headers={"Authorization": f"Bearer {http.token(DEVOPS_SCOPE)}"},
    )
    assert r.status_code == 400 and r.json()["typeKey"] == "VssInvalidPreviewVersionException"
    assert audit(http, org="nowhere").status_code == 404
    r = http.session.get(
        f"{sim.audit_url}/contoso/_apis/audit/auditlog?api-version=7.1-preview.1",
        headers={"X-TFS-FedAuthRedirect": "Suppress"},
    )
    assert r.status_code == 401
    assert audit(http, startTime="not-a-time").status_code == 400


def test_the_official_example_is_the_answers_shape(auditing: Simulator, http: Http) -> None:
    example = json.loads(
        (
            contract.AUDIT.parent / "httpExamples/auditLog/GET__AuditLog_QueryLog_by_date.json"
        ).read_text("utf-8-sig")
    )
    params = example["parameters"]
    r = audit(http, **params)
    assert r.status_code == 200
    assert set(r.json()) == set(example["responses"]["200"]["body"]["value"])


def test_a_project_rename_is_recorded(auditing: Simulator, http: Http) -> None:
    ids = projects(http)
    auditing.edit("project", "contoso/team-b", {"name": "team-b2"}, caller="erin@contoso.com")
    (entry,) = [e for e in changes(http) if e["actionId"].startswith("Project.")]
    assert entry["actionId"] == "Project.UpdateRenameCompleted"
    assert entry["data"] == {
        "ProjectId": ids["team-b"],
        "PreviousProjectName": "team-b",
        "ProjectName": "team-b2",
    }
    assert entry["actorUPN"] == "erin@contoso.com" and entry["projectId"] == ids["team-b"]
    assert entry["details"] == "Rename for project team-b to team-b2 was successful."
