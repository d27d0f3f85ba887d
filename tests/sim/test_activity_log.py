"""The simulator's Activity Log (``ActivityLogs_List``, Microsoft.Insights 2015-04-01): events
for every ARM write and delete and for admin edits, with their callers; the ingestion delay,
paging, the documented ``$filter`` grammar and its refusals, retention; responses checked
against the official description (tests/sim/apispecs)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from reconciler.sim.activitylog import RETENTION_S
from reconciler.sim.server import Simulator

from . import contract
from .clients import PRODUCTION, SANDBOX, Http

PATH = "/subscriptions/{subscriptionId}/providers/Microsoft.Insights/eventtypes/management/values"
MSI = "providers/Microsoft.ManagedIdentity/userAssignedIdentities"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def events_url(sub: str = SANDBOX) -> str:
    return f"/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values"


def query(http: Http, flt: str | None, sub: str = SANDBOX, **params: str) -> requests.Response:
    q: dict[str, str] = {"api-version": "2015-04-01", **params}
    if flt is not None:
        q["$filter"] = flt
    return http.arm("GET", events_url(sub), params=q)


def since(seconds: float = 600) -> str:
    return f"eventTimestamp ge '{stamp(time.time() - seconds)}'"


def all_events(http: Http, flt: str, **params: str) -> list[dict[str, Any]]:
    """Every page, following nextLink."""
    r = query(http, flt, **params)
    assert r.status_code == 200, r.text
    body = r.json()
    out = list(body["value"])
    while body.get("nextLink"):
        r = http.session.get(
            body["nextLink"], headers={"Authorization": f"Bearer {http.token(contract_scope())}"}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        out.extend(body["value"])
    return out


def contract_scope() -> str:
    return "https://management.azure.com/.default"


def schema() -> dict[str, Any]:
    return contract.response_schema(contract.ACTIVITY_LOGS, PATH, "get", "200")


def error_schema() -> dict[str, Any]:
    return contract.response_schema(contract.ACTIVITY_LOGS, PATH, "get", "default")


def identity_path(name: str, rg: str = "identities-rg", sub: str = SANDBOX) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/{MSI}/{name}"


def put_identity(http: Http, name: str, **kw: Any) -> dict[str, Any]:
    r = http.arm(
        "PUT",
        identity_path(name) + "?api-version=2024-11-30",
        json={"location": "westeurope"},
        **kw,
    )
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def now_visible(sim: Simulator) -> Simulator:
    sim.set_faults(activity_log_delay_s=0)
    return sim


def test_every_write_and_delete_records_started_then_succeeded_with_the_caller(
    now_visible: Simulator, http: Http
) -> None:
    client = now_visible.world.clients[now_visible.client_id.lower()]
    correlation = str(uuid.uuid4())
    ident = put_identity(http, "al-writes-mi", headers={"x-ms-correlation-request-id": correlation})
    fic = identity_path("al-writes-mi") + "/federatedIdentityCredentials/fc1"
    r = http.arm(
        "PUT",
        fic + "?api-version=2024-11-30",
        json={
            "properties": {
                "issuer": "https://token.actions.githubusercontent.com",
                "subject": "repo:contoso/x:ref:refs/heads/main",
                "audiences": ["api://AzureADTokenExchange"],
            }
        },
    )
    assert r.status_code in (200, 201), r.text
    ra = (
        f"/subscriptions/{SANDBOX}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    )
    r = http.arm(
        "PUT",
        ra + "?api-version=2022-04-01",
        json={
            "properties": {
                "roleDefinitionId": f"/subscriptions/{SANDBOX}/providers/Microsoft.Authorization/roleDefinitions/{READER}",
                "principalId": ident["properties"]["principalId"],
                "principalType": "ServicePrincipal",
            }
        },
    )
    assert r.status_code == 201, r.text
    assert http.arm("DELETE", ra + "?api-version=2022-04-01").status_code == 200
    assert http.arm("DELETE", fic + "?api-version=2024-11-30").status_code == 200
    # reads are not management events
    assert http.arm("GET", identity_path("al-writes-mi") + "?api-version=2024-11-30").ok

    r = query(http, since())
    assert r.status_code == 200
    body = r.json()
    contract.check(body, schema())
    events = list(reversed(body["value"]))  # the service answers newest first
    got = [(e["operationName"]["value"], e["status"]["value"], e["resourceId"]) for e in events]
    assert got == [
        ("Microsoft.ManagedIdentity/userAssignedIdentities/write", "Started", identity_path("al-writes-mi")),
        ("Microsoft.ManagedIdentity/userAssignedIdentities/write", "Succeeded", identity_path("al-writes-mi")),
        ("Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write", "Started", fic),
        ("Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write", "Succeeded", fic),
        ("Microsoft.Authorization/roleAssignments/write", "Started", ra),
        ("Microsoft.Authorization/roleAssignments/write", "Succeeded", ra),
        ("Microsoft.Authorization/roleAssignments/delete", "Started", ra),
        ("Microsoft.Authorization/roleAssignments/delete", "Succeeded", ra),
        ("Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete", "Started", fic),
        ("Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete", "Succeeded", fic),
    ]  # fmt: skip
    # the caller is the service principal (its object id; appid in the claims)
    assert {e["caller"] for e in events} == {client.object_id}
    assert {e["claims"]["appid"] for e in events} == {client.client_id}
    assert {e["category"]["value"] for e in events} == {"Administrative"}
    # one request: one correlation id (the client's), one operation id, Begin then End
    first = [e for e in events if e["resourceId"] == identity_path("al-writes-mi")]
    assert {e["correlationId"] for e in first} == {correlation}
    assert len({e["operationId"] for e in first}) == 1
    assert [e["eventName"]["value"] for e in first] == ["BeginRequest", "EndRequest"]
    assert first[1]["subStatus"]["value"] == "Created"
    assert first[0]["resourceGroupName"] == "identities-rg"
    assert {e["subscriptionId"] for e in events} == {SANDBOX}
    assert len({e["eventDataId"] for e in events}) == len(events)


def test_a_refused_write_records_failed(now_visible: Simulator, http: Http) -> None:
    put_identity(http, "al-failed-mi")
    fic = identity_path("al-failed-mi") + "/federatedIdentityCredentials/bad"
    r = http.arm(
        "PUT", fic + "?api-version=2024-11-30", json={"properties": {"issuer": "https://x"}}
    )
    assert r.status_code == 400
    events = [e for e in query(http, since()).json()["value"] if e["resourceId"] == fic]
    assert [(e["status"]["value"], e["level"]) for e in reversed(events)] == [
        ("Started", "Informational"),
        ("Failed", "Error"),
    ]
    assert events[0]["subStatus"]["localizedValue"] == "Bad Request (HTTP Status Code: 400)"


def test_admin_edits_are_recorded_with_the_callers_name(now_visible: Simulator, http: Http) -> None:
    ident = identity_path("data-team-mi")
    ident_id = now_visible.world.identities[f"{SANDBOX}/identities-rg/data-team-mi".lower()].arm_id
    now_visible.edit("identity", ident_id, {"tags": {"x": "y"}})
    now_visible.delete(
        "federated_credential",
        f"{ident_id}/federatedIdentityCredentials/github-data-main",
        caller="alice@contoso.com",
    )
    r = http.admin(
        "POST",
        "edit",
        json={
            "kind": "role_assignment",
            "id": "7d1f4b62-8a3e-4c9d-b5f0-2e6a8c1d3f22",
            "patch": {"description": "changed"},
            "caller": "bob@contoso.com",
        },
    )
    assert r.status_code == 200
    body = query(http, since()).json()
    contract.check(body, schema())
    ends = [e for e in reversed(body["value"]) if e["status"]["value"] == "Succeeded"]
    got = [(e["caller"], e["operationName"]["value"], e["resourceId"].lower()) for e in ends]
    assert got == [
        ("portal-user@contoso.com", "Microsoft.ManagedIdentity/userAssignedIdentities/write", ident.lower()),
        (
            "alice@contoso.com",
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete",
            f"{ident}/federatedIdentityCredentials/github-data-main".lower(),
        ),
        (
            "bob@contoso.com",
            "Microsoft.Authorization/roleAssignments/write",
            f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg/providers/Microsoft.Authorization/roleAssignments/7d1f4b62-8a3e-4c9d-b5f0-2e6a8c1d3f22".lower(),
        ),
    ]  # fmt: skip
    upn = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
    assert ends[1]["claims"][upn] == "alice@contoso.com"


def test_the_ingestion_delay_hides_recent_events(sim: Simulator, http: Http) -> None:
    assert sim.faults.activity_log_delay_s > 0  # on by default
    sim.set_faults(activity_log_delay_s=120)
    put_identity(http, "al-delay-mi")
    assert query(http, since()).json()["value"] == []
    recorded = sim.activity_log()
    assert len(recorded) == 2
    for e in recorded:  # submissionTimestamp: when it became available for querying
        gap = datetime.fromisoformat(e["submissionTimestamp"]) - datetime.fromisoformat(
            e["eventTimestamp"]
        )
        assert gap.total_seconds() == pytest.approx(120, abs=0.01)
    sim.age_logs(119)
    assert query(http, since(3600)).json()["value"] == []
    sim.age_logs(2)
    assert len(query(http, since(3600)).json()["value"]) == 2


def test_pages_follow_nextlink_and_hold_every_event_once(
    now_visible: Simulator, http: Http
) -> None:
    for i in range(5):
        put_identity(http, f"al-page-{i}-mi")
    now_visible.update_faults(activity_log_page_size=3)
    first = query(http, since()).json()
    assert len(first["value"]) == 3 and "$skiptoken=" in first["nextLink"]
    assert first["nextLink"].startswith(now_visible.arm_url + events_url())
    paged = all_events(http, since())
    now_visible.update_faults(activity_log_page_size=200)
    whole = query(http, since()).json()
    assert "nextLink" not in whole
    assert [e["eventDataId"] for e in paged] == [e["eventDataId"] for e in whole["value"]]
    assert len(paged) == 10
    stamps = [e["eventTimestamp"] for e in paged]
    assert stamps == sorted(stamps, reverse=True)


def test_a_new_event_does_not_shift_the_pages_of_a_query(
    now_visible: Simulator, http: Http
) -> None:
    for i in range(3):
        put_identity(http, f"al-shift-{i}-mi")
    now_visible.update_faults(activity_log_page_size=2)
    first = query(http, since()).json()
    put_identity(http, "al-shift-late-mi")  # arrives between the pages
    rest = all_events(http, since())  # a new query sees it
    token = {"Authorization": f"Bearer {http.token(contract_scope())}"}
    ids = [e["eventDataId"] for e in first["value"]]
    link: str | None = first["nextLink"]
    while link:
        page = http.session.get(link, headers=token).json()
        ids.extend(e["eventDataId"] for e in page["value"])
        link = page.get("nextLink")
    assert len(ids) == len(set(ids)) == 6
    assert len(rest) == 8


def test_the_documented_filters_narrow_the_answer(now_visible: Simulator, http: Http) -> None:
    correlation = str(uuid.uuid4())
    put_identity(http, "al-filter-mi", headers={"x-ms-correlation-request-id": correlation})
    other = f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg/{MSI}/al-filter-other-mi"
    assert http.arm(
        "PUT", other + "?api-version=2024-11-30", json={"location": "westeurope"}
    ).status_code in (200, 201)
    ra = (
        f"/subscriptions/{SANDBOX}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    )
    http.arm("DELETE", ra + "?api-version=2022-04-01")

    def ids(flt: str) -> set[str]:
        r = query(http, f"{since()} and {flt}")
        assert r.status_code == 200, r.text
        return {e["resourceId"] for e in r.json()["value"]}

    mine = identity_path("al-filter-mi")
    assert ids("resourceProvider eq 'Microsoft.ManagedIdentity'") == {mine, other}
    assert ids("resourceProvider eq 'microsoft.authorization'") == {ra}
    assert ids(f"resourceUri eq '{mine}'") == {mine}
    assert ids("resourceGroupName eq 'sandbox-rg'") == {other}
    assert ids(f"correlationId eq '{correlation}'") == {mine}
    # the end of the window, and the order of the clauses, as the description writes them
    past = stamp(time.time() - 300)
    r = query(
        http, f"eventTimestamp ge '{stamp(time.time() - 600)}' and eventTimestamp le '{past}'"
    )
    assert r.json()["value"] == []
    # another subscription's log is its own
    assert query(http, since(), sub=PRODUCTION).json()["value"] == []


def test_select_keeps_the_named_properties(now_visible: Simulator, http: Http) -> None:
    put_identity(http, "al-select-mi")
    fields = "caller,operationName,eventTimestamp,status,resourceId,correlationId"
    body = query(http, since(), **{"$select": fields}).json()
    contract.check(body, schema())
    assert body["value"] and all(set(e) == set(fields.split(",")) for e in body["value"])


def test_the_official_example_request_is_accepted(now_visible: Simulator, http: Http) -> None:
    import json

    example = json.loads(
        (contract.ACTIVITY_LOGS.parent / "examples/GetActivityLogsFiltered.json").read_text()
    )
    flt = example["parameters"]["$filter"]
    r = query(http, flt)
    assert r.status_code == 200 and r.json() == {"value": []}


@pytest.mark.parametrize(
    "flt",
    [
        None,  # $filter is required
        "",
        "resourceProvider eq 'Microsoft.ManagedIdentity'",  # a start time is required
        "eventTimestamp le '2026-01-01T00:00:00Z'",
        "eventTimestamp gt '2026-01-01T00:00:00Z'",
        "eventTimestamp ge 2026-01-01T00:00:00Z",  # unquoted
        "eventTimestamp ge 'yesterday'",
        "eventTimestamp ge '2026-01-01T00:00:00Z' and caller eq 'alice@contoso.com'",
        "eventTimestamp ge '2026-01-01T00:00:00Z' and status eq 'Succeeded'",
        "eventTimestamp ge '2026-01-01T00:00:00Z' and resourceProvider ne 'Microsoft.Compute'",
        "eventTimestamp ge '2026-01-01T00:00:00Z' or resourceGroupName eq 'x'",
        "eventTimestamp ge '2026-01-01T00:00:00Z' and resourceGroupName eq 'a' and resourceUri eq '/b'",
        "eventTimestamp ge '2026-01-01T00:00:00Z' and eventTimestamp ge '2026-01-02T00:00:00Z'",
        "eventTimestamp ge '2026-01-01T00:00:00Z' and",
    ],
)
def test_other_filters_are_refused_with_the_services_body(
    sim: Simulator, http: Http, flt: str | None
) -> None:
    r = query(http, flt)
    assert r.status_code == 400
    body = r.json()
    contract.validate(body, error_schema())
    assert set(body) == {"code", "message"} and body["code"] == "BadRequest"


def test_events_past_the_retention_are_gone(now_visible: Simulator, http: Http) -> None:
    put_identity(http, "al-retention-mi")
    long_ago = f"eventTimestamp ge '{stamp(time.time() - 200 * 24 * 3600)}'"
    now_visible.age_logs(RETENTION_S - 3600)  # 89 days and 23 hours ago: still there
    assert len(query(http, long_ago).json()["value"]) == 2
    now_visible.age_logs(7200)  # now past 90 days
    r = query(http, long_ago)
    assert r.status_code == 200 and r.json()["value"] == []
    assert now_visible.activity_log() == []


def test_unknown_subscription_and_api_version(sim: Simulator, http: Http) -> None:
    r = query(http, since(), sub="33333333-3333-3333-3333-333333333333")
    assert r.status_code == 404 and r.json()["error"]["code"] == "SubscriptionNotFound"
    r = http.arm("GET", events_url(), params={"api-version": "2024-11-30", "$filter": since()})
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidApiVersionParameter"
    r = http.arm("GET", events_url(), params={"api-version": "2015-04-01"}, auth=False)
    assert r.status_code == 401


def test_reset_clears_the_log(now_visible: Simulator, http: Http) -> None:
    put_identity(http, "al-reset-mi")
    assert now_visible.activity_log()
    now_visible.reset()
    assert now_visible.activity_log() == []
