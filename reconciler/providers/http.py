"""The HTTP connection pool both providers share, and reading a server's retry hint.

Retries are off at every layer below us (urllib3 here, azure-core in arm.py): ``retry.py``
is the one place that decides, on an injectable clock.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from typing import Final, Protocol, TypeVar

import requests
from requests.adapters import HTTPAdapter

T = TypeVar("T")


class Retry(Protocol):
    """How a caller retries one request (``retry.call_with_retry`` on the caller's clock).

    Paged lists take one so that a failed page is retried on its own and the listing goes on
    from there: retrying a whole listing from its first page again never finishes when every
    page costs a token of a slowly refilling bucket."""

    def __call__(self, fn: Callable[[], T], /) -> T: ...


def once(fn: Callable[[], T], /) -> T:
    """No retry: the caller's own retry loop wraps the whole call."""
    return fn()


# when a throttling or 5xx answer gives no hint; retry.py adds jittered backoff on top
DEFAULT_DELAY: Final = 1.0
# a server hint beyond this is not believed (retry.py's budget bounds the total anyway)
MAX_DELAY: Final = 300.0


def make_session(*, workers: int, verify: str | bool) -> requests.Session:
    """One keep-alive pool sized to the worker count, so no worker waits for a connection."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(workers, 4), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = verify
    return session


def retry_after(headers: Mapping[str, str] | None, default: float = DEFAULT_DELAY) -> float:
    """Seconds the server asked us to wait: ``x-ms-retry-after-ms``, ``retry-after-ms`` or
    ``Retry-After`` (seconds or an HTTP date), else ``default``."""
    if not headers:
        return default
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in ("x-ms-retry-after-ms", "retry-after-ms"):
        value = lowered.get(name)
        if value is not None:
            try:
                return _bounded(float(value) / 1000.0)
            except ValueError:
                pass
    value = lowered.get("retry-after")
    if value is None:
        return default
    try:
        return _bounded(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return _bounded(when.timestamp() - time.time())


def _bounded(seconds: float) -> float:
    return min(max(seconds, 0.0), MAX_DELAY)
