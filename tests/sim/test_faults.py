"""Injected faults and the throttle model, seen from real clients over HTTPS."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from reconciler.sim.server import Simulator

from .clients import SANDBOX, Http, arm_kwargs

MI = f"/subscriptions/{SANDBOX}/resourceGroups/identities-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
V = "?api-version=2024-11-30"
DEFS = f"/subscriptions/{SANDBOX}/providers/Microsoft.Authorization/roleDefinitions?api-version=2022-04-01"


def test_latency_is_applied_per_request(sim: Simulator, http: Http) -> None:
    http.arm("GET", f"{MI}/shared-build-mi{V}")  # warm the token cache
    sim.update_faults(latency_ms=40)
    started = time.perf_counter()
    assert http.arm("GET", f"{MI}/shared-build-mi{V}").status_code == 200
    assert time.perf_counter() - started >= 0.04
    assert sim.request_log()[-1]["duration_ms"] >= 40


def test_injected_429_carries_retry_after(sim: Simulator, http: Http) -> None:
    sim.set_faults(["429:1"], retry_after_ms=1500)
    r = http.arm("GET", f"{MI}/shared-build-mi{V}")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "2" and r.headers["x-ms-retry-after-ms"] == "1500"
    assert r.json()["error"]["code"] == "SubscriptionRequestsThrottled"
    a = http.ado("GET", "/contoso/_apis/projects?api-version=7.1")
    assert (
        a.status_code == 429
        and a.json()["message"].startswith("TF400733")
        and a.headers["Retry-After"] == "2"
    )
    assert sim.stats()["throttled_total"] == 2
    assert sim.request_log()[-1]["fault"] == "429"


def test_the_sdk_retries_an_injected_429(sim: Simulator, credential: Any) -> None:
    from azure.mgmt.msi import ManagedServiceIdentityClient

    kwargs = {**arm_kwargs(sim), "retry_total": 3}
    client = ManagedServiceIdentityClient(credential, SANDBOX, **kwargs)
    sim.set_faults(
        rate_429=1.0, max_faults=1, retry_after_ms=10, ops=("UserAssignedIdentities_Get",)
    )
    assert (
        client.user_assigned_identities.get("identities-rg", "shared-build-mi").name
        == "shared-build-mi"
    )
    assert [e["status"] for e in sim.request_log(op="UserAssignedIdentities_Get")] == [429, 200]


def test_injected_5xx(sim: Simulator, http: Http) -> None:
    sim.set_faults(rate_5xx=1.0)
    r = http.arm("GET", f"{MI}/shared-build-mi{V}")
    assert r.status_code == 500 and r.json()["error"]["code"] == "InternalServerError"
    a = http.ado("GET", "/contoso/_apis/projects?api-version=7.1")
    assert a.status_code == 500 and "typeKey" in a.json()


def test_dropped_connections(sim: Simulator, http: Http) -> None:
    http.token("https://management.azure.com/.default")
    sim.set_faults(drop=1.0, max_faults=1)
    with pytest.raises(requests.ConnectionError):
        http.arm("GET", f"{MI}/shared-build-mi{V}")
    assert http.arm("GET", f"{MI}/shared-build-mi{V}").status_code == 200
    assert [e["status"] for e in sim.request_log(op="UserAssignedIdentities_Get")] == [0, 200]


def test_faults_can_target_operations(sim: Simulator, http: Http) -> None:
    sim.set_faults(rate_429=1.0, ops=("UserAssignedIdentities_Get",))
    assert http.arm("GET", f"{MI}{V}").status_code == 200
    assert http.arm("GET", f"{MI}/shared-build-mi{V}").status_code == 429


def test_random_faults_are_deterministic_under_a_seed(sim: Simulator, http: Http) -> None:
    def run() -> list[int]:
        sim.set_faults(rate_429=0.5, seed=11)
        return [http.arm("GET", f"{MI}/shared-build-mi{V}").status_code for _ in range(12)]

    first = run()
    assert 200 in first and 429 in first
    assert run() == first


def test_read_after_write_lag(sim: Simulator, http: Http, msi: Any) -> None:
    sim.update_faults(lag_ms=150)
    msi.user_assigned_identities.create_or_update(
        "identities-rg", "laggy-mi", {"location": "westeurope"}
    )
    assert http.arm("GET", f"{MI}/laggy-mi{V}").status_code == 404
    time.sleep(0.16)
    assert http.arm("GET", f"{MI}/laggy-mi{V}").status_code == 200


def test_arm_throttle_model_over_https(sim: Simulator, http: Http) -> None:
    http.arm("GET", DEFS)  # token first
    sim.set_faults(["throttle:0.02"])  # reads: a bucket of 5 refilling 0.5/s
    statuses = [http.arm("GET", DEFS + "&$filter=roleName eq 'Reader'") for _ in range(6)]
    assert [r.status_code for r in statuses] == [200] * 5 + [429]
    assert [r.headers["x-ms-ratelimit-remaining-subscription-reads"] for r in statuses[:5]] == [
        "4",
        "3",
        "2",
        "1",
        "0",
    ]
    denied = statuses[-1]
    assert denied.json()["error"]["code"] == "SubscriptionRequestsThrottled"
    assert (
        int(denied.headers["Retry-After"]) >= 1
        and 1000 <= int(denied.headers["x-ms-retry-after-ms"]) <= 2000
    )
    assert sim.stats()["throttled"] == {"RoleDefinitions_List": 1}


def test_managed_identity_throttle_over_https(sim: Simulator, http: Http) -> None:
    http.arm("GET", DEFS)
    sim.set_faults(["throttle"])
    assert http.arm("GET", f"{MI}/shared-build-mi{V}").status_code == 200
    again = http.arm("GET", f"{MI}/shared-build-mi{V}")  # 0.5 per second per identity
    assert again.status_code == 429 and again.json()["error"]["code"] == "TooManyRequests"
    assert http.arm("GET", f"{MI}/data-team-mi{V}").status_code == 200


def test_devops_throttle_over_https(sim: Simulator, http: Http) -> None:
    http.ado("GET", "/contoso/_apis/projects?api-version=7.1")
    sim.set_faults(["throttle:0.01"], ado_request_cost=1.0, ado_max_delay_ms=20)
    statuses = [http.ado("GET", "/contoso/_apis/projects?api-version=7.1") for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 200, 429]
    assert "X-RateLimit-Delay" in statuses[2].headers
    assert statuses[-1].json()["message"].startswith("TF400733")
    assert {
        "Retry-After",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    } <= set(statuses[-1].headers)


def test_throttle_is_off_by_default(sim: Simulator, http: Http) -> None:
    assert all(http.arm("GET", f"{MI}/shared-build-mi{V}").status_code == 200 for _ in range(5))


def test_jitter_is_bounded_and_deterministic(sim: Simulator) -> None:
    from reconciler.sim.protocol import Request

    faults = sim.set_faults(jitter_ms=30, seed=5)

    def delays() -> list[float]:
        sim.app.dice.reset()
        return [sim.app._delay(Request.parse("GET", "/x", {}, b"", ""), faults) for _ in range(6)]

    first = delays()
    assert first == delays()
    assert all(0 <= d <= 0.03 for d in first) and len(set(first)) > 1
