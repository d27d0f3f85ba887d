"""The lean transport: same pools, TLS and proxy choices as a requests session, less overhead."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from reconciler.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from reconciler.providers.arm import CONCURRENT_FIC_WRITES, response_error
from reconciler.providers.http import make_session
from reconciler.providers.rest import Response, Transport
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


def test_refused_connection_names_the_url_and_is_retried_once_only() -> None:
    transport = Transport(make_session(workers=1, verify=True), verify=True, service="ARM")
    port = _closed_port()
    with pytest.raises(TransientError) as caught:
        transport.request("GET", f"https://127.0.0.1:{port}/x?token=secret", what="reading x")
    error = caught.value
    assert error.code == "ServiceUnreachable" and error.attempts == 2
    assert error.request == f"GET https://127.0.0.1:{port}/x"
    assert str(error) == (
        f"cannot reach ARM at GET https://127.0.0.1:{port}/x while reading x: "
        "connection refused (nothing listens there)"
    )
    assert "secret" not in str(error)


def test_unknown_host_is_retried_once_only() -> None:
    transport = Transport(make_session(workers=1, verify=True), verify=True, service="ARM")
    with pytest.raises(TransientError) as caught:
        transport.request("GET", "https://no-such-host.invalid/x", what="reading x")
    assert caught.value.code == "ServiceUnreachable" and caught.value.attempts == 2
    assert "the host name does not resolve" in str(caught.value)


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


# -- ARM reads over the transport -------------------------------------------------------------


def _response(status: int, body: object, **headers: str) -> Response:
    data = json.dumps(body).encode() if body is not None else b""
    return Response(status, {"Content-Type": "application/json", **headers}, data)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "InvalidAuthenticationToken", AuthError),
        (404, "ResourceNotFound", NotFoundError),
        (409, "RoleAssignmentExists", ConflictError),
        (409, CONCURRENT_FIC_WRITES, TransientError),
        (429, "SubscriptionRequestsThrottled", TransientError),
        (503, "ServiceUnavailable", TransientError),
        (400, "InvalidApiVersionParameter", PermanentError),
        (403, "AuthorizationFailed", PermanentError),
    ],
)
def test_arm_error_answers_map_like_the_sdks_exceptions(
    status: int, code: str, expected: type[Exception]
) -> None:
    response = _response(status, {"error": {"code": code, "message": "the message"}})
    from_rest = response_error(response, "reading x")
    assert type(from_rest) is expected
    assert from_rest.code == code
    assert "the message" in str(from_rest)


def test_throttled_answer_carries_the_servers_delay() -> None:
    error = response_error(
        _response(
            429, {"error": {"code": "TooManyRequests", "message": "m"}}, **{"Retry-After": "7"}
        ),
        "listing",
    )
    assert isinstance(error, TransientError)
    assert error.delay == 7.0


def test_error_answer_without_json_still_says_what_failed() -> None:
    error = response_error(Response(502, {}, b"<html>bad gateway</html>"), "listing identities")
    assert isinstance(error, TransientError)
    assert "listing identities" in str(error)


def test_plan_reads_need_no_management_client(sim: Simulator, tmp_path: Path) -> None:
    """Every read a plan makes goes over the transport: the management clients (slow to
    import, slow per call) are not even imported."""
    probe = f"""
import sys
from pathlib import Path
from reconciler.providers import connect
from reconciler.providers.target import load_target
arm = connect(load_target(Path({str(sim.connection_file)!r}))).arm
sub = {SANDBOX!r}
assert {{i["name"] for i in arm.list_identities(sub)}} >= {{"shared-build-mi", "data-team-mi"}}
assert arm.list_identities(sub, "identities-rg")
assert arm.list_credentials(sub, "identities-rg", "data-team-mi")[0]["name"] == "github-data-main"
assert arm.get_identity(sub, "identities-rg", "data-team-mi")["name"] == "data-team-mi"
assert arm.get_credential(sub, "identities-rg", "data-team-mi", "github-data-main")
assigned = arm.list_role_assignments(sub)
assert assigned
assert arm.get_role_assignment(assigned[0]["properties"]["scope"], assigned[0]["name"])
assert arm.list_role_assignments_for_scope("/subscriptions/" + sub, at_scope=True)
assert any(d["properties"]["roleName"] == "Reader" for d in arm.list_role_definitions("/subscriptions/" + sub))
print(sorted(m for m in sys.modules if m.startswith("azure.mgmt")))
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
