"""Azure Resource Graph and the Azure DevOps accounts host, as the simulator serves them: the
query shapes the tool sends are answered, every other query is refused with the service's
error body, never answered empty."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.sim.server import Simulator

from .clients import DEVOPS_SCOPE, PRODUCTION, SANDBOX, Http

GRAPH = "/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01"
CONTOSO_ID = "0c7a5f0e-8d8b-4f7e-9a53-2f0b1f6c9d21"
OWNED_MI = (
    "resources | where type =~ 'microsoft.managedidentity/userassignedidentities' "
    "| where tags['reconciler-owner'] =~ {} | project id, subscriptionId, tags"
)
OWNED_RA = (
    "authorizationresources | where type =~ 'microsoft.authorization/roleassignments' "
    "| where properties.description endswith {} "
    "| project id, subscriptionId, scope = tostring(properties.scope)"
)


def _seed(sim: Simulator, identities: list[dict[str, Any]], **extra: Any) -> None:
    seed = sim.state()
    seed["identities"] = identities
    seed["roleAssignments"] = extra.get("roleAssignments", [])
    sim.reset(seed)


def _mi(name: str, sub: str, rg: str, owner: str | None) -> dict[str, Any]:
    tags = {"reconciler-owner": owner} if owner is not None else {}
    return {"subscription": sub, "resourceGroup": rg, "name": name, "tags": tags}


def _query(http: Http, query: str, **body: Any) -> Any:
    r = http.arm("POST", GRAPH, json={"query": query, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_owned_identities_across_subscriptions_paged(sim: Simulator, http: Http) -> None:
    _seed(
        sim,
        [_mi(f"mi-{n}", SANDBOX, "identities-rg", "team") for n in range(3)]
        + [_mi("far-mi", PRODUCTION, "identities-prod-rg", "TEAM")]  # =~ ignores case
        + [
            _mi("other-mi", SANDBOX, "identities-rg", "other"),
            _mi("bare", SANDBOX, "identities-rg", None),
        ],
    )
    query = OWNED_MI.format("'team'")
    first = _query(http, query, options={"$top": 3, "resultFormat": "objectArray"})
    assert first["totalRecords"] == 4 and first["count"] == 3
    assert first["resultTruncated"] == "false" and "$skipToken" in first
    second = _query(http, query, options={"$top": 3, "$skipToken": first["$skipToken"]})
    assert "$skipToken" not in second
    rows = first["data"] + second["data"]
    assert {r["id"].rsplit("/", 1)[-1] for r in rows} == {"mi-0", "mi-1", "mi-2", "far-mi"}
    assert {r["subscriptionId"] for r in rows} == {SANDBOX, PRODUCTION}

    # subscriptions given: only those are searched
    only = _query(http, query, subscriptions=[PRODUCTION])
    assert [r["id"].rsplit("/", 1)[-1] for r in only["data"]] == ["far-mi"]


def test_escaped_literal_matches_exactly(sim: Simulator, http: Http) -> None:
    _seed(
        sim,
        [
            _mi("quoted", SANDBOX, "identities-rg", "it's"),
            _mi("x", SANDBOX, "identities-rg", "its"),
        ],
    )
    rows = _query(http, OWNED_MI.format("'it\\'s'"))["data"]
    assert [r["id"].rsplit("/", 1)[-1] for r in rows] == ["quoted"]


def test_owned_role_assignments_at_subscription_and_management_group(
    sim: Simulator, http: Http
) -> None:
    ident = f"{SANDBOX}/identities-rg/mi-0"
    _seed(
        sim,
        [_mi("mi-0", SANDBOX, "identities-rg", "team")],
        roleAssignments=[
            {
                "identity": ident,
                "scope": f"/subscriptions/{PRODUCTION}",
                "role": "Reader",
                "description": "reads prod [reconciler-owner: team]",
            },
            {
                "identity": ident,
                "scope": "/providers/Microsoft.Management/managementGroups/contoso-root",
                "role": "Reader",
                "description": "[reconciler-owner: team]",
            },
            {
                "identity": ident,
                "scope": f"/subscriptions/{SANDBOX}",
                "role": "Reader",
                "description": "[reconciler-owner: someone-else]",
            },
        ],
    )
    rows = _query(http, OWNED_RA.format("'[reconciler-owner: team]'"))["data"]
    assert sorted(r["scope"] for r in rows) == [
        "/providers/Microsoft.Management/managementGroups/contoso-root",
        f"/subscriptions/{PRODUCTION}",
    ]
    assert {r["subscriptionId"] for r in rows} == {"", PRODUCTION}


@pytest.mark.parametrize(
    "query",
    [
        "resources | project id",
        "resources | where type =~ 'microsoft.managedidentity/userassignedidentities'",
        OWNED_MI.format("'team'") + " | limit 1",
        OWNED_MI.format("'unterminated"),
        "",
    ],
)
def test_any_other_query_is_refused_with_the_service_error_body(http: Http, query: str) -> None:
    r = http.arm("POST", GRAPH, json={"query": query})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "BadRequest"
    assert error["message"].startswith("Please provide below info when asking for support:")
    assert error["details"][0]["code"] == "InvalidQuery"
    assert error["details"][0]["message"].startswith("Query is invalid.")


def test_graph_needs_a_token_and_an_api_version(http: Http) -> None:
    assert http.arm("POST", GRAPH, json={"query": "x"}, auth=False).status_code == 401
    r = http.arm("POST", "/providers/Microsoft.ResourceGraph/resources", json={"query": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"


def _vssps(http: Http, path: str, **params: str) -> Any:
    return http.session.get(
        f"{http.sim.vssps_url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {http.token(DEVOPS_SCOPE)}"},
    )


def test_profile_and_member_organisations(sim: Simulator, http: Http) -> None:
    refused = _vssps(http, "/_apis/profile/profiles/me", **{"api-version": "7.1"})
    assert refused.status_code == 400  # the profile resource is preview-only
    profile = _vssps(http, "/_apis/profile/profiles/me", **{"api-version": "7.1-preview.3"})
    assert profile.status_code == 200
    member = profile.json()["id"]
    accounts = _vssps(http, "/_apis/accounts", memberId=member, **{"api-version": "7.1"}).json()
    by_name = {a["accountName"]: a["accountId"] for a in accounts["value"]}
    assert by_name["contoso"] == CONTOSO_ID and accounts["count"] == len(by_name)
    # someone else's member id lists nothing; no id at all is an error
    other = _vssps(
        http,
        "/_apis/accounts",
        memberId="00000000-0000-0000-0000-000000000001",
        **{"api-version": "7.1"},
    ).json()
    assert other == {"count": 0, "value": []}
    assert _vssps(http, "/_apis/accounts", **{"api-version": "7.1"}).status_code == 400
