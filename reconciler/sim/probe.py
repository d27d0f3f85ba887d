"""A sign-in probe (issue 11 §5, "prove there is no gap"): while an apply runs, a background
thread asks the simulator, every few tens of milliseconds, whether each service connection it
holds can sign in now (``sign_ins``: what Microsoft Entra does with the token each pipeline
presents) and counts the answers that say no.

Counting rule: the connections are listed from the simulator's own state (never from the
tool). A connection that could not sign in when the probe started, before the apply, is left
out of the count (it had a gap already, which the apply did not cause), and so is one that
first appears during the apply (it had no sign-in to lose). A counted connection that the
simulator no longer holds counts as a failure (a pipeline using it cannot sign in).

The probe reads through one callable returning ``Simulator.sign_ins()``'s answers, so it works
on an embedded simulator (``SignInProbe.of(sim)``) and on one in another process over the admin
API (``GET /_sim/sign-ins``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.sim.server import Simulator

# reasons kept for messages; the count covers every failure
KEPT_REASONS = 5

SignIns = Callable[[], list[dict[str, Any]]]


@dataclass
class SignInProbe:
    """Use as a context manager around an apply: entering takes the baseline (which connections
    sign in now) and starts the thread; leaving stops it after one last round.

    ``read`` returns every connection's sign-in answer (``Simulator.sign_ins`` or the admin
    API's ``GET /_sim/sign-ins`` ``value``): dicts with ``organization``, ``id``, ``ok`` and
    ``reason``. ``interval`` is the pause between rounds in seconds (default 0.025). After
    leaving: ``rounds`` (completed rounds), ``checks`` (sign-ins tried), ``failures`` (failed
    sign-ins of counted connections), ``reasons`` (the first few, ``"round N: org/id:
    reason"``), ``excluded`` (connections that could not sign in before the apply, with their
    reason), ``held_at_end`` and ``signing_in_at_end`` (every connection the last round found,
    counted or not, and how many of them could sign in: what an apply that creates
    connections, which the count leaves out, must show)."""

    read: SignIns
    interval: float = 0.025
    rounds: int = 0
    checks: int = 0
    failures: int = 0
    reasons: list[str] = field(default_factory=list)
    excluded: dict[tuple[str, str], str] = field(default_factory=dict)
    held_at_end: int = 0
    signing_in_at_end: int = 0
    _counted: set[tuple[str, str]] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    @classmethod
    def of(cls, sim: Simulator, interval: float = 0.025) -> SignInProbe:
        """A probe on an embedded simulator."""
        return cls(sim.sign_ins, interval)

    def __enter__(self) -> SignInProbe:
        for answer in self.read():
            org, endpoint_id = str(answer["organization"]), str(answer["id"])
            if answer["ok"]:
                self._counted.add((org.lower(), endpoint_id.lower()))
            else:
                self.excluded[(org, endpoint_id)] = str(answer["reason"])
        self._thread = threading.Thread(target=self._run, name="sign-in-probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None and exc is None:
            raise self._error

    @property
    def counted(self) -> int:
        """How many connections the probe counts (those that signed in before the apply)."""
        return len(self._counted)

    def _run(self) -> None:
        try:
            while True:
                last = self._stop.is_set()  # one full round after the apply returned
                self._round(last)
                if last:
                    return
                self._stop.wait(self.interval)
        except BaseException as exc:  # surfaced by __exit__, never lost in the thread
            self._error = exc

    def _round(self, last: bool = False) -> None:
        held = {(str(a["organization"]).lower(), str(a["id"]).lower()): a for a in self.read()}
        if last:
            self.held_at_end = len(held)
            self.signing_in_at_end = sum(1 for a in held.values() if a["ok"])
        for key in sorted(self._counted):
            self.checks += 1
            answer = held.get(key)
            if answer is not None:
                ok, reason = bool(answer["ok"]), str(answer["reason"])
            else:
                ok, reason = False, "the simulator no longer holds this service connection"
            if not ok:
                self.failures += 1
                if len(self.reasons) < KEPT_REASONS:
                    self.reasons.append(f"round {self.rounds}: {key[0]}/{key[1]}: {reason}")
        self.rounds += 1

    def summary(self) -> str:
        """One line for assertion messages."""
        return (
            f"{self.rounds} rounds, {self.checks} sign-ins of {self.counted} connections, "
            f"{self.failures} failed {self.reasons}; excluded {self.excluded}"
        )


def wait_rounds(probe: SignInProbe, rounds: int, timeout: float = 10.0) -> None:
    """Block until ``probe`` has done ``rounds`` rounds (``TimeoutError`` after ``timeout``
    seconds)."""
    end = time.monotonic() + timeout
    while probe.rounds < rounds:
        if time.monotonic() > end:
            raise TimeoutError(f"the probe did only {probe.rounds} rounds")
        time.sleep(0.005)
