"""The imperative shell behind ``plan``, ``drift``, ``show`` and ``apply``.

Reads specs, connects to the target, observes, plans, renders, applies and re-plans. All the
decisions live in the pure core; this module only sequences them and talks to the terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from reconciler.errors import ConfigError, PlanError, ReconcilerError
from reconciler.model import DesiredState, LiveState
from reconciler.plan import Plan

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CHANGES = 2
EXIT_INTERRUPTED = 130
_CHANGES_PER_WORKER = 4


@dataclass
class Session:
    """What one command run holds: the desired state, its services and the latest live state."""

    paths: list[str]
    desired: DesiredState
    spec_digest: str
    services: Any  # reconciler.providers.Services (imported lazily: the SDK is slow to import)
    workers: int


def _use_color(args: argparse.Namespace, stream: TextIO) -> bool:
    if getattr(args, "no_color", False) or os.environ.get("NO_COLOR"):
        return False
    return stream.isatty()


def _open_session(args: argparse.Namespace, paths: Sequence[str]) -> Session:
    from reconciler.specs import load_desired_state, spec_digest

    desired = load_desired_state(paths)
    from reconciler.providers import connect
    from reconciler.providers.target import resolve_target

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    target = resolve_target(args.target)
    services = connect(target, auth=args.auth, workers=args.workers)
    return Session(list(paths), desired, spec_digest(paths), services, args.workers)


def _observe(session: Session) -> LiveState:
    from reconciler.observe import observe

    return observe(session.services, session.desired, workers=session.workers)


def _make_plan(session: Session, live: LiveState, *, force: bool) -> Plan:
    from reconciler.plan import make_plan

    plan = make_plan(session.desired, live, force=force)
    return replace(plan, spec_digest=session.spec_digest)


def _document(plan: Plan, session: Session, mode: str, *, force: bool = False) -> dict[str, Any]:
    from reconciler.render.document import to_document

    document = to_document(plan, mode=mode)
    # where the plan came from and how, so that `apply FILE` re-checks it the same way
    document["spec_paths"] = session.paths
    document["forced"] = force
    return document


def _render(document: dict[str, Any], fmt: str, *, color: bool) -> str:
    from reconciler.render import render

    return render(document, fmt, color=color)


def _write_document(path: str, document: dict[str, Any]) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(target)


def _plan_command(args: argparse.Namespace, mode: str) -> int:
    session = _open_session(args, args.paths)
    live = _observe(session)
    force = bool(getattr(args, "force", False))
    plan = _make_plan(session, live, force=force)
    document = _document(plan, session, mode, force=force)
    if args.out:
        _write_document(args.out, document)
    sys.stdout.write(_render(document, args.format, color=_use_color(args, sys.stdout)))
    if mode == "drift" or args.detailed_exitcode:
        return EXIT_CHANGES if plan.changes else EXIT_OK
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    return _plan_command(args, "plan")


def cmd_drift(args: argparse.Namespace) -> int:
    args.detailed_exitcode = True
    return _plan_command(args, "drift")


def _read_document(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the saved plan: {exc.strerror}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}:{exc.lineno}:{exc.colno}: not a plan document: {exc.msg}"
        ) from exc
    if not isinstance(document, dict) or "format_version" not in document:
        raise ConfigError(f"{path}: not a plan document (no format_version)")
    return document


def cmd_show(args: argparse.Namespace) -> int:
    document = _read_document(args.file)
    sys.stdout.write(_render(document, args.format, color=_use_color(args, sys.stdout)))
    return EXIT_OK


def _is_saved_plan(paths: Sequence[str]) -> bool:
    return len(paths) == 1 and Path(paths[0]).is_file() and paths[0].endswith(".json")


def _confirm(args: argparse.Namespace, plan: Plan) -> bool:
    if args.auto_approve:
        return True
    if not sys.stdin.isatty():
        raise ConfigError(
            "apply needs confirmation, but there is no terminal to ask on: "
            "review the plan and run again with --auto-approve"
        )
    destructive = sum(1 for c in plan.changes if c.destructive)
    note = f" ({destructive} destructive)" if destructive else ""
    sys.stdout.write(f"\nApply these {len(plan.changes)} changes{note}? Only 'yes' is accepted: ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip()
    return answer == "yes"


def _check_not_stale(saved: Plan, fresh: Plan, saved_digest: str, fresh_digest: str) -> None:
    moved: list[str] = []
    if saved_digest != fresh_digest:
        moved.append("the spec files changed since the plan was saved")
    old, new = dict(saved.fingerprints), dict(fresh.fingerprints)
    for address in sorted(set(old) | set(new)):
        if address not in new:
            moved.append(f"{address}: no longer exists")
        elif address not in old:
            moved.append(f"{address}: appeared since the plan was saved")
        elif old[address] != new[address]:
            moved.append(f"{address}: changed since the plan was saved")
    if moved:
        lines = "\n  ".join(moved)
        raise PlanError(f"the saved plan is stale; make a new plan:\n  {lines}")


def cmd_apply(args: argparse.Namespace) -> int:
    from reconciler.apply import apply_plan, check_destroy, interrupt_on_sigint, service_lane
    from reconciler.operations import ApplyContext, perform
    from reconciler.progress import JsonReporter, Reporter, TextReporter

    color = _use_color(args, sys.stdout)
    if _is_saved_plan(args.paths):
        document = _read_document(args.paths[0])
        from reconciler.render.document import from_document

        saved = from_document(document)
        spec_paths = document.get("spec_paths")
        if not isinstance(spec_paths, list) or not spec_paths:
            raise ConfigError(f"{args.paths[0]}: the saved plan does not name its spec files")
        session = _open_session(args, [str(p) for p in spec_paths])
        live = _observe(session)
        force = args.force or bool(document.get("forced", False))
        fresh = _make_plan(session, live, force=force)
        _check_not_stale(saved, fresh, saved.spec_digest, session.spec_digest)
        plan = saved
    else:
        session = _open_session(args, args.paths)
        live = _observe(session)
        force = args.force
        plan = _make_plan(session, live, force=force)
        document = _document(plan, session, "plan", force=force)

    if args.format == "json":
        sys.stdout.write(json.dumps({"event": "plan", "document": document}, sort_keys=True) + "\n")
    elif _is_saved_plan(args.paths):
        # reviewed when it was saved; say what it holds instead of printing it again
        counts = ", ".join(f"{n} to {k}" for k, n in plan.counts().items() if n)
        print(f"Applying the saved plan {args.paths[0]}: {counts or 'no changes'}.")
    else:
        sys.stdout.write(_render(document, "text", color=color))
    if plan.empty:
        return EXIT_OK
    check_destroy(plan, args.allow_destroy)
    if not _confirm(args, plan):
        print("Apply cancelled.")
        return EXIT_FAILED

    reporter: Reporter
    if args.format == "json":
        reporter = JsonReporter(sys.stdout)
    else:
        reporter = TextReporter(sys.stdout, color=color, tty=sys.stdout.isatty())
    ctx = ApplyContext(services=session.services, live=live, owner=session.desired.owner)
    stop = threading.Event()
    notice = "\nInterrupted: finishing the calls in flight, starting nothing new\n"
    with interrupt_on_sigint(stop, notice=notice):
        result = apply_plan(
            plan,
            lambda change: perform(change, ctx),
            # more changes in progress than requests in flight (--workers, enforced by the
            # providers): a change waiting for a rate limit's turn holds a thread, not a request
            workers=args.workers * _CHANGES_PER_WORKER,
            lane=service_lane,
            reporter=reporter,
            stop=stop,
        )
    reporter.summary(result)
    if result.interrupted:
        return EXIT_INTERRUPTED
    if not result.ok:
        return EXIT_FAILED
    return _check_converged(args, session, force=force)


def _check_converged(args: argparse.Namespace, session: Session, *, force: bool) -> int:
    """Observe and plan again: anything left means apply did not converge."""
    live = _observe(session)
    again = _make_plan(session, live, force=force)
    if again.empty:
        if args.format != "json":
            print("Converged: a fresh plan shows no changes.")
        return EXIT_OK
    document = _document(again, session, "plan", force=force)
    sys.stderr.write(_render(document, "text", color=False))
    raise ReconcilerError(
        f"apply did not converge: {len(again.changes)} differences remain (shown above)"
    )
