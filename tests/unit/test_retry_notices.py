"""Retry announcements and the short budget of unreachable services (retry.py), pure."""

from __future__ import annotations

import pytest

from reconciler.errors import TransientError
from reconciler.retry import FakeClock, RetryNotices, RetryPolicy, call_with_retry


def _throttled(url: str = "https://arm/x") -> TransientError:
    error = TransientError("Too many requests", code="TooManyRequests", status=429, delay=2.0)
    error.request = f"GET {url}"
    return error


def test_each_retry_is_one_line_naming_request_reason_and_delay() -> None:
    lines: list[str] = []
    notices = RetryNotices(lines.append, clock=lambda: 0.0)
    notices(_throttled(), 2.5)
    assert lines == ["retrying GET https://arm/x in 2.5s: HTTP 429 TooManyRequests\n"]


def test_a_storm_of_one_reason_is_counted_not_printed_line_by_line() -> None:
    lines: list[str] = []
    now = [0.0]
    notices = RetryNotices(lines.append, interval=10.0, clock=lambda: now[0])
    for i in range(500):
        now[0] = i * 0.01  # 500 retries in 5 s
        notices(_throttled(f"https://arm/{i}"), 1.0 + i % 3)
    assert len(lines) == 1
    now[0] = 12.0
    notices(_throttled("https://arm/late"), 1.0)
    assert len(lines) == 2
    assert lines[1] == (
        "retrying GET https://arm/late in 1.0s: HTTP 429 TooManyRequests "
        "(and 499 more retries for HTTP 429 TooManyRequests in the last 12s)\n"
    )
    notices(_throttled(), 1.0)
    notices.close()
    assert (
        lines[2] == "retried 1 more requests for HTTP 429 TooManyRequests (waits up to 1.0s each)\n"
    )
    notices.close()
    assert len(lines) == 3  # said once


def test_different_reasons_are_announced_separately() -> None:
    lines: list[str] = []
    notices = RetryNotices(lines.append, clock=lambda: 0.0)
    notices(_throttled(), 1.0)
    unreachable = TransientError("cannot reach", code="ServiceUnreachable", attempts=2)
    unreachable.request = "GET https://127.0.0.1:9/x"
    notices(unreachable, 1.0)
    assert lines[1] == "retrying GET https://127.0.0.1:9/x in 1.0s: ServiceUnreachable\n"


def test_an_unreachable_service_is_tried_twice_whatever_the_policy() -> None:
    clock = FakeClock()
    calls = []

    def refused() -> None:
        calls.append(1)
        raise TransientError("refused", code="ServiceUnreachable", delay=1.0, attempts=2)

    with pytest.raises(TransientError):
        call_with_retry(refused, clock=clock, policy=RetryPolicy(attempts=8))
    assert len(calls) == 2 and len(clock.slept) == 1


def test_a_timeout_keeps_the_whole_budget() -> None:
    clock = FakeClock()
    calls = []

    def timed_out() -> None:
        calls.append(1)
        raise TransientError("timed out", code="ConnectionError", delay=0.1)

    with pytest.raises(TransientError):
        call_with_retry(timed_out, clock=clock, policy=RetryPolicy(attempts=5, max_delay=1.0))
    assert len(calls) == 5
