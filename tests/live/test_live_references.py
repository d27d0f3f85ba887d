"""Optional: confirm against a real tenant the simulator assumptions behind plan's live checks
and the role catalogue (``reconciler/sim/README.md``, "Assumptions": A-principal-type,
A-resource-groups, A-missing-organization, A-builtin-catalogue).

Runs only with RECONCILER_LIVE=1 and:
- RECONCILER_LIVE_SUBSCRIPTION: a subscription the signed-in caller can read;
- RECONCILER_LIVE_SCOPE (for the role assignment test only): a resource group id there where
  the caller may write role assignments (the test creates one Reader assignment for a random
  principal id and deletes it again).
Credentials: whatever ``DefaultAzureCredential`` finds (Azure CLI login, environment, ...).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

LIVE = os.environ.get("RECONCILER_LIVE") == "1"
SUBSCRIPTION = os.environ.get("RECONCILER_LIVE_SUBSCRIPTION", "")
SCOPE = os.environ.get("RECONCILER_LIVE_SCOPE", "")
ARM = "https://management.azure.com"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (LIVE and SUBSCRIPTION),
        reason="live Azure test: set RECONCILER_LIVE=1 and RECONCILER_LIVE_SUBSCRIPTION "
        "(no Azure here)",
    ),
]


def _session(scope: str) -> Any:
    import requests
    from azure.identity import DefaultAzureCredential

    session = requests.Session()
    token = DefaultAzureCredential().get_token(scope).token
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def test_resource_group_list_shape_and_a_subscription_that_does_not_exist() -> None:
    arm = _session(f"{ARM}/.default")
    r = arm.get(f"{ARM}/subscriptions/{SUBSCRIPTION}/resourcegroups?api-version=2021-04-01")
    assert r.status_code == 200, r.text
    for group in r.json()["value"]:
        assert {"id", "name", "type", "location", "properties"} <= set(group)
        assert group["type"] == "Microsoft.Resources/resourceGroups"
    missing = arm.get(f"{ARM}/subscriptions/{uuid.uuid4()}/resourcegroups?api-version=2021-04-01")
    # A-resource-groups: the simulator answers 404 SubscriptionNotFound (the tool also reads a
    # 403 as "cannot be read")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "SubscriptionNotFound")


@pytest.mark.skipif(not SCOPE, reason="set RECONCILER_LIVE_SCOPE to a resource group id")
def test_principal_type_creates_an_assignment_for_a_principal_the_directory_lacks() -> None:
    arm = _session(f"{ARM}/.default")
    ghost = str(uuid.uuid4())
    name = str(uuid.uuid4())
    url = f"{ARM}{SCOPE}/providers/Microsoft.Authorization/roleAssignments/{name}"
    role = (
        f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{READER}"
    )
    without = arm.put(
        f"{url}?api-version=2022-04-01",
        json={"properties": {"roleDefinitionId": role, "principalId": ghost}},
    )
    assert (without.status_code, without.json()["error"]["code"]) == (400, "PrincipalNotFound")
    created = arm.put(
        f"{url}?api-version=2022-04-01",
        json={
            "properties": {
                "roleDefinitionId": role,
                "principalId": ghost,
                "principalType": "ServicePrincipal",
            }
        },
    )
    try:
        # A-principal-type: ARM skips the directory look-up and creates it
        assert created.status_code == 201, created.text
        assert created.json()["properties"]["principalType"] == "ServicePrincipal"
    finally:
        arm.delete(f"{url}?api-version=2022-04-01")


def test_committed_builtin_catalogue_matches_the_tenant() -> None:
    arm = _session(f"{ARM}/.default")
    url = (
        f"{ARM}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions"
        "?api-version=2022-04-01&$filter=type%20eq%20'BuiltInRole'"
    )
    live: dict[str, str] = {}
    while url:
        page = arm.get(url).json()
        live.update({d["name"]: d["properties"]["roleName"] for d in page["value"]})
        url = page.get("nextLink")
    data = Path(__file__).resolve().parents[2] / "reconciler/sim/data/azure-builtin-roles.json"
    for role in json.loads(data.read_text())["roles"]:
        if role["id"] not in live:  # not assignable at a subscription (tenant-level roles)
            got = arm.get(
                f"{ARM}/providers/Microsoft.Authorization/roleDefinitions/{role['id']}"
                "?api-version=2022-04-01"
            )
            assert got.status_code == 200, role
            live[role["id"]] = got.json()["properties"]["roleName"]
        # A-builtin-catalogue: the documented name, bar a " (Preview)" suffix the page adds
        assert live.get(role["id"], "").removesuffix(" (Preview)") == role["roleName"].removesuffix(
            " (Preview)"
        ), role


def test_an_organization_that_does_not_exist_answers_404() -> None:
    devops = _session("499b84ac-1321-427f-aa17-267ca6975798/.default")
    org = f"no-such-org-{uuid.uuid4().hex[:12]}"
    r = devops.get(f"https://dev.azure.com/{org}/_apis/connectionData", allow_redirects=False)
    # A-missing-organization: the simulator answers 404 (VS800075); the tool reports it at the
    # organization field
    assert r.status_code == 404, (r.status_code, r.text[:200])
