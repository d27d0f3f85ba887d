"""observe's reader: paced lists taken in turns over subscriptions, at most a window at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from reconciler.errors import PermanentError
from reconciler.observe import _Reader
from reconciler.retry import FakeClock, RetryPolicy


def _list(log: list[str], gate: threading.Event | None, name: str, *, retry: Any) -> str:
    def call() -> str:
        if gate is not None:
            gate.wait(5)
        log.append(name)
        return name.upper()

    result: str = retry(call)
    return result


def test_lanes_are_taken_in_turns_whatever_the_arrival_order() -> None:
    log: list[str] = []
    gate = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        reader = _Reader(pool, FakeClock(), RetryPolicy(), window=1)
        futures = [reader.submit_fair("a", _list, log, gate, f"a{n}") for n in range(4)]
        futures += [reader.submit_fair("b", _list, log, gate, f"b{n}") for n in range(2)]
        futures += [reader.submit_fair("c", _list, log, gate, "c0")]
        gate.set()
        assert [f.result(5) for f in futures] == [
            "A0", "A1", "A2", "A3", "B0", "B1", "C0"
        ]  # fmt: skip
    # a0 was already in the pool when the others arrived; then one of each lane in turn
    assert log == ["a0", "a1", "b0", "c0", "a2", "b1", "a3"]


def test_no_more_than_the_window_is_in_the_pool() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def slow(name: str, *, retry: Any) -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.01)
        with lock:
            running -= 1
        return name

    with ThreadPoolExecutor(max_workers=8) as pool:
        reader = _Reader(pool, FakeClock(), RetryPolicy(), window=3)
        futures = [reader.submit_fair(f"s{n % 4}", slow, str(n)) for n in range(30)]
        assert sorted(int(f.result(5)) for f in futures) == list(range(30))
    assert most == 3


def test_a_failure_reaches_the_caller() -> None:
    def broken(*, retry: Any) -> None:
        raise PermanentError("no", code="X")

    with ThreadPoolExecutor(max_workers=2) as pool:
        reader = _Reader(pool, FakeClock(), RetryPolicy(), window=2)
        future = reader.submit_fair("a", broken)
        with pytest.raises(PermanentError):
            future.result(5)


# -- a subscription that cannot be read --------------------------------------------------

SUB = "11111111-1111-1111-1111-111111111111"


class _Arm:
    """ARM for a caller with no access to one subscription; ``open_rgs`` lists its groups."""

    def __init__(self, *, open_rgs: bool) -> None:
        self.open_rgs = open_rgs

    @staticmethod
    def _forbidden(*_: Any, **__: Any) -> Any:
        raise PermanentError("no access", code="AuthorizationFailed", status=403)

    def list_resource_groups(self, sub: str, *, retry: Any) -> list[dict[str, Any]]:
        if self.open_rgs:
            return [{"name": "identities-rg"}]
        return self._forbidden()

    list_identities = list_role_assignments = list_role_definitions = _forbidden

    @staticmethod
    def query_resource_graph(query: str, *, what: str, retry: Any) -> list[dict[str, Any]]:
        return []  # the owner has nothing outside the specs


def _desired_in_sub() -> Any:
    from reconciler.model import Address, DesiredState, Kind, Resource

    key = f"{SUB}/identities-rg/a-mi"
    identity = Resource(
        Address(Kind.IDENTITY, key),
        {"subscription": SUB, "resourceGroup": "identities-rg", "name": "a-mi"},
    )
    return DesiredState("o", {identity.address: identity})


def test_an_unreadable_subscription_is_recorded_for_the_planner_not_raised() -> None:
    from types import SimpleNamespace

    from reconciler.errors import LiveReferenceError
    from reconciler.observe import observe
    from reconciler.plan import make_plan

    services = SimpleNamespace(arm=_Arm(open_rgs=False), devops=None, tenant_id="t")
    live = observe(services, _desired_in_sub(), workers=2, clock=FakeClock())  # type: ignore[arg-type]
    assert live.subscription_errors == {SUB: "AuthorizationFailed: no access"}
    with pytest.raises(LiveReferenceError) as err:
        make_plan(_desired_in_sub(), live)
    assert f"subscription {SUB} cannot be read by the signed-in caller" in str(err.value)


def test_a_403_in_a_readable_subscription_still_fails_the_read() -> None:
    from types import SimpleNamespace

    from reconciler.observe import observe

    services = SimpleNamespace(arm=_Arm(open_rgs=True), devops=None, tenant_id="t")
    with pytest.raises(PermanentError):
        observe(services, _desired_in_sub(), workers=2, clock=FakeClock())  # type: ignore[arg-type]


class _ResourceGroupReader(_Arm):
    """A caller with Reader on one resource group only: subscription lists are refused."""

    def list_identities(self, sub: str, rg: str | None = None, **_: Any) -> list[dict[str, Any]]:
        if rg is None:
            return self._forbidden()
        return []

    def list_role_assignments(self, sub: str, **_: Any) -> list[dict[str, Any]]:
        return []

    def list_role_definitions(self, scope: str, **_: Any) -> list[dict[str, Any]]:
        return []


def test_a_caller_reading_some_resource_groups_only_is_not_called_unreadable() -> None:
    from types import SimpleNamespace

    from reconciler.observe import observe

    services = SimpleNamespace(arm=_ResourceGroupReader(open_rgs=False), devops=None, tenant_id="t")
    live = observe(services, _desired_in_sub(), workers=2, clock=FakeClock())  # type: ignore[arg-type]
    assert live.subscription_errors == {}
    assert SUB not in live.resource_groups  # not listed: nothing to judge the groups by
