"""One retry mechanism for every call the tool makes, with an injectable clock.

The SDK's and urllib3's own retries are switched off in the providers so that there is a
single place that decides (honouring ``Retry-After`` through ``TransientError.delay``), a
single budget per call, and tests can run the whole fault matrix on a fake clock.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from reconciler.errors import TransientError

T = TypeVar("T")


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """Advances only when slept on; thread-safe, so concurrent workers share one timeline."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self._now += max(seconds, 0.0)


SYSTEM_CLOCK = SystemClock()


@dataclass(frozen=True)
class RetryPolicy:
    """How long one call may keep trying: attempts and total waiting are both bounded."""

    attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    # total seconds of waiting allowed for one call, whatever the server asks for
    budget: float = 180.0


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Capped exponential backoff with full jitter (attempt counts from 1)."""
    ceiling = min(policy.max_delay, policy.base_delay * (2 ** (attempt - 1)))
    return rng.uniform(ceiling / 2, ceiling)


def call_with_retry(
    fn: Callable[[], T],
    *,
    clock: Clock = SYSTEM_CLOCK,
    policy: RetryPolicy = RetryPolicy(),
    rng: random.Random | None = None,
    classify: Callable[[Exception], float | None] | None = None,
    on_retry: Callable[[Exception, float], None] | None = None,
    progress: Callable[[Exception], int] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, a non-transient error is raised, or the budget is spent.

    ``classify(exc)`` returns the delay to wait before the next try, or None when ``exc`` is
    permanent. By default only ``TransientError`` is retried, after the larger of its
    server-given delay and the jittered backoff.

    ``progress(exc)`` (optional) counts the steps a failed try had completed: ``fn`` resumes
    where the last try stopped, so when a try gets further than every try before, the step it
    failed at starts with the whole budget (attempts and waiting) of its own.
    """
    rng = rng or random.Random()
    waited = 0.0
    attempt = 0
    base = 0  # attempts spent before the current step
    reached = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            if progress is not None and (done := progress(exc)) > reached:
                reached, base, waited = done, attempt - 1, 0.0
            delay = classify(exc) if classify is not None else _default_classify(exc)
            cap = getattr(exc, "attempts", None)
            limit = min(policy.attempts, cap) if isinstance(cap, int) else policy.attempts
            if delay is None or attempt - base >= limit:
                raise
            delay = max(delay, backoff(attempt - base, policy, rng))
            if waited + delay > policy.budget:
                raise
            if on_retry is not None:
                on_retry(exc, delay)
            clock.sleep(delay)
            waited += delay


def steps_completed(exc: Exception) -> int:
    """How many steps of a multi-request change were done when ``exc`` was raised."""
    return len(getattr(exc, "completed", ()) or ())


def _default_classify(exc: Exception) -> float | None:
    if isinstance(exc, TransientError):
        return exc.delay
    return None


class RetryNotices:
    """Announces retries on a stream (stderr), one line each, without flooding it.

    Each line says what is retried (``METHOD URL`` without the query, or the error's text),
    why (the error code and HTTP status), and after how long. Under heavy throttling the same
    reason would repeat for every request: after the first line for a reason, further ones
    within ``interval`` seconds are counted and reported in one line when the next notice for
    that reason is due, or by ``close``.
    """

    def __init__(
        self,
        write: Callable[[str], object],
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        # reason -> (time of its last line, retries counted since, longest delay since)
        self._quiet: dict[str, tuple[float, int, float]] = {}

    @staticmethod
    def reason(exc: Exception) -> str:
        code = str(getattr(exc, "code", "") or type(exc).__name__)
        status = int(getattr(exc, "status", 0) or 0)
        return f"HTTP {status} {code}" if status else code

    def __call__(self, exc: Exception, delay: float) -> None:
        reason = self.reason(exc)
        what = str(getattr(exc, "request", "") or "") or " ".join(str(exc).split())[:300]
        with self._lock:
            now = self._clock()
            last = self._quiet.get(reason)
            if last is not None and now - last[0] < self._interval:
                self._quiet[reason] = (last[0], last[1] + 1, max(last[2], delay))
                return
            more = ""
            if last is not None and last[1]:
                more = (
                    f" (and {last[1]} more retries for {reason} in the last {now - last[0]:.0f}s)"
                )
            self._quiet[reason] = (now, 0, 0.0)
            self._write(f"retrying {what} in {delay:.1f}s: {reason}{more}\n")

    def close(self) -> None:
        """Report the retries counted but not yet shown."""
        with self._lock:
            for reason, (_, count, longest) in sorted(self._quiet.items()):
                if count:
                    self._write(
                        f"retried {count} more requests for {reason} "
                        f"(waits up to {longest:.1f}s each)\n"
                    )
            self._quiet.clear()
