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
