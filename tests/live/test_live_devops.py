"""Optional: confirm the simulator's Azure DevOps assumptions (sim README, "Azure DevOps
behaviours that working clients rely on") against a real organisation. Writes: it creates,
updates and deletes throw-away service connections named ``reconciler-live-*``.

Runs only with RECONCILER_LIVE=1, RECONCILER_LIVE_ORG (organisation name),
RECONCILER_LIVE_PROJECT (a project the caller may create connections in) and
AZURE_DEVOPS_EXT_PAT (a PAT with "Service Connections: read, query and manage"); the PAT is
sent only over TLS to dev.azure.com. RECONCILER_LIVE_PROJECT2 (a second project) enables the
sharing test; RECONCILER_LIVE_LEGACY_ENDPOINT (the id of a legacy-issuer connection in
RECONCILER_LIVE_PROJECT that may be renamed and renamed back) the legacy subject test.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

LIVE = os.environ.get("RECONCILER_LIVE") == "1"
ORG = os.environ.get("RECONCILER_LIVE_ORG", "")
PROJECT = os.environ.get("RECONCILER_LIVE_PROJECT", "")
PROJECT2 = os.environ.get("RECONCILER_LIVE_PROJECT2", "")
LEGACY = os.environ.get("RECONCILER_LIVE_LEGACY_ENDPOINT", "")
PAT = os.environ.get("AZURE_DEVOPS_EXT_PAT", "")
BASE = f"https://dev.azure.com/{ORG}"
V = {"api-version": "7.1"}
SERVER_FIELDS = ("createdBy", "isReady", "isShared", "operationStatus")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (LIVE and ORG and PROJECT and PAT),
        reason="live Azure DevOps test: set RECONCILER_LIVE=1, RECONCILER_LIVE_ORG, "
        "RECONCILER_LIVE_PROJECT and AZURE_DEVOPS_EXT_PAT (no Azure DevOps here)",
    ),
]


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    token = base64.b64encode(f":{PAT}".encode()).decode()
    session.headers.update({"Authorization": f"Basic {token}", "Accept": "application/json"})
    yield session
    session.close()


def _projects(http: requests.Session) -> dict[str, str]:
    r = http.get(f"{BASE}/_apis/projects", params=V, timeout=30)
    r.raise_for_status()
    return {p["name"]: p["id"] for p in r.json()["value"]}


def _get(http: requests.Session, project: str, eid: str) -> Any:
    r = http.get(f"{BASE}/{project}/_apis/serviceendpoint/endpoints/{eid}", params=V, timeout=30)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json() if r.content else None


def _create(http: requests.Session, project_ids: list[str]) -> dict[str, Any]:
    name = f"reconciler-live-{uuid.uuid4().hex[:8]}"
    body = {
        "name": name,
        "type": "azurerm",
        "url": "https://management.azure.com/",
        "owner": "library",
        "authorization": {
            "scheme": "WorkloadIdentityFederation",
            "parameters": {"serviceprincipalid": str(uuid.uuid4()), "tenantid": str(uuid.uuid4())},
        },
        "data": {
            "subscriptionId": str(uuid.uuid4()),
            "subscriptionName": "reconciler live test",
            "environment": "AzureCloud",
            "scopeLevel": "Subscription",
            "creationMode": "Manual",
        },
        "serviceEndpointProjectReferences": [
            {"projectReference": {"id": pid}, "name": name} for pid in project_ids
        ],
    }
    r = http.post(f"{BASE}/_apis/serviceendpoint/endpoints", params=V, json=body, timeout=60)
    r.raise_for_status()
    created: dict[str, Any] = r.json()
    return created


def _delete(http: requests.Session, eid: str, project_ids: list[str]) -> None:
    http.delete(
        f"{BASE}/_apis/serviceendpoint/endpoints/{eid}",
        params={**V, "projectIds": ",".join(project_ids)},
        timeout=60,
    )


def _gone(answer: Any) -> bool:
    return not isinstance(answer, dict) or not answer.get("id") or not answer.get("authorization")


def test_delete_settles_to_gone(http: requests.Session) -> None:
    pid = _projects(http)[PROJECT]
    created = _create(http, [pid])
    _delete(http, created["id"], [pid])
    shapes: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answer = _get(http, PROJECT, created["id"])
        shapes.append("gone" if answer is None else "partial" if _gone(answer) else "whole")
        if _gone(answer):
            break
        time.sleep(2)
    # what the simulator's delete-lag models: whole, then partial or null, then gone
    assert shapes[-1] in ("gone", "partial"), shapes
    assert shapes == sorted(shapes, key=["whole", "partial", "gone"].index), shapes


def test_update_with_managed_fields_only_keeps_issuer_and_subject(
    http: requests.Session,
) -> None:
    pid = _projects(http)[PROJECT]
    created = _create(http, [pid])
    try:
        params = created["authorization"]["parameters"]
        body = {k: v for k, v in created.items() if k not in SERVER_FIELDS}
        body["description"] = "updated by reconciler live test"
        body["authorization"] = {
            "scheme": "WorkloadIdentityFederation",
            "parameters": {
                k: v for k, v in params.items() if not k.startswith("workloadIdentityFederation")
            },
        }
        r = http.put(
            f"{BASE}/_apis/serviceendpoint/endpoints/{created['id']}",
            params=V,
            json=body,
            timeout=60,
        )
        r.raise_for_status()
        got = r.json()["authorization"]["parameters"]
        for key in ("workloadIdentityFederationIssuer", "workloadIdentityFederationSubject"):
            assert got[key] == params[key]
    finally:
        _delete(http, created["id"], [pid])


@pytest.mark.skipif(not PROJECT2, reason="needs RECONCILER_LIVE_PROJECT2 (a second project)")
def test_owning_reference_found_by_project_id(http: requests.Session) -> None:
    ids = _projects(http)
    pids = [ids[PROJECT], ids[PROJECT2]]
    created = _create(http, pids)
    try:
        refs = created["serviceEndpointProjectReferences"]
        by_id = {r["projectReference"]["id"].lower(): r for r in refs}
        # every project has its reference, wherever the service lists it
        assert set(by_id) == {p.lower() for p in pids}
        for project in (PROJECT, PROJECT2):
            got = _get(http, project, created["id"])
            listed = {
                r["projectReference"]["id"].lower() for r in got["serviceEndpointProjectReferences"]
            }
            assert listed == set(by_id)
    finally:
        _delete(http, created["id"], pids)


@pytest.mark.skipif(not LEGACY, reason="needs RECONCILER_LIVE_LEGACY_ENDPOINT (legacy issuer)")
def test_legacy_subject_follows_a_rename(http: requests.Session) -> None:
    current = _get(http, PROJECT, LEGACY)
    assert current is not None
    old_name = current["name"]
    body = {k: v for k, v in current.items() if k not in SERVER_FIELDS}
    params = current["authorization"]["parameters"]
    body["authorization"] = {
        "scheme": current["authorization"]["scheme"],
        "parameters": {
            k: v for k, v in params.items() if not k.startswith("workloadIdentityFederation")
        },
    }
    url = f"{BASE}/_apis/serviceendpoint/endpoints/{LEGACY}"
    try:
        renamed = http.put(url, params=V, json={**body, "name": f"{old_name}-renamed"}, timeout=60)
        renamed.raise_for_status()
        subject = renamed.json()["authorization"]["parameters"]["workloadIdentityFederationSubject"]
        assert subject == f"sc://{ORG}/{PROJECT}/{old_name}-renamed"
    finally:
        http.put(url, params=V, json={**body, "name": old_name}, timeout=60)
