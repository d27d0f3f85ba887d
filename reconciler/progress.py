"""Reporting an apply as it runs: a line per finished change, a progress bar, JSON-lines events.

Workers call ``started`` and ``retrying`` concurrently, so every reporter serialises its writes.
Nothing here prints a change's ``result`` (it is the service's raw answer): only addresses,
statuses and the services' error codes and messages.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

from reconciler.changes import Action, Change
from reconciler.events import ApplyResult, Outcome, Reporter, Status
from reconciler.kinds import kind_of
from reconciler.model import Address

__all__ = ["EVENTS_VERSION", "JsonReporter", "Reporter", "TextReporter", "display"]

_VERBS = {
    Action.NOOP: "unchanged",
    Action.CREATE: "created",
    Action.UPDATE: "updated",
    Action.DELETE: "deleted",
    Action.DELETE_THEN_CREATE: "replaced",
    Action.CREATE_THEN_DELETE: "replaced",
}


def display(
    address: Address,
    attrs: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """A short readable name: ``identity ado-pipeline-mi``, ``role assignment mi: Reader on rg``.

    Built from the canonical key, with the declared spelling from ``attrs`` where present;
    ``labels`` (from ``identity_labels``) names identities that share a name in a longer form.
    The full address stays in JSON events and in failure messages.
    """
    attrs = attrs or {}
    names = labels or {}
    rules = kind_of(address.kind)
    shown = rules.display(address, attrs, names.get)
    return f"{rules.noun} {shown if shown is not None else address.key}"


def identity_labels(addresses: Iterable[Address]) -> dict[str, str]:
    """The shortest unambiguous label of every identity the addresses mention.

    ``deploy-mi`` when one identity has that name, ``team-a-rg/deploy-mi`` when two resource
    groups hold one, the whole key when even that repeats across subscriptions.
    """
    keys: set[str] = set()
    for address in addresses:
        key = kind_of(address.kind).identity_in_key(address)
        if key is not None:
            keys.add(key)
    keys = {k for k in keys if k.count("/") == 2}
    labels: dict[str, str] = {}
    for key in keys:
        for depth in (1, 2, 3):
            label = "/".join(key.split("/")[-depth:])
            if sum(1 for k in keys if k.endswith(f"/{label}") or k == label) == 1:
                labels[key] = label
                break
    return labels


def change_display(change: Change, labels: Mapping[str, str] | None = None) -> str:
    attrs = change.after or change.before
    if change.role_name:  # a role assignment: its role by name, not by GUID
        attrs = {**(attrs or {}), "role": change.role_name}
    return display(change.address, attrs, labels)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _headline(result: ApplyResult) -> tuple[str, str]:
    """(status word, counts) for the summary."""
    counts = (
        f"{len(result.applied)} applied, {len(result.failed)} failed, {len(result.skipped)} skipped"
    )
    if result.not_started:
        counts += f", {len(result.not_started)} not started"
    if result.interrupted:
        return "interrupted", counts
    return ("complete" if result.ok else "failed"), counts


_RESET = "\x1b[0m"
_COLORS = {"green": "\x1b[32m", "yellow": "\x1b[33m", "red": "\x1b[31m", "dim": "\x1b[2m"}
_BOLD = "\x1b[1m"
_ACTION_COLORS = {
    Action.CREATE: "green",
    Action.UPDATE: "yellow",
    Action.DELETE: "red",
    Action.DELETE_THEN_CREATE: "red",
    Action.CREATE_THEN_DELETE: "yellow",
}
_CLEAR_LINE = "\r\x1b[K"


class TextReporter:
    """Human output: one line per change as it finishes; on a TTY, a bar redrawn with ``\\r``.

    The bar is always the last thing on the screen: every line is written after clearing it
    and the bar is drawn again below, so lines from concurrent workers never interleave with it.
    """

    BAR_WIDTH = 24

    # after a retry line for a reason (error code), further retries for it within this many
    # seconds are counted, not printed: heavy throttling would otherwise flood the log
    RETRY_QUIET_SECONDS = 10.0

    def __init__(
        self,
        stream: TextIO,
        *,
        color: bool = False,
        tty: bool = False,
        show_retries: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        # reason -> (time of its last line, retries not shown since)
        self._quiet: dict[str, tuple[float, int]] = {}
        self._stream = stream
        self._color = color
        self._tty = tty
        self._show_retries = show_retries
        self._lock = threading.Lock()
        self._total = 0
        self._done = 0
        self._running: set[int] = set()
        self._bar_shown = False
        self._cross = _pick_symbol(stream, "✗", "x")
        self._labels: dict[str, str] = {}

    def _paint(self, text: str, color: str, bold: bool = False) -> str:
        if not self._color:
            return text
        return f"{_BOLD if bold else ''}{_COLORS.get(color, '')}{text}{_RESET}"

    def _bar(self) -> str:
        filled = self.BAR_WIDTH * self._done // self._total if self._total else 0
        bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
        text = f"[{bar}] {self._done}/{self._total} done"
        if self._running:
            text += f", {len(self._running)} running"
        return text

    def _write(self, lines: Sequence[str], *, bar: bool = True) -> None:
        """Write whole lines, keeping the bar (on a TTY) below them; the caller holds the lock."""
        out = []
        if self._bar_shown:
            out.append(_CLEAR_LINE)
            self._bar_shown = False
        out.extend(f"{line}\n" for line in lines)
        if bar and self._tty and self._total:
            out.append(self._bar())
            self._bar_shown = True
        if out:
            self._stream.write("".join(out))
            self._stream.flush()

    def begin(self, changes: Sequence[Change]) -> None:
        with self._lock:
            self._total = len(changes)
            self._labels = identity_labels(c.address for c in changes)
            self._done = 0
            self._running.clear()
            self._write([])

    def started(self, change: Change) -> None:
        with self._lock:
            self._running.add(id(change))
            if self._tty:
                self._write([])

    def retrying(self, change: Change, exc: Exception, delay: float) -> None:
        if not self._show_retries:
            return
        code = getattr(exc, "code", "") or type(exc).__name__
        line = (
            f"    retrying {change_display(change)} in {delay:.1f}s: {code}: {_one_line(str(exc))}"
        )
        if code == PLANNED_WAIT:
            # a wait the change plans for, not a failure
            line = (
                f"    waiting {delay:.0f}s before pointing {change_display(change)} at its new "
                "federated credential: Microsoft Entra honours a new credential only after a "
                "delay (--credential-propagation)"
            )
        with self._lock:
            now = self._clock()
            last = self._quiet.get(code)
            if last is not None and now - last[0] < self.RETRY_QUIET_SECONDS:
                self._quiet[code] = (last[0], last[1] + 1)
                return
            if last is not None and last[1]:
                line += f" (and {last[1]} more {code} retries not shown)"
            self._quiet[code] = (now, 0)
            self._write([self._paint(line, "dim")])

    def finished(self, outcome: Outcome) -> None:
        with self._lock:
            self._running.discard(id(outcome.change))
            self._done += 1
            line = self._line(outcome)
            self._write([line] if line else [])

    def _line(self, outcome: Outcome) -> str | None:
        change = outcome.change
        name = change_display(change, self._labels)
        if outcome.status is Status.APPLIED:
            symbol = self._paint(change.action.symbol, _ACTION_COLORS.get(change.action, ""))
            extra = f", {outcome.attempts} attempts" if outcome.attempts > 1 else ""
            return f"  {symbol} {name} {_VERBS[change.action]} ({outcome.seconds:.1f}s{extra})"
        if outcome.status is Status.FAILED:
            code = f"{outcome.code}: " if outcome.code else ""
            where = f" ({change.source})" if change.source else ""
            message = _one_line(outcome.message or outcome.error)
            cross = self._paint(self._cross, "red")
            # the message of a change that got part of the way names what was done
            verb = "partly done" if outcome.completed_steps else "failed"
            return f"  {cross} {name} {change.action} {verb}: {code}{message}{where}"
        if outcome.status is Status.SKIPPED:
            failed = outcome.skipped_because
            because = display(failed, labels=self._labels) if failed else "?"
            return self._paint(f"  - skipped: {name} (depends on failed {because})", "dim")
        if outcome.attempts:
            done = (
                f" ({', '.join(outcome.completed_steps)} done)" if outcome.completed_steps else ""
            )
            return self._paint(f"  ! {name} interrupted while waiting to retry{done}", "yellow")
        return None

    def notice(self, address: Address, message: str) -> None:
        """Something the user must know about an applied change (``ApplyContext.notice``)."""
        with self._lock:
            self._write([self._paint(f"  ! {_one_line(message)}", "yellow")])

    def summary(self, result: ApplyResult) -> None:
        word, counts = _headline(result)
        color = {"complete": "green", "failed": "red", "interrupted": "yellow"}[word]
        lines = [
            self._paint(f"    ({n} more {code} retries not shown)", "dim")
            for code, (_, n) in sorted(self._quiet.items())
            if n
        ]
        self._quiet.clear()
        lines.append(self._paint(f"Apply {word}: {counts}.", color, bold=True))
        for outcome in result.failed:
            lines.append(f"  {self._paint(self._cross, 'red')} {_one_line(outcome.error)}")
        with self._lock:
            self._write(lines, bar=False)


def _pick_symbol(stream: TextIO, preferred: str, fallback: str) -> str:
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return preferred
    try:
        preferred.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return fallback
    return preferred


# the code of the retry a connection's change raises to wait for its new credential to propagate
# (``kinds/executors/service_connection.py``): said as a wait, not as a failed attempt
PLANNED_WAIT = "CredentialPropagating"

# the version of the JSON-lines events of ``apply --format json`` (docs/apply-events.md): the
# minor moves for added keys or events, the major for anything a reader would misread
EVENTS_VERSION = "1.1"


class JsonReporter:
    """One JSON object per line: ``start``, ``retry``, ``finish``, ``notice`` and ``summary``
    events.

    Every event of a type carries the same keys in the same order, so consumers can rely on
    them; times are seconds rounded to milliseconds.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def _emit(self, event: dict[str, Any]) -> None:
        # every event names the version of this format (docs/apply-events.md)
        event = {"event": event["event"], "events_version": EVENTS_VERSION, **event}
        line = json.dumps(event, ensure_ascii=False)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    @staticmethod
    def _subject(change: Change) -> dict[str, Any]:
        return {
            "address": str(change.address),
            "kind": str(change.address.kind),
            "action": str(change.action),
        }

    def started(self, change: Change) -> None:
        self._emit({"event": "start", **self._subject(change)})

    def retrying(self, change: Change, exc: Exception, delay: float) -> None:
        self._emit(
            {
                "event": "retry",
                **self._subject(change),
                "delay": round(float(delay), 3),
                "code": getattr(exc, "code", "") or "",
                "status": getattr(exc, "status", 0) or 0,
                "message": _one_line(str(exc)),
            }
        )

    def finished(self, outcome: Outcome) -> None:
        because = outcome.skipped_because
        self._emit(
            {
                "event": "finish",
                **self._subject(outcome.change),
                "status": str(outcome.status),
                "attempts": outcome.attempts,
                "seconds": round(float(outcome.seconds), 3),
                "code": outcome.code,
                "error": outcome.error,
                "skipped_because": str(because) if because else None,
                # a multi-request change: the steps done (they stay done) and the one that failed
                "completed_steps": list(outcome.completed_steps),
                "failed_step": outcome.failed_step or None,
            }
        )

    def notice(self, address: Address, message: str) -> None:
        """Something the user must know about an applied change (``ApplyContext.notice``)."""
        self._emit(
            {
                "event": "notice",
                "address": str(address),
                "kind": str(address.kind),
                "message": _one_line(message),
            }
        )

    def summary(
        self, result: ApplyResult, *, converged: bool = False, remaining: int | None = None
    ) -> None:
        """The last event. ``converged``: a fresh plan after the apply showed no changes (false
        when the apply failed or was interrupted, so not checked); ``remaining``: how many
        changes that fresh plan still holds (null when not checked)."""
        word, _ = _headline(result)
        self._emit(
            {
                "event": "summary",
                "status": word,
                "converged": converged,
                "remaining": remaining,
                "applied": len(result.applied),
                "failed": len(result.failed),
                "skipped": len(result.skipped),
                "not_started": len(result.not_started),
                "interrupted": result.interrupted,
                "failures": [
                    {
                        "address": str(o.change.address),
                        "code": o.code,
                        "error": o.error,
                        "completed_steps": list(o.completed_steps),
                        "failed_step": o.failed_step or None,
                    }
                    for o in result.failed
                ],
            }
        )
