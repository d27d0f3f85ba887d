"""Pacing to the Managed Identity limits: off until throttled, then at the documented rates."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.estates import large_seed
from reconciler.model import Kind
from reconciler.observe import observe
from reconciler.providers import connect
from reconciler.providers.pacing import Pace, Pacer
from reconciler.providers.target import load_target
from reconciler.sim.server import Simulator

from .conftest import OWNER, DesiredBuilder


class _Time:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(round(seconds, 6))
            self.now += seconds


@pytest.fixture
def clock() -> _Time:
    return _Time()


def _pacer(clock: _Time) -> Pacer:
    return Pacer(monotonic=clock.monotonic, sleep=clock.sleep)


def test_off_until_the_service_throttles(clock: _Time) -> None:
    pacer = _pacer(clock)
    for n in range(50):
        assert pacer.acquire(Pace("list", "sub", f"/identity/{n}")) == 0.0
    assert clock.slept == [] and not pacer.active("list")


def test_after_a_throttle_lists_run_at_the_subscription_rate(clock: _Time) -> None:
    pacer = _pacer(clock)
    pacer.throttled(Pace("list", "sub", "/sub"), 0.2)
    assert pacer.active("list") and not pacer.active("write")
    start = clock.now
    for n in range(20):
        pacer.acquire(Pace("list", "sub", f"/identity/{n}"))
    # 5 per second documented, paced at 95 %: 20 lists take about 4.2 s from an empty bucket
    assert clock.now - start == pytest.approx(20 / (5 * 0.95), rel=0.01)
    # another operation family is not slowed down
    assert pacer.acquire(Pace("write", "sub", "/identity/0")) == 0.0


def test_pages_of_one_list_wait_for_the_resource_rate(clock: _Time) -> None:
    pacer = _pacer(clock)
    # a second page throttled with "retry after 4 s": the resource bucket, not the subscription's
    pacer.throttled(Pace("list", "sub", "/subscriptions/sub"), 4.0)
    waited = pacer.acquire(Pace("list", "sub", "/subscriptions/sub"))
    assert waited == pytest.approx(4.0, abs=0.3)
    # other resources are paced by the subscription bucket only (0.2 s apart)
    before = clock.now
    pacer.acquire(Pace("list", "sub", "/identity/a"))
    pacer.acquire(Pace("list", "sub", "/identity/b"))
    assert clock.now - before < 0.5


def test_subscriptions_are_paced_apart(clock: _Time) -> None:
    pacer = _pacer(clock)
    pacer.throttled(Pace("write", "one", "/x"), 0.5)
    start = clock.now
    pacer.acquire(Pace("write", "one", "/a"))
    pacer.acquire(Pace("write", "one", "/b"))
    spent_one = clock.now - start
    start = clock.now
    pacer.acquire(Pace("write", "two", "/c"))
    pacer.acquire(Pace("write", "two", "/d"))
    assert spent_one > 0.5
    assert clock.now - start < spent_one  # a fresh subscription bucket is full


def test_the_factor_is_learnt_from_what_the_service_admitted(clock: _Time) -> None:
    pacer = _pacer(clock)
    # a service ten times faster than documented: 2 writes/s per subscription become 20/s,
    # so in 0.5 s a full bucket (20) and its refill (10) let 30 writes through
    for n in range(30):
        pace = Pace("write", "sub", f"/identity/{n}")
        pacer.acquire(pace)
        pacer.admitted(pace)
        clock.now += 0.5 / 30
    pacer.throttled(Pace("write", "sub", "/identity/30"), 0.05)
    assert pacer.scale("write") == pytest.approx(30 / (2 + 2 * 0.5), rel=0.05)
    start = clock.now
    for n in range(40):
        pacer.acquire(Pace("write", "sub", f"/identity/{n + 100}"))
    assert clock.now - start == pytest.approx(40 / (20 * 0.95), rel=0.05)


def test_a_service_as_documented_keeps_the_documented_rates(clock: _Time) -> None:
    pacer = _pacer(clock)
    for n in range(3):  # 2 in the bucket, and a little refill
        pace = Pace("write", "sub", f"/identity/{n}")
        pacer.acquire(pace)
        pacer.admitted(pace)
        clock.now += 0.2
    pacer.throttled(Pace("write", "sub", "/identity/9"), 0.4)
    assert pacer.scale("write") == 1.0


def test_a_429_while_paced_slows_down(clock: _Time) -> None:
    pacer = _pacer(clock)
    for n in range(30):
        pace = Pace("get", "sub", f"/identity/{n}")
        pacer.acquire(pace)
        pacer.admitted(pace)
    pacer.throttled(Pace("get", "sub", "/identity/x"), 0.01)
    learnt = pacer.scale("get")
    assert learnt is not None and learnt > 1
    pacer.throttled(Pace("get", "sub", "/identity/y"), 0.01)
    assert pacer.scale("get") == pytest.approx(max(1.0, learnt * 0.9))


def test_a_faster_service_is_probed_and_a_documented_one_never(clock: _Time) -> None:
    fast, documented = _pacer(clock), _pacer(clock)
    for n in range(30):
        pace = Pace("write", "sub", f"/identity/{n}")
        fast.acquire(pace)
        fast.admitted(pace)
    fast.throttled(Pace("write", "sub", "/x"), 0.05)
    documented.throttled(Pace("write", "sub", "/x"), 0.5)
    learnt = fast.scale("write")
    assert learnt is not None and learnt > 1
    clock.now += 2.5
    fast.acquire(Pace("write", "sub", "/y"))
    documented.acquire(Pace("write", "sub", "/y"))
    assert fast.scale("write") == pytest.approx(learnt * 1.1)
    assert documented.scale("write") == 1.0
    # a 429 for a request sent before pacing began does not lower the factor
    fast.throttled(Pace("write", "sub", "/z"), 0.05, paced=False)
    assert fast.scale("write") == pytest.approx(learnt * 1.1)


@pytest.fixture
def throttled(sim: Simulator) -> Iterator[Simulator]:
    sim.reset(large_seed(8, credentials_per_identity=1, assignments_per_identity=1, owner=OWNER))
    # the documented limits, unscaled; two pages of identities (8 + the 2 seeded)
    sim.set_faults(throttle=True, identity_page_size=5)
    sim.clear_log()
    yield sim
    sim.set_faults(None)


def test_a_throttled_plan_paces_instead_of_hammering(throttled: Simulator) -> None:
    services = connect(load_target(Path(throttled.connection_file)), workers=16)
    d = DesiredBuilder()
    for n in range(8):
        d.identity(f"bench-mi-{n:05d}")
    live = observe(services, d.build(), workers=16)
    assert len(live.of_kind(Kind.IDENTITY)) == 8
    assert len(live.of_kind(Kind.FEDERATED_CREDENTIAL)) == 16
    # the second page of identities (0.25 lists/s per listed scope) is the one 429 the
    # pacing learns from; the credential lists that follow keep to 5/s per subscription
    assert throttled.stats()["throttled"] == {"UserAssignedIdentities_ListBySubscription": 1}
    assert services.arm.pacer.active("list")


def test_after_a_paced_429_probing_rests_then_resumes(clock: _Time) -> None:
    pacer = _pacer(clock)
    for n in range(30):
        pace = Pace("write", "sub", f"/identity/{n}")
        pacer.acquire(pace)
        pacer.admitted(pace)
    pacer.throttled(Pace("write", "sub", "/x"), 0.05)
    learnt = pacer.scale("write")
    assert learnt is not None and learnt > 1
    pacer.throttled(Pace("write", "sub", "/y"), 0.05)  # paced, so the factor was too high
    backed_off = pacer.scale("write")
    assert backed_off == pytest.approx(max(1.0, learnt * 0.9))
    clock.now += 5.0  # quiet, but still resting
    pacer.acquire(Pace("write", "sub", "/z1"))
    assert pacer.scale("write") == backed_off
    clock.now += 6.0  # rested: probe again
    pacer.acquire(Pace("write", "sub", "/z2"))
    assert pacer.scale("write") == pytest.approx(backed_off * 1.1)


def test_the_429s_of_one_overshoot_back_off_once(clock: _Time) -> None:
    pacer = _pacer(clock)
    for n in range(30):
        pace = Pace("write", "sub", f"/identity/{n}")
        pacer.acquire(pace)
        pacer.admitted(pace)
    pacer.throttled(Pace("write", "sub", "/x"), 0.05)
    learnt = pacer.scale("write")
    assert learnt is not None
    for n in range(10):  # the requests in flight when the rate was too high
        pacer.throttled(Pace("write", "sub", f"/y{n}"), 0.05)
    assert pacer.scale("write") == pytest.approx(max(1.0, learnt * 0.9))
    clock.now += 1.5
    pacer.throttled(Pace("write", "sub", "/z"), 0.05)
    assert pacer.scale("write") == pytest.approx(max(1.0, learnt * 0.81))


def test_a_request_asleep_when_the_factor_drops_takes_a_new_turn(clock: _Time) -> None:
    armed: list[bool] = []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if armed and not armed[0]:  # the service throttles another paced request meanwhile
            armed[0] = True
            pacer.throttled(Pace("write", "sub", "/other"), 0.01)

    pacer = Pacer(monotonic=clock.monotonic, sleep=sleep)
    for n in range(30):
        pace = Pace("write", "sub", f"/identity/{n}")
        pacer.acquire(pace)
        pacer.admitted(pace)
    pacer.throttled(Pace("write", "sub", "/x"), 0.05)
    for n in range(40):  # use up the burst so that the next request has to wait
        pacer.acquire(Pace("write", "sub", f"/burst/{n}"))
    learnt = pacer.scale("write")
    assert learnt is not None
    before = len(clock.slept)
    armed.append(False)
    pacer.acquire(Pace("write", "sub", "/late"))
    # slept once, woke after the factor dropped, and waited again for a new turn
    assert armed == [True]
    assert pacer.scale("write") == pytest.approx(max(1.0, learnt * 0.9))
    assert len(clock.slept) - before == 2
