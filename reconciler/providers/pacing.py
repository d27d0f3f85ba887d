"""Client-side pacing for the Managed Identity service's rate limits.

The Managed Identity service limits requests per second per tenant, per subscription and
per resource (an identity, or the scope an identity list reads), separately for create or
update, get, list and delete (Entra's "considerations and restrictions for federated identity
credentials"); a bucket holds one second's worth of requests, at least one. Many workers
sending as fast as they can meet those limits as a storm of 429s and Retry-After waits.

Pacing is off, and free, until the service first throttles an operation family. From then on
every request of that family waits for its turn (a generic cell rate algorithm per bucket)
at the documented rates times a factor learnt from the service: what it admitted of that
family, per bucket, since the family's first request, against what the documented buckets
would have admitted in that time. A service exactly as documented gives 1; one that admitted
ten times as much gives 10. Each further 429 lowers the factor. A large plan or apply so runs
at the rate the limits allow with hardly another 429.

Throttling by ARM itself (``SubscriptionRequestsThrottled``) is left to the retry loop: its
buckets are far larger than the Managed Identity service's.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

# requests per second: (per tenant, per subscription, per resource)
MSI_RATES: Final[dict[str, tuple[float, float, float]]] = {
    "write": (10.0, 2.0, 0.25),
    "get": (30.0, 10.0, 0.5),
    "list": (15.0, 5.0, 0.25),
    "delete": (10.0, 2.0, 0.25),
}
LEVELS: Final = ("tenant", "subscription", "resource")
# ARM's own throttling codes: not the Managed Identity service's
ARM_THROTTLE_CODES: Final = frozenset({"SubscriptionRequestsThrottled", "TenantRequestsThrottled"})
# pace a little under the limits: requests do not arrive as evenly as they leave
_MARGIN: Final = 0.95
# a 429 while paced means the learnt factor was too high
_BACKOFF: Final = 0.9
# a factor above 1 was learnt from a service faster than documented, and what it admitted
# before the first 429 may understate it: try a little faster every few quiet seconds; a
# paced request throttled backs off and rests before probing again (a service as documented,
# factor 1, is never probed). Stopping for good at the first paced 429 left a 1,000-identity
# apply against a 10x service paced at 6x: one early 429 decided the whole run.
_PROBE: Final = 1.1
_PROBE_EVERY: Final = 2.0
_REST_AFTER_429: Final = 10.0
# the requests in flight when a probe overshoots are throttled together: one back-off for them
_ONE_BACKOFF_PER: Final = 1.0
# how far back admissions count when the factor is learnt
_WINDOW: Final = 2.0


@dataclass(frozen=True)
class Pace:
    """What a Managed Identity request counts against."""

    op: str  # write, get, list, delete
    subscription: str
    resource: str

    def buckets(self) -> tuple[tuple[str, str, str], ...]:
        return (
            (self.op, "tenant", ""),
            (self.op, "subscription", self.subscription.lower()),
            (self.op, "resource", self.resource.lower()),
        )


def _capacity(rate: float) -> float:
    return max(1.0, rate)


class _Cell:
    """Generic cell rate algorithm: ``tat`` is the theoretical arrival time of the next request."""

    __slots__ = ("interval", "tat", "tolerance")

    def __init__(self, rate: float, scale: float, now: float, *, empty: bool) -> None:
        self.interval = 1.0
        self.tolerance = 0.0
        self.tat = now
        self.tune(rate, scale)
        if empty:
            self.tat = now + self.tolerance + self.interval

    def tune(self, rate: float, scale: float) -> None:
        self.interval = 1.0 / (rate * scale * _MARGIN)
        self.tolerance = (max(1.0, _capacity(rate) * scale * _MARGIN) - 1.0) * self.interval

    def earliest(self) -> float:
        return self.tat - self.tolerance

    def take(self, at: float) -> None:
        self.tat = max(self.tat, at) + self.interval

    def hold_until(self, at: float) -> None:
        self.tat = max(self.tat, at + self.tolerance)


class _Admitted:
    """Requests a bucket key let through recently, and since when the key has been used."""

    __slots__ = ("first", "times")

    def __init__(self, now: float) -> None:
        self.first = now
        self.times: deque[float] = deque()

    def add(self, now: float) -> None:
        self.times.append(now)
        while self.times and self.times[0] < now - _WINDOW:
            self.times.popleft()


class Pacer:
    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        # operation family -> learnt factor; present once the family has been throttled
        self._scale: dict[str, float] = {}
        # operation family -> when its factor last changed
        self._changed: dict[str, float] = {}
        # operation families still looking for their ceiling
        self._probing: set[str] = set()
        # operation family -> no probing before this time (after a paced 429)
        self._resting: dict[str, float] = {}
        # operation family -> when a paced 429 last lowered its factor
        self._backed_off: dict[str, float] = {}
        self._cells: dict[tuple[str, str, str], _Cell] = {}
        self._admitted: dict[tuple[str, str, str], _Admitted] = {}

    def active(self, op: str) -> bool:
        with self._lock:
            return op in self._scale

    def scale(self, op: str) -> float | None:
        with self._lock:
            return self._scale.get(op)

    def _cells_for(self, pace: Pace, now: float, *, empty: bool) -> list[_Cell]:
        scale = self._scale[pace.op]
        cells = []
        for key, rate in zip(pace.buckets(), MSI_RATES[pace.op], strict=True):
            cell = self._cells.get(key)
            if cell is None:
                # a resource not touched since pacing began has its whole bucket
                cell = _Cell(rate, scale, now, empty=empty and key[1] != "resource")
                self._cells[key] = cell
            cells.append(cell)
        return cells

    def acquire(self, pace: Pace) -> float:
        """Wait for this request's turn; returns the seconds waited.

        A turn reckoned before a paced 429 lowered the factor was reckoned too soon: every
        request asleep at that moment would otherwise wake into the same overshoot (with
        many changes waiting, dozens of 429s), so such a request takes a new turn."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._monotonic()
                for key in pace.buckets():
                    if key not in self._admitted:
                        self._admitted[key] = _Admitted(now)
                if pace.op not in self._scale:
                    return waited
                if (
                    pace.op in self._probing
                    and now - self._changed[pace.op] >= _PROBE_EVERY
                    and now >= self._resting.get(pace.op, 0.0)
                ):
                    self._retune(pace.op, self._scale[pace.op] * _PROBE, now)
                cells = self._cells_for(pace, now, empty=False)
                slot = max(now, *(c.earliest() for c in cells))
                for cell in cells:
                    cell.take(slot)
                backed_off = self._backed_off.get(pace.op)
            wait = slot - now
            if wait <= 0:
                return waited
            self._sleep(wait)
            waited += wait
            with self._lock:
                if self._backed_off.get(pace.op) == backed_off:
                    return waited

    def admitted(self, pace: Pace) -> None:
        """The service let this request through (whatever it answered, it was not a 429)."""
        with self._lock:
            if pace.op in self._scale:
                return  # only the time before the first throttle teaches the factor
            now = self._monotonic()
            for key in pace.buckets():
                self._admitted.setdefault(key, _Admitted(now)).add(now)

    def _learn(self, pace: Pace, now: float) -> float:
        """The factor the admissions so far show: the largest, over this request's buckets, of
        what each let through against what the documented bucket would have."""
        scale = 1.0
        for key, rate in zip(pace.buckets(), MSI_RATES[pace.op], strict=True):
            seen = self._admitted.get(key)
            if seen is None or not seen.times:
                continue
            span = min(_WINDOW, max(0.0, now - seen.first))
            documented = _capacity(rate) + rate * span
            scale = max(scale, len(seen.times) / documented)
        return scale

    def _retune(self, op: str, scale: float, now: float) -> None:
        self._scale[op] = scale
        self._changed[op] = now
        for key, cell in self._cells.items():
            if key[0] == op:
                cell.tune(MSI_RATES[op][LEVELS.index(key[1])], scale)

    def throttled(self, pace: Pace, delay: float, *, paced: bool = True) -> None:
        """The service throttled this request and asked for ``delay`` seconds: pace the
        operation family from now on (or, if ``paced``, more slowly), holding every bucket
        the delay could be about. A request sent before pacing began says nothing about the
        factor."""
        with self._lock:
            now = self._monotonic()
            first = pace.op not in self._scale
            if first:
                self._scale[pace.op] = self._learn(pace, now)
                self._changed[pace.op] = now
                if self._scale[pace.op] > 1.0:
                    self._probing.add(pace.op)
            elif (
                paced and now - self._backed_off.get(pace.op, -_ONE_BACKOFF_PER) >= _ONE_BACKOFF_PER
            ):
                self._backed_off[pace.op] = now
                self._resting[pace.op] = now + _REST_AFTER_429
                self._retune(pace.op, max(1.0, self._scale[pace.op] * _BACKOFF), now)
            for cell in self._cells_for(pace, now, empty=first):
                # which bucket ran dry is not said: a delay longer than a bucket's interval
                # cannot be that bucket's
                if delay <= cell.interval * 1.05:
                    cell.hold_until(now + delay)
