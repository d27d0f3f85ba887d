"""Throttle models: ARM token buckets, Managed Identity rates, Azure DevOps TSTU windows.

Numbers (azure-contracts.md §1.3, §3.5, §4, §8), each multiplied by ``scale``:

- ARM, per subscription, per principal and operation class: reads bucket 250 refilling 25/s,
  writes 200 refilling 10/s, deletes 200 refilling 10/s; a subscription-wide bucket for all
  principals 15 times larger (capacity and refill). Tenant-level requests use the same numbers
  per principal against the tenant.
- Managed Identity (identities and their federated credentials), requests/s per tenant /
  subscription / resource: create or update 10 / 2 / 0.25, get 30 / 10 / 0.5, list 15 / 5 /
  0.25, delete 10 / 2 / 0.25. A rate becomes a bucket holding one second's worth (at least one
  request). The "resource" of a credential operation or credential list is its identity; of an
  identity list, the resource group or subscription listed.
- Buckets hold at least one request whatever the scale.
- Azure DevOps: 200 TSTU per sliding 5 minutes per identity, each request costing
  ``ado_request_cost`` TSTU. Past the limit requests are delayed, linearly up to
  ``ado_max_delay_ms`` at twice the limit; beyond that they are blocked (429 TF400733).

Buckets refill lazily on access; one lock per model keeps multi-bucket takes atomic.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

ARM_LIMITS = {"reads": (250.0, 25.0), "writes": (200.0, 10.0), "deletes": (200.0, 10.0)}
ARM_GLOBAL_FACTOR = 15.0
MSI_RATES = {  # per tenant, per subscription, per resource (requests per second)
    "write": (10.0, 2.0, 0.25),
    "get": (30.0, 10.0, 0.5),
    "list": (15.0, 5.0, 0.25),
    "delete": (10.0, 2.0, 0.25),
}
ADO_LIMIT_TSTU = 200.0
ADO_WINDOW_S = 300.0
_ONE = 1.0 - 1e-9  # a refill of exactly the waited time must be enough despite float error


class TokenBucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self) -> float:
        """Seconds until one token is available (after ``refill``)."""
        return 0.0 if self.tokens >= _ONE else (1.0 - self.tokens) / self.rate


@dataclass
class Verdict:
    ok: bool = True
    retry_after_s: float = 0.0
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    code: str = ""
    message: str = ""


class ThrottleModel:
    """All buckets for one scale. ``enforce`` false still tracks usage for the headers."""

    def __init__(
        self,
        scale: float = 1.0,
        *,
        enforce: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scale = scale
        self.enforce = enforce
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, ...], TokenBucket] = {}
        self._ado: dict[str, deque[tuple[float, float]]] = {}
        self._ado_usage: dict[str, float] = {}

    def _bucket(
        self, key: tuple[str, ...], capacity: float, rate: float, now: float
    ) -> TokenBucket:
        b = self._buckets.get(key)
        if b is None:
            # a bucket must hold at least one request, however small the scale
            b = self._buckets[key] = TokenBucket(
                max(1.0, capacity * self.scale), rate * self.scale, now
            )
        else:
            b.refill(now)
        return b

    def _take_all(self, buckets: list[TokenBucket]) -> float:
        """Take one token from every bucket, or none; the wait when any is empty."""
        wait = max(b.wait() for b in buckets)
        if wait > 0 and self.enforce:
            return wait
        for b in buckets:
            if b.tokens >= _ONE:
                b.tokens = max(0.0, b.tokens - 1.0)
        return 0.0

    def arm(self, op_class: str, subscription: str | None, principal: str, tenant: str) -> Verdict:
        capacity, rate = ARM_LIMITS[op_class]
        singular = op_class[:-1]
        now = self.clock()
        with self._lock:
            if subscription:
                mine = self._bucket(("arm", subscription, principal, op_class), capacity, rate, now)
                shared = self._bucket(
                    ("arm-global", subscription, op_class),
                    capacity * ARM_GLOBAL_FACTOR,
                    rate * ARM_GLOBAL_FACTOR,
                    now,
                )
                wait = self._take_all([mine, shared])
                headers = {
                    f"x-ms-ratelimit-remaining-subscription-{op_class}": str(int(mine.tokens)),
                    f"x-ms-ratelimit-remaining-subscription-global-{op_class}": str(
                        int(shared.tokens)
                    ),
                }
                code = "SubscriptionRequestsThrottled"
                what = f"subscription '{subscription}'"
            else:
                mine = self._bucket(
                    ("arm-tenant", tenant, principal, op_class), capacity, rate, now
                )
                wait = self._take_all([mine])
                headers = {f"x-ms-ratelimit-remaining-tenant-{op_class}": str(int(mine.tokens))}
                code = "TenantRequestsThrottled"
                what = f"tenant '{tenant}'"
        if wait <= 0:
            return Verdict(headers=headers)
        seconds = max(1, math.ceil(wait))
        return Verdict(
            ok=False,
            retry_after_s=wait,
            headers=headers,
            code=code,
            message=(
                f"Number of '{singular}' requests for {what} actor '{principal}' exceeded. "
                f"Please try again after '{seconds}' seconds after the last request."
            ),
        )

    def msi(self, op: str, tenant: str, subscription: str, resource: str) -> Verdict:
        rates = MSI_RATES[op]
        now = self.clock()
        with self._lock:
            buckets = [
                self._bucket(("msi", op, scope, key), max(1.0, r), r, now)
                for scope, key, r in (
                    ("tenant", tenant, rates[0]),
                    ("subscription", subscription, rates[1]),
                    ("resource", resource.lower(), rates[2]),
                )
            ]
            wait = self._take_all(buckets)
        if wait <= 0:
            return Verdict()
        seconds = max(1, math.ceil(wait))
        return Verdict(
            ok=False,
            retry_after_s=wait,
            code="TooManyRequests",
            message=f"The request was throttled by Microsoft.ManagedIdentity. Please retry after {seconds} seconds.",
        )

    def ado(self, identity: str, cost: float, max_delay_s: float) -> Verdict:
        limit = ADO_LIMIT_TSTU * self.scale
        now = self.clock()
        wall = time.time()
        with self._lock:
            window = self._ado.setdefault(identity, deque())
            usage = self._ado_usage.get(identity, 0.0)
            while window and window[0][0] <= now - ADO_WINDOW_S:
                usage -= window.popleft()[1]
            usage = max(0.0, usage)
            headers: dict[str, str] = {}
            blocked = self.enforce and usage >= 2 * limit
            if not blocked:
                window.append((now, cost))
                usage += cost
            self._ado_usage[identity] = usage
            reset = wall + (window[-1][0] + ADO_WINDOW_S - now if window else 0.0)
            if usage >= limit / 2:
                headers = {
                    "X-RateLimit-Resource": "Core",
                    "X-RateLimit-Limit": f"{limit:g}",
                    "X-RateLimit-Remaining": f"{max(0.0, limit - usage):g}",
                    "X-RateLimit-Reset": str(int(reset)),
                }
            retry = 0.0
            if blocked or usage > limit:
                # when would usage fall back under the limit?
                excess = usage - limit
                for stamp, c in window:
                    excess -= c
                    if excess < 0:
                        retry = stamp + ADO_WINDOW_S - now
                        break
        if not self.enforce:
            return Verdict(headers=headers)
        if blocked:
            return Verdict(
                ok=False,
                retry_after_s=max(retry, 1.0),
                headers=headers,
                code="TF400733",
                message=(
                    "TF400733: The request has been canceled: Request was blocked due to exceeding usage of "
                    "resource 'Core' in namespace 'User'."
                ),
            )
        if usage > limit:
            delay = min(max_delay_s, (usage - limit) / limit * max_delay_s)
            headers["X-RateLimit-Delay"] = f"{delay:.3f}"
            headers["Retry-After"] = str(max(1, math.ceil(retry)))
            return Verdict(delay_s=delay, headers=headers)
        return Verdict(headers=headers)
