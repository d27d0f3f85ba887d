"""What applying a plan produced: per-change outcomes, the run's result, and the reporter.

Below both the apply engine (which makes outcomes and calls a reporter) and ``progress.py``
(whose reporters show them), so that neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from reconciler.changes import Change
from reconciler.model import Address


class Status(StrEnum):
    APPLIED = "applied"
    FAILED = "failed"
    SKIPPED = "skipped"
    # interrupted: never started, or stopped while waiting to retry
    NOT_STARTED = "not_started"


@dataclass(frozen=True)
class Outcome:
    change: Change
    status: Status
    # "{address} ({file}:{line}): {code}: {message}" for a failure; why, for the other statuses
    error: str = ""
    code: str = ""
    attempts: int = 0
    # measured on the engine's clock, retry waits included
    seconds: float = 0.0
    result: Mapping[str, Any] | None = None
    # the failed change that made this one SKIPPED
    skipped_because: Address | None = None
    # the service's message alone, for displays that show the address and source themselves
    message: str = ""
    # a multi-request change that failed: the steps that were done (they stay done, and the
    # next apply starts from them) and the step that failed
    completed_steps: tuple[str, ...] = ()
    failed_step: str = ""


@dataclass(frozen=True)
class ApplyResult:
    # one per change, in plan order
    outcomes: tuple[Outcome, ...]
    interrupted: bool = False

    def _with(self, status: Status) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.status is status)

    @property
    def applied(self) -> tuple[Outcome, ...]:
        return self._with(Status.APPLIED)

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return self._with(Status.FAILED)

    @property
    def skipped(self) -> tuple[Outcome, ...]:
        return self._with(Status.SKIPPED)

    @property
    def not_started(self) -> tuple[Outcome, ...]:
        return self._with(Status.NOT_STARTED)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(o.status is Status.APPLIED for o in self.outcomes)


class Reporter(Protocol):
    """What the apply engine tells as it runs; ``progress.py`` has the implementations.

    Workers call ``started`` and ``retrying`` concurrently. ``apply_plan`` also calls
    ``begin(changes)`` on a reporter that has it (for a progress bar's total)."""

    def started(self, change: Change) -> None: ...

    def retrying(self, change: Change, exc: Exception, delay: float) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...

    def summary(self, result: ApplyResult) -> None: ...
