"""Reporters: exact text and JSON-lines output for a small apply, the TTY bar, thread safety."""

from __future__ import annotations

import io
import json
import random
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.apply import ApplyResult, Outcome, Status, apply_plan
from reconciler.errors import PermanentError, TransientError
from reconciler.model import Address, Kind, Source
from reconciler.plan import Action, Change, Plan, Reason
from reconciler.progress import JsonReporter, TextReporter, display, identity_labels
from reconciler.retry import FakeClock, RetryPolicy

SUB = "11111111-1111-1111-1111-111111111111"
MI = f"{SUB}/identities-rg/ado-pipeline-mi"
OLD_MI = f"{SUB}/identities-rg/old-mi"
SANDBOX = f"/subscriptions/{SUB}/resourceGroups/sandbox-rg"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
CONN = "contoso/platform/ado-pipeline-mi"
FIC = f"{MI}/ado-contoso-platform-ado-pipeline-mi"
SPEC = "specs/platform.yaml"


def scenario() -> Plan:
    """An identity, its role assignment (throttled once), a connection that fails, its
    credential (skipped) and an unrelated delete."""
    identity = Address(Kind.IDENTITY, MI)
    conn = Address(Kind.SERVICE_CONNECTION, CONN)
    return Plan(
        owner="platform-team",
        changes=(
            Change(
                identity,
                Action.CREATE,
                Reason.NEW,
                after={"name": "ado-pipeline-mi"},
                source=Source(SPEC, 8, 5),
            ),
            Change(
                Address(Kind.IDENTITY, OLD_MI),
                Action.DELETE,
                Reason.NOT_IN_SPEC,
                before={"name": "old-mi"},
                destructive=True,
            ),
            Change(
                Address(Kind.ROLE_ASSIGNMENT, f"{MI}/{SANDBOX}/{CONTRIBUTOR}".lower()),
                Action.CREATE,
                Reason.NEW,
                after={"role": "Contributor", "scope": SANDBOX},
                source=Source(SPEC, 12, 9),
                depends_on=(identity,),
                wave=1,
            ),
            Change(
                conn,
                Action.CREATE,
                Reason.NEW,
                after={"organization": "contoso", "project": "platform", "name": "ado-pipeline-mi"},
                source=Source(SPEC, 20, 5),
                depends_on=(identity,),
                wave=1,
            ),
            Change(
                Address(Kind.FEDERATED_CREDENTIAL, FIC),
                Action.CREATE,
                Reason.NEW,
                after={"identity": MI, "name": "ado-contoso-platform-ado-pipeline-mi"},
                source=Source(SPEC, 20, 5),
                depends_on=(conn,),
                wave=2,
            ),
        ),
    )


def perform_for(clock: FakeClock) -> Callable[[Change], Mapping[str, Any]]:
    """Each call takes a scripted time on the fake clock; two calls raise."""
    throttled = [True]

    def perform(change: Change) -> Mapping[str, Any]:
        kind = change.address.kind
        if kind is Kind.IDENTITY:
            clock.sleep(1.2 if change.action is Action.CREATE else 0.4)
        elif kind is Kind.ROLE_ASSIGNMENT:
            if throttled.pop() if throttled else False:
                raise TransientError(
                    "Number of 'write' requests exceeded.",
                    code="SubscriptionRequestsThrottled",
                    status=429,
                    delay=2,
                )
            clock.sleep(0.3)
        elif kind is Kind.SERVICE_CONNECTION:
            raise PermanentError(
                "Access denied: the caller needs Create permissions\nfor service connections.",
                code="AccessDenied",
                status=403,
            )
        return {"id": "x", "clientSecret": "must-never-show"}

    return perform


def run(reporter: Any) -> ApplyResult:
    clock = FakeClock()
    result = apply_plan(
        scenario(),
        perform_for(clock),
        workers=1,
        clock=clock,
        policy=RetryPolicy(base_delay=0.5),
        rng=random.Random(0),
        reporter=reporter,
    )
    reporter.summary(result)
    return result


# the service's message has a line break: JSON keeps it, text lines fold it
CONN_ERROR = (
    f"service_connection.{CONN} ({SPEC}:20:5): AccessDenied: Access denied: the caller needs "
    "Create permissions\nfor service connections."
)
CONN_ERROR_LINE = CONN_ERROR.replace("\n", " ")


TEXT = f"""\
  + identity ado-pipeline-mi created (1.2s)
  - identity old-mi deleted (0.4s)
    retrying role assignment ado-pipeline-mi: Contributor on sandbox-rg in 2.0s: SubscriptionRequestsThrottled: Number of 'write' requests exceeded.
  + role assignment ado-pipeline-mi: Contributor on sandbox-rg created (2.3s, 2 attempts)
  ✗ service connection contoso/platform/ado-pipeline-mi create failed: AccessDenied: Access denied: the caller needs Create permissions for service connections. ({SPEC}:20:5)
  - skipped: federated credential ado-pipeline-mi/ado-contoso-platform-ado-pipeline-mi (depends on failed service connection contoso/platform/ado-pipeline-mi)
Apply failed: 3 applied, 1 failed, 1 skipped.
  ✗ {CONN_ERROR_LINE}
"""


def test_text_reporter_lines_and_summary() -> None:
    out = io.StringIO()
    run(TextReporter(out))
    assert out.getvalue() == TEXT
    assert "must-never-show" not in out.getvalue()


def test_text_reporter_on_a_tty_keeps_the_bar_below_every_line() -> None:
    out = io.StringIO()
    run(TextReporter(out, tty=True, show_retries=False))
    clear = "\r\x1b[K"
    bar = "[{}] {}/5 done{}"
    expected = "".join(
        [
            bar.format("." * 24, 0, ""),
            clear + bar.format("." * 24, 0, ", 1 running"),
            clear + "  + identity ado-pipeline-mi created (1.2s)\n",
            bar.format("#" * 4 + "." * 20, 1, ""),
            clear + bar.format("#" * 4 + "." * 20, 1, ", 1 running"),
            clear + "  - identity old-mi deleted (0.4s)\n",
            bar.format("#" * 9 + "." * 15, 2, ""),
            clear + bar.format("#" * 9 + "." * 15, 2, ", 1 running"),
            clear + "  + role assignment ado-pipeline-mi: Contributor on sandbox-rg created "
            "(2.3s, 2 attempts)\n",
            bar.format("#" * 14 + "." * 10, 3, ""),
            clear + bar.format("#" * 14 + "." * 10, 3, ", 1 running"),
            clear + "  ✗ service connection contoso/platform/ado-pipeline-mi create failed: "
            "AccessDenied: Access denied: the caller needs Create permissions for service "
            f"connections. ({SPEC}:20:5)\n",
            bar.format("#" * 19 + "." * 5, 4, ""),
            clear + "  - skipped: federated credential "
            "ado-pipeline-mi/ado-contoso-platform-ado-pipeline-mi "
            "(depends on failed service connection contoso/platform/ado-pipeline-mi)\n",
            bar.format("#" * 24, 5, ""),
            clear + "Apply failed: 3 applied, 1 failed, 1 skipped.\n",
            f"  ✗ {CONN_ERROR_LINE}\n",
        ]
    )
    assert out.getvalue() == expected
    # what the terminal finally shows: every line whole, no bar left behind
    screen = re.sub(r"[^\n]*\r\x1b\[K", "", out.getvalue())
    assert screen == TEXT.replace(TEXT.splitlines()[2] + "\n", "")


def test_text_reporter_colours_symbols_and_headline() -> None:
    out = io.StringIO()
    run(TextReporter(out, color=True))
    lines = out.getvalue().splitlines()
    assert lines[0] == "  \x1b[32m+\x1b[0m identity ado-pipeline-mi created (1.2s)"
    assert lines[1] == "  \x1b[31m-\x1b[0m identity old-mi deleted (0.4s)"
    assert lines[-2] == "\x1b[1m\x1b[31mApply failed: 3 applied, 1 failed, 1 skipped.\x1b[0m"


def test_text_reporter_success_and_interrupted_headlines() -> None:
    change = scenario().changes[0]
    out = io.StringIO()
    reporter = TextReporter(out)
    reporter.summary(ApplyResult((Outcome(change, Status.APPLIED),)))
    reporter.summary(ApplyResult((Outcome(change, Status.NOT_STARTED),), interrupted=True))
    reporter.finished(Outcome(change, Status.NOT_STARTED))  # never started: no line
    reporter.finished(Outcome(change, Status.NOT_STARTED, attempts=2))
    assert out.getvalue() == (
        "Apply complete: 1 applied, 0 failed, 0 skipped.\n"
        "Apply interrupted: 0 applied, 0 failed, 0 skipped, 1 not started.\n"
        "  ! identity ado-pipeline-mi interrupted while waiting to retry\n"
    )


def test_text_reporter_falls_back_to_ascii_on_a_narrow_encoding() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    change = scenario().changes[3]
    TextReporter(stream).finished(Outcome(change, Status.FAILED, code="AccessDenied", message="no"))
    stream.flush()
    assert raw.getvalue().decode() == (
        "  x service connection contoso/platform/ado-pipeline-mi create failed: "
        f"AccessDenied: no ({SPEC}:20:5)\n"
    )


def test_text_reporter_lines_stay_whole_under_concurrent_workers() -> None:
    out = io.StringIO()
    reporter = TextReporter(out, tty=True)
    changes = [
        Change(Address(Kind.IDENTITY, f"s/rg/mi-{i}"), Action.CREATE, Reason.NEW)
        for i in range(200)
    ]
    reporter.begin(changes)
    barrier = threading.Barrier(8)

    def work(part: list[Change]) -> None:
        barrier.wait()
        for change in part:
            reporter.started(change)
            reporter.finished(Outcome(change, Status.APPLIED, attempts=1, seconds=0.5))

    threads = [threading.Thread(target=work, args=(changes[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    screen = re.sub(r"[^\n]*\r\x1b\[K", "", out.getvalue())
    lines = screen.splitlines()
    assert lines[-1] == "[" + "#" * 24 + "] 200/200 done"
    assert sorted(lines[:-1]) == sorted(f"  + identity mi-{i} created (0.5s)" for i in range(200))


def test_json_reporter_events() -> None:
    out = io.StringIO()
    run(JsonReporter(out))
    lines = out.getvalue().splitlines()
    assert all(line.startswith('{"event": "') for line in lines)
    events = [json.loads(line) for line in lines]
    ra = f"role_assignment.{MI}/{SANDBOX}/{CONTRIBUTOR}".lower()

    def finish(address: str, action: str, status: str, **kw: Any) -> dict[str, Any]:
        event = {
            "event": "finish",
            "address": address,
            "kind": address.partition(".")[0],
            "action": action,
            "status": status,
            "attempts": 1,
            "seconds": 0.0,
            "code": "",
            "error": "",
            "skipped_because": None,
            "completed_steps": [],
            "failed_step": None,
        }
        return {**event, **kw}

    def start(address: str, action: str) -> dict[str, Any]:
        kind = address.partition(".")[0]
        return {"event": "start", "address": address, "kind": kind, "action": action}

    expected = [
        start(f"identity.{MI}", "create"),
        finish(f"identity.{MI}", "create", "applied", seconds=1.2),
        start(f"identity.{OLD_MI}", "delete"),
        finish(f"identity.{OLD_MI}", "delete", "applied", seconds=0.4),
        start(ra, "create"),
        {
            "event": "retry",
            "address": ra,
            "kind": "role_assignment",
            "action": "create",
            "delay": 2.0,
            "code": "SubscriptionRequestsThrottled",
            "status": 429,
            "message": "Number of 'write' requests exceeded.",
        },
        finish(ra, "create", "applied", attempts=2, seconds=2.3),
        start(f"service_connection.{CONN}", "create"),
        finish(
            f"service_connection.{CONN}",
            "create",
            "failed",
            code="AccessDenied",
            error=CONN_ERROR,
        ),
        finish(
            f"federated_credential.{FIC}",
            "create",
            "skipped",
            attempts=0,
            error=f"skipped: depends on failed service_connection.{CONN}",
            skipped_because=f"service_connection.{CONN}",
        ),
        {
            "event": "summary",
            "status": "failed",
            "converged": False,
            "remaining": None,
            "applied": 3,
            "failed": 1,
            "skipped": 1,
            "not_started": 0,
            "interrupted": False,
            "failures": [
                {
                    "address": f"service_connection.{CONN}",
                    "code": "AccessDenied",
                    "error": CONN_ERROR,
                    "completed_steps": [],
                    "failed_step": None,
                }
            ],
        },
    ]
    # every event names its format version, right after its type
    expected = [{"event": e["event"], "events_version": "1.1", **e} for e in expected]
    assert events == expected
    # stable key order, not just equal dicts
    assert [list(e) for e in events] == [list(e) for e in expected]
    assert "must-never-show" not in out.getvalue()


def test_display_forms() -> None:
    assert display(Address(Kind.IDENTITY, MI)) == "identity ado-pipeline-mi"
    assert display(Address(Kind.FEDERATED_CREDENTIAL, f"{MI}/gh-main")) == (
        "federated credential ado-pipeline-mi/gh-main"
    )
    assert display(Address(Kind.SERVICE_CONNECTION, CONN), {"project": "Platform"}) == (
        "service connection contoso/Platform/ado-pipeline-mi"
    )
    ra = Address(Kind.ROLE_ASSIGNMENT, f"{MI}//subscriptions/{SUB}/{CONTRIBUTOR}")
    assert display(ra) == f"role assignment ado-pipeline-mi: {CONTRIBUTOR} on subscription {SUB}"
    by_name = Address(Kind.ROLE_ASSIGNMENT, f"{MI}/{SANDBOX}/name:Reader".lower())
    assert display(by_name) == "role assignment ado-pipeline-mi: reader on sandbox-rg"
    by_id = Address(Kind.ROLE_ASSIGNMENT, f"{MI}/{SANDBOX}/{CONTRIBUTOR}".lower())
    role_id = f"/providers/Microsoft.Authorization/roleDefinitions/{CONTRIBUTOR}"
    assert display(by_id, {"role": role_id}) == (
        f"role assignment ado-pipeline-mi: {CONTRIBUTOR} on sandbox-rg"
    )
    odd = Address(Kind.ROLE_ASSIGNMENT, f"{MI}//providers/microsoft.management/x/{CONTRIBUTOR}")
    assert display(odd).endswith(f"{CONTRIBUTOR} on /providers/microsoft.management/x")
    assert display(Address(Kind.IDENTITY, "weird")) == "identity weird"


def test_identities_sharing_a_name_are_told_apart() -> None:
    a = f"{SUB}/team-a-rg/deploy-mi"
    b = f"{SUB}/team-b-rg/deploy-mi"
    c = "22222222-2222-2222-2222-222222222222/team-b-rg/deploy-mi"
    addresses = [
        Address(Kind.IDENTITY, a),
        Address(Kind.FEDERATED_CREDENTIAL, f"{b}/gh"),
        Address(Kind.ROLE_ASSIGNMENT, f"{c}//subscriptions/{SUB}/{CONTRIBUTOR}"),
        Address(Kind.IDENTITY, MI),
    ]
    assert identity_labels(addresses) == {
        a: "team-a-rg/deploy-mi",
        b: b,
        c: c,
        MI: "ado-pipeline-mi",
    }

    out = io.StringIO()
    reporter = TextReporter(out)
    changes = [Change(Address(Kind.IDENTITY, k), Action.CREATE, Reason.NEW) for k in (a, b)]
    reporter.begin(changes)
    reporter.finished(Outcome(changes[0], Status.APPLIED, attempts=1))
    reporter.finished(Outcome(changes[1], Status.FAILED, code="X", message="m"))
    assert out.getvalue() == (
        "  + identity team-a-rg/deploy-mi created (0.0s)\n"
        "  ✗ identity team-b-rg/deploy-mi create failed: X: m\n"
    )


def test_a_change_that_got_part_of_the_way_says_what_was_done() -> None:
    """Text and JSON name the steps that are done and the one that failed."""
    from reconciler.errors import StepPermanentError

    conn = Address(Kind.SERVICE_CONNECTION, CONN)
    change = Change(conn, Action.CREATE, Reason.NEW, after={"name": "ado-pipeline-mi"})
    plan = Plan(owner="platform-team", changes=(change,))

    def perform(_: Change) -> Mapping[str, Any]:
        raise StepPermanentError(
            "created, ready; set pipeline permissions failed: pipeline(s) nope not found",
            step="set pipeline permissions",
            completed=("create", "wait until ready"),
            code="PipelineNotFound",
        )

    text, lines = io.StringIO(), io.StringIO()
    for reporter in (TextReporter(text), JsonReporter(lines)):
        result = apply_plan(plan, perform, workers=1, clock=FakeClock(), reporter=reporter)
        reporter.summary(result)
    (outcome,) = result.failed
    assert outcome.completed_steps == ("create", "wait until ready")
    assert outcome.failed_step == "set pipeline permissions"
    assert text.getvalue().splitlines()[0] == (
        "  ✗ service connection contoso/platform/ado-pipeline-mi create partly done: "
        "PipelineNotFound: created, ready; set pipeline permissions failed: "
        "pipeline(s) nope not found"
    )
    events = [json.loads(line) for line in lines.getvalue().splitlines()]
    finish = next(e for e in events if e["event"] == "finish")
    assert finish["status"] == "failed"
    assert finish["completed_steps"] == ["create", "wait until ready"]
    assert finish["failed_step"] == "set pipeline permissions"
    (failure,) = events[-1]["failures"]
    assert failure["completed_steps"] == ["create", "wait until ready"]
    assert failure["failed_step"] == "set pipeline permissions"


def test_text_reporter_does_not_flood_the_log_with_retries_of_one_reason() -> None:
    out = io.StringIO()
    now = [0.0]
    reporter = TextReporter(out, clock=lambda: now[0])
    changes = [
        Change(Address(Kind.IDENTITY, f"{SUB}/rg/mi-{i}"), Action.CREATE, Reason.NEW)
        for i in range(200)
    ]
    throttled = TransientError("slow down", code="TooManyRequests", status=429)
    for i, change in enumerate(changes):
        now[0] = i * 0.01  # 200 retries in 2 s
        reporter.retrying(change, throttled, 1.0)
    other = TransientError("busy", code="ServiceUnavailable", status=503)
    reporter.retrying(changes[0], other, 1.0)
    now[0] = 30.0
    reporter.retrying(changes[1], throttled, 4.0)
    reporter.retrying(changes[2], throttled, 4.0)
    reporter.summary(ApplyResult(()))
    lines = out.getvalue().splitlines()
    assert lines == [
        "    retrying identity mi-0 in 1.0s: TooManyRequests: slow down",
        "    retrying identity mi-0 in 1.0s: ServiceUnavailable: busy",
        "    retrying identity mi-1 in 4.0s: TooManyRequests: slow down "
        "(and 199 more TooManyRequests retries not shown)",
        "    (1 more TooManyRequests retries not shown)",
        "Apply complete: 0 applied, 0 failed, 0 skipped.",
    ]
