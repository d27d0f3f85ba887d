"""Optional: confirm against a real organisation the simulator's assumptions about converting a
service connection in place (``reconciler/sim/README.md``, "Converting a connection in place",
C1-C9; evidence in ``docs/research/convert-authentication-scheme.md``). Every test creates its
own throw-away connections named ``reconciler-live-convert-*`` and deletes them (and any
federated credential it wrote) afterwards; nothing existing is converted.

Runs only with RECONCILER_LIVE=1, RECONCILER_LIVE_ORG, RECONCILER_LIVE_PROJECT and
AZURE_DEVOPS_EXT_PAT (a PAT with "Service Connections: read, query and manage"; sent only over
TLS to dev.azure.com). The secret-based connections it creates carry a random GUID as their
"secret" and a random application id: they can never sign in anywhere.

- RECONCILER_LIVE_PROJECT2 (a second project) enables the shared-connection test.
- RECONCILER_LIVE_IDENTITY (the ARM id of a user-assigned managed identity the caller may add
  federated credentials to, with ``DefaultAzureCredential`` credentials for ARM) enables the
  tests that complete a conversion: they add a credential named ``reconciler-live-convert-*``
  to it and delete it again.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from reconciler.federation import entra_federation, is_devops_issuer

LIVE = os.environ.get("RECONCILER_LIVE") == "1"
ORG = os.environ.get("RECONCILER_LIVE_ORG", "")
PROJECT = os.environ.get("RECONCILER_LIVE_PROJECT", "")
PROJECT2 = os.environ.get("RECONCILER_LIVE_PROJECT2", "")
IDENTITY = os.environ.get("RECONCILER_LIVE_IDENTITY", "")
PAT = os.environ.get("AZURE_DEVOPS_EXT_PAT", "")
BASE = f"https://dev.azure.com/{ORG}"
ARM = "https://management.azure.com"
V = {"api-version": "7.1"}
CONVERT = {**V, "operation": "ConvertAuthenticationScheme"}
AUDIENCE = "api://AzureADTokenExchange"

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (LIVE and ORG and PROJECT and PAT),
        reason="live Azure DevOps test: set RECONCILER_LIVE=1, RECONCILER_LIVE_ORG, "
        "RECONCILER_LIVE_PROJECT and AZURE_DEVOPS_EXT_PAT (no Azure DevOps here)",
    ),
]
needs_identity = pytest.mark.skipif(
    not IDENTITY,
    reason="needs RECONCILER_LIVE_IDENTITY (a managed identity the test may add credentials to)",
)


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    token = base64.b64encode(f":{PAT}".encode()).decode()
    session.headers.update({"Authorization": f"Basic {token}", "Accept": "application/json"})
    yield session
    session.close()


@pytest.fixture(scope="module")
def org_id(http: requests.Session) -> str:
    r = http.get(f"{BASE}/_apis/connectionData", params={"api-version": "7.1-preview"}, timeout=30)
    r.raise_for_status()
    return str(r.json()["instanceId"])


def _project_id(http: requests.Session, name: str) -> str:
    r = http.get(f"{BASE}/_apis/projects/{name}", params=V, timeout=30)
    r.raise_for_status()
    return str(r.json()["id"])


class Connections:
    """Creates throw-away connections and deletes every one at the end."""

    def __init__(self, http: requests.Session) -> None:
        self.http = http
        self.made: list[tuple[str, list[str]]] = []

    def create(
        self,
        scheme: str,
        parameters: dict[str, str],
        project_ids: list[str],
    ) -> dict[str, Any]:
        name = f"reconciler-live-convert-{uuid.uuid4().hex[:8]}"
        body = {
            "name": name,
            "type": "azurerm",
            "url": "https://management.azure.com/",
            "owner": "library",
            "authorization": {"scheme": scheme, "parameters": parameters},
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
        r = self.http.post(
            f"{BASE}/_apis/serviceendpoint/endpoints", params=V, json=body, timeout=60
        )
        assert r.status_code == 200, r.text
        created: dict[str, Any] = r.json()
        self.made.append((created["id"], project_ids))
        return created

    def secret_based(self, project_ids: list[str], client_id: str | None = None) -> dict[str, Any]:
        return self.create(
            "ServicePrincipal",
            {
                "serviceprincipalid": client_id or str(uuid.uuid4()),
                "tenantid": str(uuid.uuid4()),
                "authenticationType": "spnKey",
                "serviceprincipalkey": str(uuid.uuid4()),  # not a secret of anything
            },
            project_ids,
        )

    def delete_all(self) -> None:
        # the identity fixture (set up later) removes its credentials first; the service
        # refuses to delete a workload identity connection for a while after that
        for eid, pids in self.made:
            deadline = time.monotonic() + 120
            while True:
                r = self.http.delete(
                    f"{BASE}/_apis/serviceendpoint/endpoints/{eid}",
                    params={**V, "projectIds": ",".join(pids)},
                    timeout=60,
                )
                if r.status_code < 400 or time.monotonic() > deadline:
                    break
                time.sleep(10)


@pytest.fixture
def connections(http: requests.Session) -> Iterator[Connections]:
    made = Connections(http)
    try:
        yield made
    finally:
        made.delete_all()


def _get(http: requests.Session, project: str, eid: str) -> dict[str, Any]:
    r = http.get(f"{BASE}/{project}/_apis/serviceendpoint/endpoints/{eid}", params=V, timeout=30)
    r.raise_for_status()
    got: dict[str, Any] = r.json()
    return got


def _minimal(endpoint: dict[str, Any], scheme: str, **params: str) -> dict[str, Any]:
    authorization: dict[str, Any] = {"scheme": scheme}
    if params:
        authorization["parameters"] = params
    return {
        "id": endpoint["id"],
        "type": "azurerm",
        "authorization": authorization,
        "serviceEndpointProjectReferences": endpoint["serviceEndpointProjectReferences"][:1],
    }


def _convert(
    http: requests.Session, project: str, endpoint: dict[str, Any], body: dict[str, Any]
) -> requests.Response:
    return http.put(
        f"{BASE}/{project}/_apis/serviceendpoint/endpoints/{endpoint['id']}",
        params=CONVERT,
        json=body,
        timeout=120,
    )


def _error(r: requests.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()
    assert {"$id", "message", "typeName", "typeKey", "errorCode", "eventId"} <= set(body), body
    return body


def test_c1_secret_never_returned(http: requests.Session, connections: Connections) -> None:
    created = connections.secret_based([_project_id(http, PROJECT)])
    got = _get(http, PROJECT, created["id"])
    assert got["authorization"]["parameters"].get("serviceprincipalkey") is None


def test_c2_conversion_waits_while_the_identity_cannot_sign_in(
    http: requests.Session, connections: Connections
) -> None:
    # an application id that exists nowhere: the service cannot sign in with the new issuer
    created = connections.secret_based([_project_id(http, PROJECT)])
    r = _convert(http, PROJECT, created, _minimal(created, "WorkloadIdentityFederation"))
    # C2: 202, the connection unchanged but for operationStatus converting_scheme
    assert r.status_code == 202, (r.status_code, r.text)
    got = _get(http, PROJECT, created["id"])
    assert got["authorization"]["scheme"] == "ServicePrincipal"
    assert got["operationStatus"]["statusMessage"] == "converting_scheme", got["operationStatus"]


def test_c3_refused_forms_carry_the_service_error(
    http: requests.Session, connections: Connections
) -> None:
    created = connections.secret_based([_project_id(http, PROJECT)])
    renamed = {**_minimal(created, "WorkloadIdentityFederation"), "name": "other-name"}
    r = _convert(http, PROJECT, created, renamed)
    assert r.status_code == 400, r.text
    assert "Properties cannot be changed during service connection upgrade" in _error(r)["message"]
    r = _convert(http, PROJECT, created, _minimal(created, "UsernamePassword"))
    assert r.status_code == 400, r.text
    assert "neither an upgrade or a downgrade" in _error(r)["message"]
    r = http.put(
        f"{BASE}/_apis/serviceendpoint/endpoints/{created['id']}",
        params={**V, "operation": "Convert"},
        json=_get(http, PROJECT, created["id"]),
        timeout=60,
    )
    assert r.status_code == 400 and _error(r)["typeKey"] == "ServiceEndpointException", r.text


def test_c4_plain_update_does_not_change_the_scheme(
    http: requests.Session, connections: Connections
) -> None:
    # the simulator refuses a scheme change without the operation (a conservative choice; the
    # decompiled Azure DevOps Server 2022 allowed it): this records what the service does
    created = connections.secret_based([_project_id(http, PROJECT)])
    body = _get(http, PROJECT, created["id"])
    body["authorization"] = {
        "scheme": "WorkloadIdentityFederation",
        "parameters": {
            "serviceprincipalid": body["authorization"]["parameters"]["serviceprincipalid"],
            "tenantid": body["authorization"]["parameters"]["tenantid"],
        },
    }
    r = http.put(
        f"{BASE}/_apis/serviceendpoint/endpoints/{created['id']}", params=V, json=body, timeout=60
    )
    assert r.status_code == 400, (r.status_code, r.text)


@pytest.mark.skipif(not PROJECT2, reason="needs RECONCILER_LIVE_PROJECT2 (a second project)")
def test_c5_shared_connection_converted_only_from_its_project(
    http: requests.Session, connections: Connections
) -> None:
    pids = [_project_id(http, PROJECT), _project_id(http, PROJECT2)]
    created = connections.secret_based(pids)
    shared = _get(http, PROJECT2, created["id"])
    body = _minimal(shared, "WorkloadIdentityFederation")
    body["serviceEndpointProjectReferences"] = [
        ref
        for ref in shared["serviceEndpointProjectReferences"]
        if ref["projectReference"]["id"].lower() == pids[1].lower()
    ]
    r = _convert(http, PROJECT2, shared, body)
    assert r.status_code == 400, (r.status_code, r.text)
    assert _get(http, PROJECT, created["id"])["authorization"]["scheme"] == "ServicePrincipal"


def test_c6_create_may_ask_for_the_entra_issuer(
    http: requests.Session, connections: Connections
) -> None:
    created = connections.create(
        "WorkloadIdentityFederation",
        {
            "serviceprincipalid": str(uuid.uuid4()),
            "tenantid": str(uuid.uuid4()),
            "workloadIdentityFederationIssuerType": "EntraID",
        },
        [_project_id(http, PROJECT)],
    )
    params = created["authorization"]["parameters"]
    assert params["workloadIdentityFederationIssuerType"] == "EntraID"
    assert params["workloadIdentityFederationIssuer"].startswith(
        "https://login.microsoftonline.com/"
    )


# --- completing a conversion: needs a managed identity to write a credential on ------------


class Identity:
    def __init__(self) -> None:
        from azure.identity import DefaultAzureCredential

        self.session = requests.Session()
        token = DefaultAzureCredential().get_token(f"{ARM}/.default").token
        self.session.headers["Authorization"] = f"Bearer {token}"
        r = self.session.get(f"{ARM}{IDENTITY}", params={"api-version": "2023-01-31"}, timeout=30)
        r.raise_for_status()
        self.client_id = str(r.json()["properties"]["clientId"])
        self.tenant_id = str(r.json()["properties"]["tenantId"])
        self.written: list[str] = []

    def add(self, issuer: str, subject: str) -> None:
        name = f"reconciler-live-convert-{uuid.uuid4().hex[:8]}"
        r = self.session.put(
            f"{ARM}{IDENTITY}/federatedIdentityCredentials/{name}",
            params={"api-version": "2023-01-31"},
            json={"properties": {"issuer": issuer, "subject": subject, "audiences": [AUDIENCE]}},
            timeout=60,
        )
        assert r.status_code in (200, 201), r.text
        self.written.append(name)

    def remove_all(self) -> None:
        for name in self.written:
            self.session.delete(
                f"{ARM}{IDENTITY}/federatedIdentityCredentials/{name}",
                params={"api-version": "2023-01-31"},
                timeout=60,
            )
        self.session.close()


@pytest.fixture
def identity() -> Iterator[Identity]:
    handle = Identity()
    try:
        yield handle
    finally:
        handle.remove_all()


def _until_done(
    http: requests.Session, endpoint: dict[str, Any], body: dict[str, Any]
) -> requests.Response:
    """Entra takes a while to honour a new credential: repeat the conversion while the service
    answers 202 (C2), for up to five minutes."""
    deadline = time.monotonic() + 300
    while True:
        r = _convert(http, PROJECT, endpoint, body)
        if r.status_code != 202 or time.monotonic() > deadline:
            return r
        time.sleep(15)


def _permissions(http: requests.Session, eid: str) -> dict[str, Any]:
    r = http.get(
        f"{BASE}/{PROJECT}/_apis/pipelines/pipelinePermissions/endpoint/{eid}",
        params={"api-version": "7.1-preview.1"},
        timeout=30,
    )
    r.raise_for_status()
    return {"all": bool((r.json().get("allPipelines") or {}).get("authorized"))}


@needs_identity
def test_c7_secret_to_workload_identity_with_the_credential_first(
    http: requests.Session, connections: Connections, identity: Identity, org_id: str
) -> None:
    pid = _project_id(http, PROJECT)
    created = connections.secret_based([pid], client_id=identity.client_id)
    http.patch(
        f"{BASE}/{PROJECT}/_apis/pipelines/pipelinePermissions/endpoint/{created['id']}",
        params={"api-version": "7.1-preview.1"},
        json={"allPipelines": {"authorized": True}},
        timeout=30,
    ).raise_for_status()
    issuer, subject = entra_federation(identity.tenant_id, org_id, created["id"])
    identity.add(issuer, subject)  # C8: the Entra subject of an existing connection is known
    started = time.time()
    r = _until_done(http, created, _minimal(created, "WorkloadIdentityFederation"))
    assert r.status_code == 200, (r.status_code, r.text)
    got = r.json()
    params = got["authorization"]["parameters"]
    assert got["id"] == created["id"]
    assert params["workloadIdentityFederationIssuer"] == issuer
    assert params["workloadIdentityFederationSubject"] == subject
    assert "serviceprincipalkey" not in params or params["serviceprincipalkey"] is None
    deadline = datetime.fromisoformat(got["data"]["revertSchemeDeadline"][:26]).replace(tzinfo=UTC)
    assert abs(deadline.timestamp() - (started + 7 * 24 * 3600)) < 3600
    assert _permissions(http, created["id"]) == {"all": True}
    # C9: a revert before the deadline gives the secret-based connection back
    back = _convert(http, PROJECT, got, _minimal(got, "ServicePrincipal"))
    assert back.status_code == 200, back.text
    assert back.json()["authorization"]["scheme"] == "ServicePrincipal"


@needs_identity
def test_c8_issuer_switch_in_place(
    http: requests.Session, connections: Connections, identity: Identity, org_id: str
) -> None:
    created = connections.create(
        "WorkloadIdentityFederation",
        {
            "serviceprincipalid": identity.client_id,
            "tenantid": identity.tenant_id,
            "workloadIdentityFederationIssuerType": "AzureDevOps",
        },
        [_project_id(http, PROJECT)],
    )
    params = created["authorization"]["parameters"]
    if not is_devops_issuer(params.get("workloadIdentityFederationIssuer")):
        pytest.skip(
            "the organisation gives new connections the Entra issuer, so no throw-away "
            "connection on the Azure DevOps issuer can be made"
        )
    identity.add(
        params["workloadIdentityFederationIssuer"], params["workloadIdentityFederationSubject"]
    )
    issuer, subject = entra_federation(identity.tenant_id, org_id, created["id"])
    identity.add(issuer, subject)
    body = _minimal(
        created, "WorkloadIdentityFederation", workloadIdentityFederationIssuerType="EntraID"
    )
    r = _until_done(http, created, body)
    assert r.status_code == 200, (r.status_code, r.text)
    after = r.json()["authorization"]["parameters"]
    assert r.json()["id"] == created["id"]
    assert after["workloadIdentityFederationIssuer"] == issuer
    assert after["workloadIdentityFederationSubject"] == subject
    assert after["workloadIdentityFederationIssuerType"] == "EntraID"
