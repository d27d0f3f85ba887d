"""The lean transport: same pools, TLS and proxy choices as a requests session, less overhead."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import requests

from reconciler.errors import PermanentError, TransientError
from reconciler.providers.http import make_session
from reconciler.providers.rest import Transport
from reconciler.sim.server import Simulator

SANDBOX = "11111111-1111-1111-1111-111111111111"
ARM_SCOPE = "https://management.azure.com/.default"


def _token(sim: Simulator) -> str:
    c = sim.connection
    response = requests.post(
        f"https://{c['authority']}/{c['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": c["client_id"],
            "client_secret": c["client_secret"],
            "scope": ARM_SCOPE,
        },
        verify=c["ca_bundle"],
        timeout=30,
    )
    return str(response.json()["access_token"])


def _identities_url(sim: Simulator) -> str:
    return (
        f"{sim.arm_url}/subscriptions/{SANDBOX}/providers/Microsoft.ManagedIdentity/"
        "userAssignedIdentities?api-version=2024-11-30"
    )


def test_reads_json_over_the_sessions_keep_alive_pool(sim: Simulator) -> None:
    session = make_session(workers=4, verify=sim.connection["ca_bundle"])
    transport = Transport(session, verify=sim.connection["ca_bundle"])
    headers = {"Authorization": f"Bearer {_token(sim)}"}
    before = sim.stats()["connections"]
    for _ in range(5):
        response = transport.request("GET", _identities_url(sim), headers=headers, what="listing")
        assert response.status == 200
        names = {i["name"] for i in response.json()["value"]}
        assert {"shared-build-mi", "data-team-mi"} <= names
        assert response.headers["content-type"].startswith("application/json")
    # one TLS connection for all five (the token request above used its own)
    assert sim.stats()["connections"] - before == 1
    log = sim.request_log(op="UserAssignedIdentities_ListBySubscription")
    assert len(log) == 5


def test_error_statuses_are_returned_not_raised(sim: Simulator) -> None:
    transport = Transport(make_session(workers=1, verify=True), verify=sim.connection["ca_bundle"])
    response = transport.request("GET", _identities_url(sim), what="listing")
    assert response.status == 401
    assert "error" in response.json()


def test_untrusted_certificate_is_a_permanent_error(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a CA bundle that does not hold the simulator's CA
    other = tmp_path / "other.pem"
    import trustme

    trustme.CA().cert_pem.write_to_path(str(other))
    transport = Transport(make_session(workers=1, verify=str(other)), verify=str(other))
    with pytest.raises(PermanentError) as caught:
        transport.request("GET", _identities_url(sim), what="listing identities")
    assert caught.value.code == "TLSError"
    assert "listing identities" in str(caught.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connection_is_transient() -> None:
    transport = Transport(make_session(workers=1, verify=True), verify=True)
    with pytest.raises(TransientError) as caught:
        transport.request("GET", f"https://127.0.0.1:{_closed_port()}/x", what="reading x")
    assert caught.value.code == "ConnectionError"


def test_proxies_and_no_proxy_come_from_the_environment_like_requests(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = sim.connection["ca_bundle"]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    through_proxy = Transport(make_session(workers=1, verify=ca), verify=ca)
    with pytest.raises(TransientError):
        through_proxy.request("GET", _identities_url(sim), what="listing")

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = Transport(make_session(workers=1, verify=ca), verify=ca)
    assert direct.request("GET", _identities_url(sim), what="listing").status == 401


def test_body_is_sent_as_json(sim: Simulator) -> None:
    ca = sim.connection["ca_bundle"]
    transport = Transport(make_session(workers=1, verify=ca), verify=ca)
    url = (
        f"{sim.arm_url}/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/rest-mi?api-version=2024-11-30"
    )
    body = json.dumps({"location": "westeurope", "tags": {"a": "b"}}).encode()
    headers = {"Authorization": f"Bearer {_token(sim)}"}
    response = transport.request("PUT", url, headers=headers, body=body, what="writing")
    assert response.status == 201
    assert response.json()["tags"] == {"a": "b"}
