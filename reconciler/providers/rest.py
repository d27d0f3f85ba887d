"""A lean HTTPS transport for the requests a plan makes by the thousand.

Measured on this project's 2-core machine against the simulator, one list call costs about
4.4 ms of client CPU through the management SDK (pipeline, model deserialisation and our
re-serialisation), 2.1 ms through ``requests.Session`` (which re-reads the proxy, CA and netrc
environment on every request) and 0.8 ms on the urllib3 pool underneath. A 1,000-identity plan
makes about 1,250 such calls on a GIL, so the difference is seconds.

``Transport`` sends on the shared session's own urllib3 pools. It asks ``requests`` once per
origin which pool to use (proxies from the environment, ``NO_PROXY``, the CA bundle,
``REQUESTS_CA_BUNDLE``), exactly as a ``Session`` request would, and then talks to that pool
directly: same TLS settings, same keep-alive connections, none of the per-request overhead.
Redirects and retries are off: ``retry.py`` is the one place that retries.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import urlsplit

import requests
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from reconciler.errors import PermanentError, TransientError
from reconciler.providers.http import DEFAULT_DELAY

USER_AGENT: Final = "wif-reconciler (python-urllib3)"
_KNOWN: Final = frozenset(s.value for s in HTTPStatus)
_DEFAULT_HEADERS: Final = {
    "User-Agent": USER_AGENT,
    "Accept-Encoding": "gzip, deflate",
    "Accept": "application/json",
    "Connection": "keep-alive",
}


@dataclass(frozen=True)
class Response:
    status: int
    # case-insensitive (urllib3's HTTPHeaderDict)
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    # the names requests.Response uses, so that code reading either needs no branch
    @property
    def status_code(self) -> int:
        return self.status

    @property
    def content(self) -> bytes:
        return self.body

    @property
    def reason(self) -> str:
        return HTTPStatus(self.status).phrase if self.status in _KNOWN else ""


class Transport:
    """Thread-safe; shares connections with ``session`` (its ``https://`` adapter)."""

    def __init__(
        self,
        session: requests.Session,
        *,
        verify: str | bool,
        timeout: tuple[float, float] = (15.0, 60.0),
        service: str = "the service",
    ) -> None:
        self._session = session
        self._service = service
        self._verify = verify
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        self._lock = threading.Lock()
        self._pools: dict[str, tuple[Any, bool]] = {}

    def _pool(self, url: str) -> tuple[Any, bool]:
        """The urllib3 pool ``requests`` would use for ``url``, and whether it is a plain-HTTP
        proxy (which wants the absolute URL in the request line)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        with self._lock:
            found = self._pools.get(origin)
        if found is not None:
            return found
        session = self._session
        settings = session.merge_environment_settings(origin, {}, None, self._verify, None)
        prepared = requests.Request("GET", origin + "/").prepare()
        adapter = session.get_adapter(origin)
        if not isinstance(adapter, requests.adapters.HTTPAdapter):
            raise PermanentError(f"no HTTP adapter for {origin}", code="ConfigError")
        pool = adapter.get_connection_with_tls_context(
            prepared, settings["verify"], settings["proxies"], settings["cert"]
        )
        proxy = requests.utils.select_proxy(origin, settings["proxies"])
        absolute = bool(proxy) and parts.scheme == "http"
        with self._lock:
            self._pools.setdefault(origin, (pool, absolute))
            return self._pools[origin]

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        what: str,
    ) -> Response:
        pool, absolute = self._pool(url)
        parts = urlsplit(url)
        target = (
            url if absolute else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        )
        sent = dict(_DEFAULT_HEADERS)
        if headers:
            sent.update(headers)
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        try:
            response = pool.urlopen(
                method,
                target,
                body=body,
                headers=sent,
                redirect=False,
                assert_same_host=False,
                preload_content=True,
                decode_content=True,
                retries=False,
                timeout=self._timeout,
            )
        except SSLError as exc:
            raise PermanentError(
                f"TLS verification of {self._service} failed while {what}: {type(exc).__name__} "
                "(is the CA bundle right?)",
                code="TLSError",
            ) from None
        except (ProxyError, HTTPError, OSError) as exc:
            raise connection_error(exc, self._service, method, url, what) from None
        return Response(response.status, response.headers, response.data)


# a refused connection or an unknown host: one more try (a service restarting), not minutes
UNREACHABLE_ATTEMPTS: Final = 2


def request_line(method: str, url: str) -> str:
    """``METHOD scheme://host/path``: the query is dropped (it may carry a continuation token
    or, on some services, a signature)."""
    parts = urlsplit(url)
    return f"{method} {parts.scheme}://{parts.netloc}{parts.path}"


def connection_error(
    exc: BaseException, service: str, method: str, url: str, what: str
) -> TransientError:
    """The project's error for a request that got no answer, naming the URL.

    Connection refused and name resolution failures retry once (``UNREACHABLE_ATTEMPTS``):
    they mean a wrong URL or a service that is down, and waiting minutes helps neither.
    Timeouts and resets keep the whole retry budget: a busy service answers later.
    """
    line = request_line(method, url)
    if isinstance(exc, ProxyError) and isinstance(exc.original_error, BaseException):
        service = f"{service} through the proxy"
        exc = exc.original_error
    reason = _connection_reason(exc)
    unreachable = isinstance(exc, NewConnectionError | ConnectionRefusedError | socket.gaierror)
    error = TransientError(
        f"cannot reach {service} at {line} while {what}: {reason}",
        code="ServiceUnreachable" if unreachable else "ConnectionError",
        delay=DEFAULT_DELAY,
        attempts=UNREACHABLE_ATTEMPTS if unreachable else None,
    )
    error.request = line
    return error


def _connection_reason(exc: BaseException) -> str:
    if isinstance(exc, NameResolutionError | socket.gaierror):
        return "the host name does not resolve (DNS)"
    if isinstance(exc, NewConnectionError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(exc).lower():
            return "connection refused (nothing listens there)"
        return f"cannot connect ({_errno_text(exc)})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(exc, ConnectTimeoutError):
        return "connection timed out"
    if isinstance(exc, ReadTimeoutError):
        return "no answer in time (read timed out)"
    if isinstance(exc, ProtocolError):
        return "the connection was closed or reset"
    return type(exc).__name__


def _errno_text(exc: BaseException) -> str:
    text = str(exc)
    return text.rpartition(": ")[2] if ": " in text else type(exc).__name__
