"""Client-side pacing for the Managed Identity service's documented rate limits.

The Managed Identity service limits requests per second per tenant, per subscription and
per resource (an identity, or the scope an identity list reads), separately for create or
update, get, list and delete (Entra's "considerations and restrictions for federated identity
credentials"). Many workers sending as fast as they can meet those limits as a storm of 429s
and long Retry-After waits.

Pacing is off, and free, until the service first throttles an operation family; from then on
every request of that family waits for its turn at the documented rates (a generic cell rate
algorithm per bucket: a bucket holds one second's worth, at least one request), so a large
plan runs at the rate the limits allow with hardly another 429. Throttling by ARM itself
(``SubscriptionRequestsThrottled``) is left to the retry loop: its buckets are far larger.
"""

from __future__ import annotations

import threading
import time
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
# pace a little under the documented rates: requests do not arrive as evenly as they leave
_MARGIN: Final = 0.95
# ARM's own throttling codes: not the Managed Identity service's
ARM_THROTTLE_CODES: Final = frozenset({"SubscriptionRequestsThrottled", "TenantRequestsThrottled"})


@dataclass(frozen=True)
class Pace:
    """What a Managed Identity request counts against."""

    op: str  # write, get, list, delete
    subscription: str
    resource: str


class _Cell:
    """Generic cell rate algorithm: ``tat`` is the theoretical arrival time of the next request."""

    __slots__ = ("interval", "tat", "tolerance")

    def __init__(self, rate: float, now: float, *, empty: bool) -> None:
        self.interval = 1.0 / (rate * _MARGIN)
        # a bucket holds one second's worth of requests, at least one
        self.tolerance = (max(1.0, rate) - 1.0) * self.interval
        self.tat = now + self.tolerance + self.interval if empty else now

    def earliest(self) -> float:
        return self.tat - self.tolerance

    def take(self, at: float) -> None:
        self.tat = max(self.tat, at) + self.interval

    def hold_until(self, at: float) -> None:
        self.tat = max(self.tat, at + self.tolerance)


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
        self._active: set[str] = set()
        self._cells: dict[tuple[str, str, str], _Cell] = {}

    def active(self, op: str) -> bool:
        with self._lock:
            return op in self._active

    def _cells_for(self, pace: Pace, now: float, *, empty: bool) -> list[_Cell]:
        rates = MSI_RATES[pace.op]
        keys = (
            ("tenant", "", rates[0]),
            ("subscription", pace.subscription.lower(), rates[1]),
            ("resource", pace.resource.lower(), rates[2]),
        )
        cells = []
        for level, key, rate in keys:
            cell = self._cells.get((pace.op, level, key))
            if cell is None:
                # a resource not touched since pacing began has its whole bucket
                cell = _Cell(rate, now, empty=empty and level != "resource")
                self._cells[(pace.op, level, key)] = cell
            cells.append(cell)
        return cells

    def acquire(self, pace: Pace) -> float:
        """Wait for this request's turn; returns the seconds waited."""
        with self._lock:
            if pace.op not in self._active:
                return 0.0
            now = self._monotonic()
            cells = self._cells_for(pace, now, empty=False)
            slot = max(now, *(c.earliest() for c in cells))
            for cell in cells:
                cell.take(slot)
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)

    def throttled(self, pace: Pace, delay: float) -> None:
        """The service throttled this request and asked for ``delay`` seconds: pace the
        operation family from now on, and hold every bucket the delay could be about."""
        with self._lock:
            now = self._monotonic()
            first = pace.op not in self._active
            self._active.add(pace.op)
            cells = self._cells_for(pace, now, empty=first)
            for cell in cells:
                # which bucket ran dry is not said: a delay longer than a bucket's interval
                # cannot be that bucket's
                if delay <= cell.interval * 1.05:
                    cell.hold_until(now + delay)
