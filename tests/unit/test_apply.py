"""The apply engine on fake ``perform`` functions: order, concurrency, retries, failure, Ctrl-C."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from reconciler.apply import (
    ApplyResult,
    Outcome,
    Status,
    _Schedule,
    apply_plan,
    check_destroy,
    interrupt_on_sigint,
)
from reconciler.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    PermanentError,
    PlanError,
    TransientError,
)
from reconciler.kinds.executors import concurrency_key as default_concurrency_key
from reconciler.model import Address, Kind, Source
from reconciler.plan import Action, Change, Plan, Reason
from reconciler.retry import FakeClock, RetryPolicy, SystemClock

IDENTITY_KEY = "11111111-1111-1111-1111-111111111111/identities-rg/mi"


def ident(name: str, *deps: str, wave: int = 0, **kw: Any) -> Change:
    """An identity change at key ``s/rg/{name}``; ``deps`` are other such names."""
    return Change(
        address=Address(Kind.IDENTITY, f"s/rg/{name}"),
        action=kw.pop("action", Action.CREATE),
        reason=kw.pop("reason", Reason.NEW),
        depends_on=tuple(Address(Kind.IDENTITY, f"s/rg/{d}") for d in deps),
        wave=wave,
        **kw,
    )


def fic(identity: str, name: str, *, with_attrs: bool = True) -> Change:
    key = f"s/rg/{identity}"
    return Change(
        address=Address(Kind.FEDERATED_CREDENTIAL, f"{key}/{name}"),
        action=Action.CREATE,
        reason=Reason.NEW,
        after={"identity": key, "name": name} if with_attrs else None,
    )


def name_of(change: Change) -> str:
    return change.address.key.rpartition("/")[2]


class Recorder:
    """A fake ``perform``: logs start/end, counts overlap, runs a scripted step per call."""

    def __init__(self, steps: Mapping[str, Sequence[Callable[[], object]]] | None = None) -> None:
        self.steps = {k: list(v) for k, v in (steps or {}).items()}
        self.lock = threading.Lock()
        self.log: list[tuple[str, str]] = []
        self.active = 0
        self.max_active = 0

    def calls(self, name: str) -> int:
        return sum(1 for event, n in self.log if event == "start" and n == name)

    def started(self) -> list[str]:
        return [n for event, n in self.log if event == "start"]

    def __call__(self, change: Change) -> Mapping[str, Any]:
        name = name_of(change)
        with self.lock:
            self.log.append(("start", name))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            queue = self.steps.get(name)
            step = queue.pop(0) if queue else None
        try:
            if step is not None:
                step()
        finally:
            with self.lock:
                self.active -= 1
                self.log.append(("end", name))
        return {"id": name}


def raising(exc: Exception) -> Callable[[], None]:
    def step() -> None:
        raise exc

    return step


def statuses(result: ApplyResult) -> dict[str, Status]:
    return {name_of(o.change): o.status for o in result.outcomes}


def by_name(result: ApplyResult, name: str) -> Outcome:
    return next(o for o in result.outcomes if name_of(o.change) == name)


FAST = RetryPolicy(attempts=5, base_delay=1.0, max_delay=8.0, budget=1000.0)


# --- scheduling -------------------------------------------------------------------------


def test_dependency_order_respected_with_parallel_workers() -> None:
    # a -> (b, c) -> d, plus an unrelated e
    plan = Plan(
        owner="t",
        changes=(
            ident("a"),
            ident("b", "a", wave=1),
            ident("c", "a", wave=1),
            ident("d", "b", "c", wave=2),
            ident("e"),
        ),
    )
    recorder = Recorder()
    result = apply_plan(plan, recorder, workers=4, clock=FakeClock())
    assert result.ok and len(result.applied) == 5
    position = {event: i for i, event in enumerate(recorder.log)}
    for change in plan.changes:
        for dep in change.depends_on:
            dep_name = dep.key.rpartition("/")[2]
            assert position[("end", dep_name)] < position[("start", name_of(change))]


def test_waves_order_ready_changes_then_plan_order() -> None:
    plan = Plan(owner="t", changes=(ident("x", wave=2), ident("y"), ident("z", wave=1)))
    recorder = Recorder()
    apply_plan(plan, recorder, workers=1, clock=FakeClock())
    assert recorder.started() == ["y", "z", "x"]


def test_dependencies_outside_the_plan_are_ignored() -> None:
    plan = Plan(owner="t", changes=(ident("a", "not-in-plan"),))
    assert apply_plan(plan, Recorder(), clock=FakeClock()).ok


def test_independent_changes_run_concurrently() -> None:
    # each of a and b waits for the other inside perform: sequential execution breaks the barrier
    barrier = threading.Barrier(2, timeout=5)
    recorder = Recorder({"a": [barrier.wait], "b": [barrier.wait]})
    plan = Plan(owner="t", changes=(ident("a"), ident("b"), ident("c", "a", "b", wave=1)))
    result = apply_plan(plan, recorder, workers=2, clock=FakeClock())
    assert statuses(result) == {"a": Status.APPLIED, "b": Status.APPLIED, "c": Status.APPLIED}
    assert recorder.max_active == 2


def test_same_concurrency_key_never_overlaps_under_real_threads() -> None:
    per_key_active: dict[str, int] = {}
    per_key_max: dict[str, int] = {}
    lock = threading.Lock()
    # the first credential of each identity meets the other's: different keys do overlap
    barrier = threading.Barrier(2, timeout=5)

    def perform(change: Change) -> Mapping[str, Any]:
        key = change.address.key.rpartition("/")[0]
        with lock:
            per_key_active[key] = per_key_active.get(key, 0) + 1
            per_key_max[key] = max(per_key_max.get(key, 0), per_key_active[key])
        try:
            if name_of(change) == "c1":
                barrier.wait()
            # a short window in which a wrongly dispatched sibling would be seen running
            threading.Event().wait(0.01)
        finally:
            with lock:
                per_key_active[key] -= 1
        return {}

    changes = tuple(fic(i, f"c{n}") for n in range(1, 5) for i in ("mi-1", "mi-2"))
    result = apply_plan(Plan(owner="t", changes=changes), perform, workers=8, clock=FakeClock())
    assert result.ok and len(result.applied) == 8
    assert per_key_max == {"s/rg/mi-1": 1, "s/rg/mi-2": 1}


def test_schedule_holds_back_a_change_whose_key_is_busy_without_taking_a_worker() -> None:
    changes = [fic("mi-1", "a"), fic("mi-1", "b"), fic("mi-2", "c"), ident("x")]
    schedule = _Schedule(changes, default_concurrency_key)
    assert schedule.take(10) == [0, 2, 3]
    assert schedule.take(10) == []
    schedule.finish(0, Status.APPLIED)
    assert schedule.take(10) == [1]


def test_schedule_starts_a_change_only_once_all_its_dependencies_applied() -> None:
    changes = [ident("b"), ident("c"), ident("d", "b", "c", wave=1)]
    schedule = _Schedule(changes, default_concurrency_key)
    assert schedule.take(10) == [0, 1]
    schedule.finish(0, Status.APPLIED)
    assert schedule.take(10) == []
    schedule.finish(1, Status.APPLIED)
    assert schedule.take(10) == [2]


def test_schedule_never_starts_dependents_of_an_interrupted_change() -> None:
    schedule = _Schedule([ident("a"), ident("b", "a", wave=1)], default_concurrency_key)
    assert schedule.take(10) == [0]
    assert schedule.finish(0, Status.NOT_STARTED) == []
    assert schedule.take(10) == [] and schedule.pending == {1}


def test_schedule_respects_worker_limit() -> None:
    schedule = _Schedule([ident("a"), ident("b"), ident("c")], default_concurrency_key)
    assert schedule.take(2) == [0, 1]
    schedule.finish(1, Status.APPLIED)
    assert schedule.take(1) == [2]


def test_default_concurrency_key() -> None:
    assert default_concurrency_key(fic("mi-1", "a")) == "identity:s/rg/mi-1"
    assert default_concurrency_key(fic("MI-1", "a", with_attrs=False)) == "identity:s/rg/MI-1"
    assert default_concurrency_key(ident("a")) is None


def test_cycle_is_refused_before_anything_starts() -> None:
    recorder = Recorder()
    plan = Plan(owner="t", changes=(ident("a", "b"), ident("b", "a"), ident("c")))
    with pytest.raises(PlanError, match="cycle"):
        apply_plan(plan, recorder, clock=FakeClock())
    assert recorder.log == []


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers"):
        apply_plan(Plan(owner="t"), Recorder(), workers=0)


def test_empty_plan() -> None:
    result = apply_plan(Plan(owner="t"), Recorder(), clock=FakeClock())
    assert result.outcomes == () and result.ok and not result.interrupted


# --- retries ------------------------------------------------------------------------------


def test_429_retry_after_is_honoured_on_the_clock() -> None:
    clock = FakeClock()
    throttled = TransientError("Too many requests", code="TooManyRequests", status=429, delay=7)
    recorder = Recorder({"a": [raising(throttled)]})
    result = apply_plan(
        Plan(owner="t", changes=(ident("a"),)),
        recorder,
        clock=clock,
        policy=FAST,
        rng=random.Random(1),
    )
    outcome = by_name(result, "a")
    assert outcome.status is Status.APPLIED
    assert outcome.attempts == 2
    assert clock.slept == [7.0]
    assert outcome.seconds == 7.0
    assert outcome.result == {"id": "a"}


def test_5xx_is_retried_with_capped_jittered_backoff_and_bounded_attempts() -> None:
    clock = FakeClock()
    policy = RetryPolicy(attempts=5, base_delay=2.0, max_delay=5.0, budget=1000.0)
    unavailable = TransientError("Service Unavailable", code="ServiceUnavailable", status=503)
    unavailable.delay = 0.0
    recorder = Recorder({"a": [raising(unavailable)] * 10})
    result = apply_plan(
        Plan(owner="t", changes=(ident("a", source=Source("specs/a.yaml", 4)),)),
        recorder,
        clock=clock,
        policy=policy,
        rng=random.Random(7),
    )
    outcome = by_name(result, "a")
    assert outcome.status is Status.FAILED
    assert outcome.attempts == 5 and recorder.calls("a") == 5
    ceilings = [2.0, 4.0, 5.0, 5.0]  # doubling, capped at max_delay
    assert len(clock.slept) == 4
    for slept, ceiling in zip(clock.slept, ceilings, strict=True):
        assert ceiling / 2 <= slept <= ceiling
    assert len(set(clock.slept)) == 4  # jittered, not a fixed schedule
    assert outcome.code == "ServiceUnavailable"
    assert outcome.error == (
        "identity.s/rg/a (specs/a.yaml:4:1): ServiceUnavailable: Service Unavailable "
        "(gave up after 5 attempts)"
    )


def test_transient_errors_that_clear_lead_to_applied() -> None:
    # a read-after-write 404 reaches the engine as a TransientError
    read_lag = TransientError("not yet", code="ResourceNotFound", status=404, delay=1)
    recorder = Recorder({"a": [raising(read_lag), raising(read_lag)]})
    result = apply_plan(
        Plan(owner="t", changes=(ident("a"),)), recorder, clock=FakeClock(), policy=FAST
    )
    assert by_name(result, "a").status is Status.APPLIED
    assert by_name(result, "a").attempts == 3


def test_budget_exhaustion_fails_with_the_last_error() -> None:
    clock = FakeClock()
    policy = RetryPolicy(attempts=10, base_delay=0.1, max_delay=1.0, budget=120.0)
    first = TransientError("first", code="TooManyRequests", status=429, delay=60)
    second = TransientError("second", code="TooManyRequests", status=429, delay=100)
    recorder = Recorder({"a": [raising(first), raising(second)]})
    result = apply_plan(
        Plan(owner="t", changes=(ident("a"),)), recorder, clock=clock, policy=policy
    )
    outcome = by_name(result, "a")
    assert outcome.status is Status.FAILED
    assert clock.slept == [60.0]  # waiting 100 more would pass the 120 s budget
    assert outcome.attempts == 2
    assert outcome.message == "second (gave up after 2 attempts)"
    assert outcome.error == "identity.s/rg/a: TooManyRequests: second (gave up after 2 attempts)"


@pytest.mark.parametrize(
    "exc",
    [
        PermanentError(
            "The client 'x' does not have authorization", code="AuthorizationFailed", status=403
        ),
        ConflictError("already exists in location 'northeurope'", code="InvalidResourceLocation"),
        AuthError("token expired", code="InvalidAuthenticationToken", status=401),
        NotFoundError("Resource group 'nope' could not be found.", code="ResourceGroupNotFound"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_permanent_errors_fail_at_once_with_code_message_and_source(exc: Exception) -> None:
    clock = FakeClock()
    recorder = Recorder({"a": [raising(exc)]})
    change = ident("a", source=Source("specs/team.yaml", 12, 5))
    result = apply_plan(Plan(owner="t", changes=(change,)), recorder, clock=clock, policy=FAST)
    outcome = by_name(result, "a")
    assert outcome.status is Status.FAILED
    assert outcome.attempts == 1 and clock.slept == []
    code = getattr(exc, "code", "")
    assert outcome.code == code
    assert outcome.message == str(exc)
    assert outcome.error == f"identity.s/rg/a (specs/team.yaml:12:5): {code}: {exc}"


def test_an_unexpected_exception_fails_only_that_change(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder({"a": [raising(KeyError("clientId"))]})
    plan = Plan(owner="t", changes=(ident("a"), ident("b")))
    result = apply_plan(plan, recorder, clock=FakeClock())
    outcome = by_name(result, "a")
    assert (outcome.status, outcome.code) == (Status.FAILED, "InternalError")
    assert outcome.error == "identity.s/rg/a: InternalError: KeyError: 'clientId'"
    assert by_name(result, "b").status is Status.APPLIED
    assert "unexpected error while applying identity.s/rg/a" in caplog.text


def test_reporter_hears_about_retries() -> None:
    heard: list[tuple[str, float]] = []

    class Listener:
        def started(self, change: Change) -> None: ...

        def retrying(self, change: Change, exc: Exception, delay: float) -> None:
            heard.append((name_of(change), delay))

        def finished(self, outcome: Outcome) -> None: ...

        def summary(self, result: ApplyResult) -> None: ...

    throttled = TransientError("slow down", code="TooManyRequests", status=429, delay=3)
    apply_plan(
        Plan(owner="t", changes=(ident("a"),)),
        Recorder({"a": [raising(throttled)]}),
        clock=FakeClock(),
        policy=FAST,
        reporter=Listener(),
    )
    assert heard == [("a", 3.0)]


# --- partial failure ------------------------------------------------------------------------


def test_dependents_are_skipped_transitively_and_independent_branches_go_on() -> None:
    boom = PermanentError("bad request", code="BadRequest", status=400)
    recorder = Recorder({"a": [raising(boom)]})
    plan = Plan(
        owner="t",
        changes=(
            ident("a"),
            ident("d"),
            ident("b", "a", wave=1),
            ident("e", "d", wave=1),
            ident("c", "b", "e", wave=2),
        ),
    )
    result = apply_plan(plan, recorder, workers=2, clock=FakeClock())
    assert statuses(result) == {
        "a": Status.FAILED,
        "d": Status.APPLIED,
        "b": Status.SKIPPED,
        "e": Status.APPLIED,
        "c": Status.SKIPPED,
    }
    failed = Address(Kind.IDENTITY, "s/rg/a")
    assert by_name(result, "b").skipped_because == failed
    assert by_name(result, "c").skipped_because == failed
    assert by_name(result, "c").error == "skipped: depends on failed identity.s/rg/a"
    assert sorted(recorder.started()) == ["a", "d", "e"]
    assert [name_of(o.change) for o in result.outcomes] == ["a", "d", "b", "e", "c"]
    assert not result.ok and not result.interrupted
    assert (len(result.applied), len(result.failed), len(result.skipped)) == (2, 1, 2)


# --- Ctrl-C -----------------------------------------------------------------------------------


def test_stop_starts_nothing_new_and_lets_in_flight_calls_finish() -> None:
    stop = threading.Event()
    barrier = threading.Barrier(2, timeout=5)

    def meet_then_ctrl_c() -> None:
        barrier.wait()
        stop.set()

    def meet_then_finish_after_ctrl_c() -> None:
        barrier.wait()
        assert stop.wait(5)

    # both are in flight when Ctrl-C comes; b ends only after it, so nothing may follow b
    recorder = Recorder({"a": [meet_then_ctrl_c], "b": [meet_then_finish_after_ctrl_c]})
    plan = Plan(
        owner="t",
        changes=(ident("a"), ident("b"), ident("c", "a", wave=1), ident("d", wave=1)),
    )
    result = apply_plan(plan, recorder, workers=2, clock=FakeClock(), stop=stop)
    assert result.interrupted and not result.ok
    assert statuses(result) == {
        "a": Status.APPLIED,
        "b": Status.APPLIED,
        "c": Status.NOT_STARTED,
        "d": Status.NOT_STARTED,
    }
    assert sorted(recorder.started()) == ["a", "b"]
    assert len(result.not_started) == 2


def test_stop_interrupts_a_retry_waiting_on_the_fake_clock() -> None:
    stop = threading.Event()
    clock = FakeClock()

    def ctrl_c_then_throttled() -> None:
        stop.set()
        raise TransientError("slow down", code="TooManyRequests", status=429, delay=30)

    recorder = Recorder({"a": [ctrl_c_then_throttled]})
    plan = Plan(owner="t", changes=(ident("a"), ident("b", "a", wave=1)))
    result = apply_plan(plan, recorder, clock=clock, policy=FAST, stop=stop)
    outcome = by_name(result, "a")
    assert outcome.status is Status.NOT_STARTED
    assert outcome.attempts == 1
    assert outcome.error == "interrupted while waiting to retry"
    assert clock.slept == []
    assert by_name(result, "b").status is Status.NOT_STARTED
    assert result.interrupted


def test_stop_wakes_a_real_retry_sleep_at_once() -> None:
    stop = threading.Event()
    retrying = threading.Event()
    throttled = TransientError("slow down", code="TooManyRequests", status=429, delay=60)

    class Listener:
        def started(self, change: Change) -> None: ...

        def retrying(self, change: Change, exc: Exception, delay: float) -> None:
            retrying.set()

        def finished(self, outcome: Outcome) -> None: ...

        def summary(self, result: ApplyResult) -> None: ...

    def press_ctrl_c_once_a_is_waiting() -> None:
        assert retrying.wait(5)
        stop.set()

    recorder = Recorder({"a": [raising(throttled)] * 3, "b": [press_ctrl_c_once_a_is_waiting]})
    plan = Plan(owner="t", changes=(ident("a"), ident("b")))
    began = time.monotonic()
    result = apply_plan(
        plan,
        recorder,
        workers=2,
        clock=SystemClock(),
        policy=RetryPolicy(attempts=5, base_delay=60, max_delay=60, budget=600),
        reporter=Listener(),
        stop=stop,
    )
    assert time.monotonic() - began < 5
    assert statuses(result) == {"a": Status.NOT_STARTED, "b": Status.APPLIED}
    assert recorder.calls("a") == 1


def test_keyboard_interrupt_in_the_main_thread_acts_like_stop() -> None:
    class CtrlCOnFirstFinish:
        pressed = False

        def started(self, change: Change) -> None: ...

        def retrying(self, change: Change, exc: Exception, delay: float) -> None: ...

        def finished(self, outcome: Outcome) -> None:
            if not self.pressed:
                self.pressed = True
                raise KeyboardInterrupt

        def summary(self, result: ApplyResult) -> None: ...

    recorder = Recorder()
    plan = Plan(owner="t", changes=(ident("a"), ident("b", "a", wave=1), ident("c", wave=1)))
    result = apply_plan(plan, recorder, workers=1, clock=FakeClock(), reporter=CtrlCOnFirstFinish())
    assert result.interrupted
    assert statuses(result) == {
        "a": Status.APPLIED,
        "b": Status.NOT_STARTED,
        "c": Status.NOT_STARTED,
    }
    assert recorder.started() == ["a"]


def test_interrupt_on_sigint_sets_stop_then_raises_on_the_second() -> None:
    stop = threading.Event()
    before = signal.getsignal(signal.SIGINT)
    with interrupt_on_sigint(stop):
        signal.raise_signal(signal.SIGINT)
        assert stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


# --- destructive guard ------------------------------------------------------------------------


def destructive_plan() -> Plan:
    conn = Change(
        address=Address(Kind.SERVICE_CONNECTION, "contoso/platform/old-conn"),
        action=Action.DELETE,
        reason=Reason.NOT_IN_SPEC,
        destructive=True,
    )
    identity = ident(
        "mi",
        action=Action.DELETE_THEN_CREATE,
        reason=Reason.IMMUTABLE_CHANGED,
        detail="location westeurope -> northeurope",
        destructive=True,
    )
    return Plan(owner="t", changes=(conn, identity, ident("other")))


def test_check_destroy_refuses_listing_every_destructive_change() -> None:
    with pytest.raises(PlanError) as info:
        check_destroy(destructive_plan(), allow_destroy=False)
    assert str(info.value) == (
        "refusing to apply: 2 changes delete or replace an identity or a service connection, "
        "or a federated credential a live connection signs in with; "
        "nothing was changed. Re-run with --allow-destroy to permit:\n"
        "  - service_connection.contoso/platform/old-conn: delete (not in spec)\n"
        "  -/+ identity.s/rg/mi: delete-then-create "
        "(immutable field changed: location westeurope -> northeurope)"
    )


def test_check_destroy_permits_with_the_flag_and_ignores_safe_plans() -> None:
    check_destroy(destructive_plan(), allow_destroy=True)
    check_destroy(Plan(owner="t", changes=(ident("a"),)), allow_destroy=False)
