"""Applying in-process with services that stop the apply before a chosen write and check,
around every write, that a service connection can still sign in (the simulator's own sign-in
check, ``Simulator.sign_in``: what Entra does with the token the pipeline presents).

Used by the migration and conversion tests (issue 11 §2, §3, "no sign-in gap")."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.apply import ApplyResult, apply_plan
from reconciler.errors import PermanentError
from reconciler.kinds.executors import ApplyContext, perform
from reconciler.observe import observe
from reconciler.plan import Plan, make_plan
from reconciler.providers import Services, connect
from reconciler.providers.target import resolve_target
from reconciler.retry import RetryPolicy
from reconciler.sim.server import Simulator
from reconciler.specs import load_desired_state

from .conftest import ScaledClock

# every call that changes ARM or Azure DevOps
WRITES = frozenset(
    {
        "put_identity",
        "delete_identity",
        "put_credential",
        "delete_credential",
        "put_role_assignment",
        "delete_role_assignment",
        "create_endpoint",
        "update_endpoint",
        "convert_authentication_scheme",
        "share_endpoint",
        "delete_endpoint",
        "update_pipeline_permissions",
    }
)


@dataclass
class Watch:
    """Counts writes, stops before write number ``stop_before`` (0-based; None: never), and
    records every failed sign-in of the watched connections, before and after each write."""

    sim: Simulator
    connections: list[tuple[str, str]]  # (organization, connection id)
    stop_before: int | None = None
    writes: list[str] = field(default_factory=list)
    # every other call the apply made (reads), in order
    reads: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stopped: bool = False

    def check(self, moment: str) -> None:
        for org, endpoint_id in self.connections:
            answer = self.sim.sign_in(org, endpoint_id)
            if not answer["ok"]:
                self.failures.append(f"{moment}: {endpoint_id}: {answer['reason']}")

    def around(self, name: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        if self.stop_before is not None and len(self.writes) == self.stop_before:
            self.stopped = True
            raise PermanentError(f"stopped before {name} (test)", code="Stopped")
        self.check(f"before {name} #{len(self.writes)}")
        self.writes.append(name)
        try:
            return call(*args, **kwargs)
        finally:
            self.check(f"after {name} #{len(self.writes) - 1}")


class _Proxy:
    def __init__(self, inner: Any, watch: Watch) -> None:
        self._inner = inner
        self._watch = watch

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not callable(value) or name.startswith("_"):
            return value
        if name not in WRITES:
            reads = self._watch.reads

            def read(*args: Any, **kwargs: Any) -> Any:
                reads.append(name)
                return value(*args, **kwargs)

            return read
        return lambda *args, **kwargs: self._watch.around(name, value, *args, **kwargs)


class WatchedServices:
    """``Services`` whose ARM and Azure DevOps writes go through a ``Watch``."""

    def __init__(self, services: Services, watch: Watch) -> None:
        self._services = services
        self.arm = _Proxy(services.arm, watch)
        self.devops = _Proxy(services.devops, watch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._services, name)


def plan_now(sim: Simulator, spec: Path) -> tuple[Any, Plan, Services]:
    services = connect(resolve_target(str(sim.connection_file)), workers=4)
    desired = load_desired_state([str(spec)])
    live = observe(services, desired, workers=4, clock=ScaledClock())
    return live, make_plan(desired, live), services


def apply_watched(
    sim: Simulator, spec: Path, watch: Watch, *, policy: RetryPolicy | None = None
) -> tuple[Plan, ApplyResult]:
    """Plan from live state, then apply through ``watch`` (one worker: writes in plan order)."""
    live, plan, services = plan_now(sim, spec)
    clock = ScaledClock(scale=0.01)
    ctx = ApplyContext(
        credential_propagation=0,  # the simulator honours new credentials at once
        services=WatchedServices(services, watch),  # type: ignore[arg-type]
        live=live,
        owner=plan.owner,
        clock=clock,
        readiness_interval=0.5,
        wait_delay=0.5,
    )
    result = apply_plan(
        plan,
        lambda change: perform(change, ctx),
        workers=1,
        clock=clock,
        policy=policy or RetryPolicy(),
    )
    return plan, result
