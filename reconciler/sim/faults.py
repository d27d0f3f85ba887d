"""Fault injection and timing knobs: everything a test or the CLI may turn at runtime.

``Faults`` is one frozen value; the server swaps it atomically (``set_faults``). Random faults
are deterministic under ``seed``: the decision for the n-th request to a given method and path
depends only on (seed, fault, method, path, n), not on how requests from other paths interleave.

CLI/``POST /_sim/faults`` spec strings (``--fault SPEC``): ``429:P``, ``5xx:P``, ``drop:P``
(probabilities), ``lag:MS`` (a new resource 404s on GET for MS ms), ``principal-window:S``
(principals younger than S seconds are not found, even with principalType), ``delete-lag:S``
(deleted service connections stay visible for S seconds), ``activity-log-delay:S`` and
``audit-log-delay:S`` (ingestion delays of the Activity Log and the audit log), ``subject-drift:TEXT``
(Entra subjects Azure DevOps generates get TEXT appended), ``throttle`` or
``throttle:SCALE`` (the documented ARM, Managed Identity and Azure DevOps limits, every rate and
bucket multiplied by SCALE), ``latency:MS``, ``jitter:MS``, ``seed:N``, and any other field
below by its name with dashes (``fic-write-ms:50``, ``ready-after-ms:200``, ``ops:A,B``...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_ALIASES = {
    "429": "rate_429",
    "5xx": "rate_5xx",
    "500": "rate_5xx",
    "drop": "drop",
    "lag": "lag_ms",
    "principal-window": "principal_window_s",
    "latency": "latency_ms",
    "jitter": "jitter_ms",
    "replication": "replication_ms",
    "fic-write": "fic_write_ms",
    "ready-after": "ready_after_ms",
    "fic-delete-lag": "fic_delete_lag_ms",
    "fic-propagation": "fic_propagation_ms",
    "retry-after": "retry_after_ms",
    "max": "max_faults",
    "delete-lag": "delete_lag_s",
    "delete-whole": "delete_whole_s",
    "activity-log-delay": "activity_log_delay_s",
    "audit-log-delay": "audit_log_delay_s",
}


@dataclass(frozen=True)
class Faults:
    """Injected faults, timing windows and page sizes. All times in ms unless named ``_s``."""

    seed: int = 0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    drop: float = 0.0
    # Retry-After of injected (random) 429s; the header carries whole seconds (>= 1) and
    # x-ms-retry-after-ms the exact value, which azure-core prefers.
    retry_after_ms: int = 1000
    # limit random faults (429, 5xx, drop) to these operations (operationIds); empty = all
    ops: tuple[str, ...] = ()
    # stop injecting random faults after this many (None = unlimited)
    max_faults: int | None = None
    # read-after-write lag: GET of a resource younger than this answers 404 (ADO: null)
    lag_ms: float = 0.0
    # the directory knows a new identity's principal only after this long; before that a
    # role assignment needs principalType ServicePrincipal
    replication_ms: float = 0.0
    # PrincipalNotFound fault: principals younger than this are not found, even with type
    principal_window_s: float = 0.0
    # minimum duration of a federated credential write (the overlap window for 409s)
    fic_write_ms: float = 0.0
    # a new service connection reports isReady false / InProgress for this long
    ready_after_ms: float = 0.0
    # Azure DevOps keeps refusing a WIF connection delete this long after its FIC is gone
    fic_delete_lag_ms: float = 0.0
    # Entra honours a federated credential only this long after it was written: until then a
    # sign-in with its issuer and subject fails (AADSTS70021) and a scheme conversion that
    # needs it answers 202 (sim README, "Converting a connection in place", C2)
    fic_propagation_ms: float = 0.0
    # Azure DevOps deletes a connection asynchronously: for this long after the DELETE, GET and
    # list still return it, whole for the first half and as a partial object (``authorization``
    # null) for the second (sim README, "delete-lag")
    delete_lag_s: float = 0.0
    # how long of that window the connection is still returned whole (None: half of it)
    delete_whole_s: float | None = None
    # a fault, not the service's documented behaviour: Azure DevOps generates Entra-issuer
    # subjects that differ from the documented formula (this text inserted before the
    # ``/sc/{org id}/{connection id}`` tail that names the connection) when it creates,
    # converts or switches a connection; it signs in with, and reports, that subject (README,
    # "Faults": ``subject-drift``). Tests the tool's read-back of issue 11 §2 (c)
    subject_drift: str = ""
    # return ``serviceEndpointProjectReferences`` in reverse order (the owning project last):
    # the service promises no order
    reverse_references: bool = False
    # refuse (400) a service connection update whose body carries a field the service
    # generates (createdBy, isReady, isShared, operationStatus, workloadIdentityFederation*);
    # off: they are ignored, as the service is observed to do
    strict_update: bool = False
    throttle: bool = False
    throttle_scale: float = 1.0
    # Azure DevOps: TSTUs charged per request, and the longest delay before blocking
    ado_request_cost: float = 0.1
    ado_max_delay_ms: float = 30000.0
    identity_page_size: int = 100
    credential_page_size: int = 100
    role_assignment_page_size: int = 1000
    role_definition_page_size: int = 1000
    devops_page_size: int = 100  # projects and pipelines (x-ms-continuationtoken)
    # Activity Log: an event is invisible to queries until this long after its eventTimestamp
    # (Azure documents no figure; "minutes" in practice), and the events a page holds
    activity_log_delay_s: float = 5.0
    activity_log_page_size: int = 200
    # Azure DevOps audit log: the same for its entries
    audit_log_delay_s: float = 0.0
    audit_log_page_size: int = 200
    extra: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Faults:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in dataclasses.fields(Faults)}


def _coerce(name: str, value: Any) -> Any:
    current = getattr(Faults(), name)
    if name == "ops":
        if isinstance(value, str):
            return tuple(v for v in value.split(",") if v)
        return tuple(value)
    if name == "max_faults":
        return None if value in (None, "", "none") else int(value)
    if name == "delete_whole_s":
        return None if value in (None, "", "none") else float(value)
    if isinstance(current, bool):
        return (
            value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
        )
    if isinstance(current, int):
        return int(value)
    if isinstance(current, float):
        return float(value)
    return value


def parse_spec(spec: str) -> dict[str, Any]:
    """One ``--fault`` string as field changes."""
    name, sep, value = spec.strip().partition(":")
    key = name.strip().lower()
    if key == "throttle":
        return {"throttle": True, **({"throttle_scale": float(value)} if sep and value else {})}
    field_name = _ALIASES.get(key, key.replace("-", "_"))
    if field_name not in _FIELDS or field_name == "extra":
        raise ValueError(
            f"unknown fault {name!r} (known: {', '.join(sorted([*_ALIASES, 'throttle']))})"
        )
    if not sep:
        raise ValueError(f"fault {name!r} needs a value: {name}:VALUE")
    return {field_name: _coerce(field_name, value)}


def make_faults(
    spec: Faults | Mapping[str, Any] | Iterable[str] | None, base: Faults | None = None
) -> Faults:
    """A ``Faults`` from a value, a mapping of field changes, or spec strings, over ``base``."""
    base = base or Faults()
    if spec is None:
        return base
    if isinstance(spec, Faults):
        return spec
    changes: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        for k, v in spec.items():
            name = _ALIASES.get(str(k), str(k).replace("-", "_"))
            if name not in _FIELDS:
                raise ValueError(f"unknown fault setting {k!r}")
            changes[name] = _coerce(name, v) if name != "extra" else dict(v)
    else:
        for s in spec:
            changes.update(parse_spec(s))
    return base.replace(**changes)


def faults_to_dict(faults: Faults) -> dict[str, Any]:
    out = dataclasses.asdict(faults)
    out["ops"] = list(faults.ops)
    return out


class FaultDice:
    """Deterministic per-(method, path) random draws; thread-safe; counts what it injected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], int] = {}
        self.injected = 0

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()
            self.injected = 0

    def draw(self, seed: int, method: str, path: str) -> float:
        """A uniform [0, 1) number for this request; the n-th request to a path gets the n-th draw."""
        key = (method, path.lower())
        with self._lock:
            n = self._counters.get(key, 0)
            self._counters[key] = n + 1
        digest = hashlib.blake2b(f"{seed}|{method}|{key[1]}|{n}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def allow(self, faults: Faults) -> bool:
        """Reserve one injected fault if the budget allows."""
        with self._lock:
            if faults.max_faults is not None and self.injected >= faults.max_faults:
                return False
            self.injected += 1
            return True
