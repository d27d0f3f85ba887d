"""The exception hierarchy. Only ``cli.main`` turns these into exit codes."""

from __future__ import annotations

from dataclasses import dataclass


class ReconcilerError(Exception):
    """Root of every expected failure (exit code 1)."""


@dataclass(frozen=True)
class Problem:
    """One located problem in a spec: rendered as ``file:line:column: path: message``."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(ReconcilerError):
    """Syntax, schema or reference problems in the specs; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(
            problems, key=lambda p: (p.file, p.line, p.column, p.path, p.message)
        )
        super().__init__("\n".join(str(p) for p in self.problems))


class PlanError(ReconcilerError):
    """The plan cannot be made or used: ownership conflicts, limits, stale saved plans."""


class ReachError(ReconcilerError):
    """A place where the owner's objects may live cannot be read, so the plan could miss a
    delete (and drift could say "in sync" while an owned object is left): fail instead."""


class LiveReferenceError(SpecError, PlanError):
    """The specs name what live state shows does not exist or cannot be read (an organisation,
    project, pipeline, role, subscription or resource group): located problems found at plan
    time, each with the closest existing name when one is close."""


class NotConvergedError(ReconcilerError):
    """After an apply, a fresh plan still holds ``remaining`` changes."""

    def __init__(self, message: str, *, remaining: int) -> None:
        super().__init__(message)
        self.remaining = remaining


class ConfigError(ReconcilerError):
    """Bad command-line use, target file or credentials configuration."""


class ProviderError(ReconcilerError):
    """A service call failed. Raised only by providers (translated SDK/HTTP errors) and kinds.

    ``step`` names the step of a multi-request change that failed (``""`` when the change is
    one request) and ``completed`` the steps before it that are done, in order (see
    ``operations``); the apply engine reports both and restarts its retry budget when a retry
    got further than the attempt before.

    ``request`` is ``"METHOD URL"`` of the call that failed, without its query string, where
    the provider knows it ("" otherwise): retry notices name it.
    """

    step: str = ""
    completed: tuple[str, ...] = ()

    def __init__(self, message: str, *, code: str = "", status: int = 0) -> None:
        self.code = code
        self.status = status
        self.request = ""
        super().__init__(message)


class AuthError(ProviderError):
    """Missing, expired or wrong credentials (ARM 401, Azure DevOps 203 sign-in page or 401)."""


class NotFoundError(ProviderError):
    """The object does not exist (404, or Azure DevOps' 200 with a null body)."""


class ConflictError(ProviderError):
    """The service refused because of existing state (409 and friends); branch on ``code``."""


class TransientError(ProviderError):
    """Worth retrying after ``delay`` seconds (429, 5xx, replication lag, concurrent writes).

    ``attempts`` caps the tries for this kind of failure below the retry policy's (None: the
    policy decides): a refused connection or an unknown host is worth one more try, not the
    minutes of budget a throttled call gets.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int = 0,
        delay: float = 1.0,
        attempts: int | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.delay = delay
        self.attempts = attempts


class PermanentError(ProviderError):
    """Retrying will not help: bad request, forbidden, validation failure."""


class StepTransientError(TransientError):
    """A later step of a change failed for a reason worth retrying; earlier steps are done."""

    def __init__(
        self,
        message: str,
        *,
        step: str,
        completed: tuple[str, ...],
        code: str = "",
        status: int = 0,
        delay: float = 1.0,
    ) -> None:
        super().__init__(message, code=code, status=status, delay=delay)
        self.step = step
        self.completed = completed


class StepPermanentError(PermanentError):
    """A later step of a change failed for good; earlier steps are done and stay done."""

    def __init__(
        self,
        message: str,
        *,
        step: str,
        completed: tuple[str, ...],
        code: str = "",
        status: int = 0,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.step = step
        self.completed = completed
