"""Throttle models with a fake clock: the documented numbers, scaling, thread safety."""

from __future__ import annotations

import threading

import pytest

from reconciler.sim.faults import FaultDice, Faults, make_faults, parse_spec
from reconciler.sim.throttle import ThrottleModel


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_arm_read_bucket_250_refilling_25_per_second() -> None:
    clock = Clock()
    model = ThrottleModel(clock=clock)
    for n in range(250):
        verdict = model.arm("reads", "sub", "me", "tenant")
        assert verdict.ok
        assert verdict.headers["x-ms-ratelimit-remaining-subscription-reads"] == str(249 - n)
    denied = model.arm("reads", "sub", "me", "tenant")
    assert not denied.ok and denied.code == "SubscriptionRequestsThrottled"
    assert denied.retry_after_s == pytest.approx(1 / 25)
    assert "Number of 'read' requests for subscription 'sub' actor 'me' exceeded" in denied.message
    clock.now += 1 / 25
    assert model.arm("reads", "sub", "me", "tenant").ok
    assert model.arm("reads", "sub", "someone-else", "tenant").ok  # per principal


@pytest.mark.parametrize(
    ("op_class", "capacity", "rate"), [("writes", 200, 10), ("deletes", 200, 10)]
)
def test_arm_write_and_delete_buckets(op_class: str, capacity: int, rate: int) -> None:
    clock = Clock()
    model = ThrottleModel(clock=clock)
    assert all(model.arm(op_class, "sub", "me", "t").ok for _ in range(capacity))
    denied = model.arm(op_class, "sub", "me", "t")
    assert not denied.ok and denied.retry_after_s == pytest.approx(1 / rate)


def test_subscription_wide_bucket_is_15_times_larger() -> None:
    model = ThrottleModel(clock=Clock())
    granted = sum(model.arm("reads", "sub", f"p{n}", "t").ok for n in range(16) for _ in range(250))
    assert granted == 15 * 250
    assert model.arm("reads", "other-sub", "p0", "t").ok


def test_tenant_level_requests_use_tenant_buckets() -> None:
    model = ThrottleModel(clock=Clock())
    verdict = model.arm("reads", None, "me", "t")
    assert "x-ms-ratelimit-remaining-tenant-reads" in verdict.headers
    assert all(model.arm("reads", None, "me", "t").ok for _ in range(249))
    assert model.arm("reads", None, "me", "t").code == "TenantRequestsThrottled"


def test_scale_multiplies_buckets_and_rates() -> None:
    clock = Clock()
    model = ThrottleModel(2.0, clock=clock)
    assert sum(model.arm("reads", "s", "me", "t").ok for _ in range(600)) == 500
    assert model.arm("reads", "s", "me", "t").retry_after_s == pytest.approx(1 / 50)
    tiny = ThrottleModel(0.0001, clock=clock)
    assert tiny.arm("reads", "s", "me", "t").ok  # at least one request fits


def test_not_enforced_still_counts_for_headers() -> None:
    model = ThrottleModel(enforce=False, clock=Clock())
    verdicts = [model.arm("writes", "s", "me", "t") for _ in range(300)]
    assert all(v.ok for v in verdicts)
    assert verdicts[-1].headers["x-ms-ratelimit-remaining-subscription-writes"] == "0"


def test_buckets_are_exact_under_threads() -> None:
    model = ThrottleModel(clock=Clock())  # frozen clock: no refill
    granted = []
    lock = threading.Lock()

    def worker() -> None:
        mine = sum(model.arm("reads", "s", "me", "t").ok for _ in range(100))
        with lock:
            granted.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 250


@pytest.mark.parametrize(
    ("op", "per_resource_wait"),
    [("write", 4.0), ("get", 2.0), ("list", 4.0), ("delete", 4.0)],
)
def test_managed_identity_rates_per_resource(op: str, per_resource_wait: float) -> None:
    clock = Clock()
    model = ThrottleModel(clock=clock)
    assert model.msi(op, "t", "s", "mi-1").ok
    denied = model.msi(op, "t", "s", "mi-1")
    assert not denied.ok and denied.retry_after_s == pytest.approx(per_resource_wait)
    assert model.msi(op, "t", "s", "mi-2").ok
    clock.now += per_resource_wait
    assert model.msi(op, "t", "s", "mi-1").ok


def test_managed_identity_rate_per_subscription() -> None:
    model = ThrottleModel(clock=Clock())
    # create/update: 2 per second per subscription (a bucket of two)
    assert [model.msi("write", "t", "s", f"mi-{n}").ok for n in range(3)] == [True, True, False]


def test_devops_delays_then_blocks() -> None:
    clock = Clock()
    model = ThrottleModel(0.01, clock=clock)  # 2 TSTU per 5 minutes
    first = model.ado("me", 1.0, 10.0)
    assert first.ok and first.delay_s == 0 and first.headers["X-RateLimit-Limit"] == "2"
    second = model.ado("me", 1.0, 10.0)
    assert second.ok and second.headers["X-RateLimit-Remaining"] == "0"
    delayed = model.ado("me", 1.0, 10.0)
    assert (
        delayed.ok
        and delayed.delay_s == pytest.approx(5.0)
        and "X-RateLimit-Delay" in delayed.headers
    )
    model.ado("me", 1.0, 10.0)
    blocked = model.ado("me", 1.0, 10.0)
    assert not blocked.ok and blocked.message.startswith("TF400733")
    assert blocked.retry_after_s == pytest.approx(300.0)
    assert model.ado("someone-else", 1.0, 10.0).ok
    clock.now += 301
    assert model.ado("me", 1.0, 10.0).delay_s == 0


def test_fault_specs() -> None:
    assert parse_spec("429:0.1") == {"rate_429": 0.1}
    assert parse_spec("throttle") == {"throttle": True}
    assert parse_spec("throttle:0.5") == {"throttle": True, "throttle_scale": 0.5}
    assert parse_spec("principal-window:5") == {"principal_window_s": 5.0}
    assert parse_spec("ops:A,B") == {"ops": ("A", "B")}
    faults = make_faults(["5xx:0.05", "lag:2000", "drop:0.01", "seed:7"])
    assert (faults.rate_5xx, faults.lag_ms, faults.drop, faults.seed) == (0.05, 2000.0, 0.01, 7)
    assert make_faults({"fic-write-ms": 5}, faults).fic_write_ms == 5.0
    with pytest.raises(ValueError):
        parse_spec("nonsense:1")
    with pytest.raises(ValueError):
        parse_spec("429")
    assert Faults().throttle is False


def test_dice_are_deterministic_per_path() -> None:
    a, b = FaultDice(), FaultDice()
    first = [a.draw(7, "GET", "/x") for _ in range(5)]
    # interleaving other paths does not change the draws for /x
    second = []
    for _ in range(5):
        b.draw(7, "GET", "/other")
        second.append(b.draw(7, "GET", "/X"))
    assert first == second
    assert first != [FaultDice().draw(8, "GET", "/x") for _ in range(5)]
