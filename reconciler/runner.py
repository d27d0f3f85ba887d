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
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from reconciler.changes import Action, Plan
from reconciler.errors import ConfigError, NotConvergedError, PlanError, ReconcilerError
from reconciler.model import Address, DesiredState, LiveState

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
    # --only selectors: every plan of this run is restricted to them (a partial plan)
    only: tuple[str, ...] = ()
    # set once apply ran: a selected object it deleted no longer matches, and that is fine
    applied: bool = False


def _use_color(args: argparse.Namespace, stream: TextIO) -> bool:
    if getattr(args, "no_color", False) or os.environ.get("NO_COLOR"):
        return False
    return stream.isatty()


def _open_session(args: argparse.Namespace, paths: Sequence[str]) -> Session:
    from reconciler.specs import load_desired_state, spec_digest

    desired = load_desired_state(paths)
    services = _connect(args)
    only = tuple(getattr(args, "only", None) or ())
    return Session(list(paths), desired, spec_digest(paths), services, args.workers, only)


def _connect(args: argparse.Namespace) -> Any:
    """The services of ``--target`` / ``--cloud`` / ``--auth`` (``reconciler.providers``)."""
    from reconciler.providers import connect
    from reconciler.providers.target import effective_auth, resolve_target

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    # a connection file's kind is FILE whatever its name; the real cloud only without one
    target = resolve_target(
        args.target,
        cloud=getattr(args, "cloud", None),
        auth=args.auth,
        warn=lambda message: print(f"warning: {message}", file=sys.stderr),
    )
    # --auth chooses among real-cloud credentials: a connection file always uses its own
    return connect(target, auth=effective_auth(target, args.auth), workers=args.workers)


def _observe(session: Session, credentials: Any = None) -> LiveState:
    """``credentials``: a ``CredentialSource`` and ``PermissionSource`` (incremental drift),
    else every list is read."""
    from reconciler.observe import observe
    from reconciler.retry import RetryNotices

    notices = RetryNotices(sys.stderr.write)
    try:
        return observe(
            session.services,
            session.desired,
            workers=session.workers,
            on_retry=notices,
            credentials=credentials,
            permissions=credentials,
        )
    finally:
        notices.close()


def _make_plan(session: Session, live: LiveState, *, force: bool) -> Plan:
    from reconciler.plan import make_plan, name_roles, restrict

    plan = make_plan(session.desired, live, force=force)
    plan = restrict(plan, session.desired, session.only, missing_ok=session.applied)
    from reconciler.specs import builtin_roles

    builtin = {guid: name for name, guid in builtin_roles().items()}
    return replace(name_roles(plan, live, builtin), spec_digest=session.spec_digest)


def _document(
    plan: Plan, session: Session, mode: str, *, force: bool = False, out: str | None = None
) -> dict[str, Any]:
    from reconciler.render.document import to_document

    document = to_document(plan, mode=mode)
    # where the plan came from and how, so that `apply FILE` re-checks it the same way, from
    # whatever folder it runs in: the paths as given, absolute, and relative to the plan file
    document["spec_paths"] = session.paths
    document["spec_paths_absolute"] = [os.path.abspath(p) for p in session.paths]
    if out is not None:
        with suppress(ValueError):  # no relative path between two Windows drives
            here = os.path.dirname(os.path.abspath(out))
            document["spec_paths_from_plan"] = [
                Path(os.path.relpath(os.path.abspath(p), here)).as_posix() for p in session.paths
            ]
    document["forced"] = force
    return document


def _render(document: dict[str, Any], fmt: str, *, color: bool) -> str:
    from reconciler.render import render

    return render(document, fmt, color=color)


def _write_document(path: str, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` atomically (a temporary file beside it, then a rename).

    Raises ``ConfigError`` naming the path when it is a folder or its folder does not exist
    (not created: a mistyped folder would otherwise appear silently) or cannot be written;
    the temporary file never outlives a failure.
    """
    import tempfile

    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"--out {path}: is a folder; name a file, e.g. {target / 'plan.json'}")
    folder = target.parent
    if not folder.is_dir():
        raise ConfigError(
            f"--out {path}: the folder {str(folder)!r} does not exist; create it first"
        )
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
        tmp = Path(name)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        tmp.replace(target)
        tmp = None
    except OSError as exc:
        raise ConfigError(
            f"--out {path}: cannot write the plan document: {exc.strerror or exc}"
        ) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _plan_command(args: argparse.Namespace, mode: str) -> int:
    session = _open_session(args, args.paths)
    feed = None
    if mode == "drift":
        from reconciler.changefeed import ChangeFeed

        feed = ChangeFeed(
            session.services,
            owner=session.desired.owner,
            baseline_path=getattr(args, "baseline", None),
            full=bool(getattr(args, "full", False)),
            delay_s=float(getattr(args, "log_delay", 900.0)),
        )
        if feed.warning:
            print(f"warning: {feed.warning}", file=sys.stderr)
    try:
        return _plan_and_report(args, mode, session, feed)
    finally:
        if feed is not None:
            feed.close()


def _plan_and_report(args: argparse.Namespace, mode: str, session: Session, feed: Any) -> int:
    live = _observe(session, feed)
    force = bool(getattr(args, "force", False))
    plan = _make_plan(session, live, force=force)
    document = _document(plan, session, mode, force=force, out=args.out)
    if feed is not None:
        # who changed each drifted object (issue 13 §2) and what was read how (§1)
        changed_by = feed.attribute(document["changes"])
        for change in document["changes"]:
            change["changed_by"] = changed_by[str(change["address"])]
        document["reads"] = feed.reads()
    # the plan first: a bad --out must not cost the reader the plan they waited for
    sys.stdout.write(_render(document, args.format, color=_use_color(args, sys.stdout)))
    if args.out:
        sys.stdout.flush()
        _write_document(args.out, document)
    if feed is not None:
        feed.write(live, [str(c["address"]) for c in document["changes"] if not c["before"]])
    if mode == "drift" or args.detailed_exitcode:
        return EXIT_CHANGES if plan.changes else EXIT_OK
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    return _plan_command(args, "plan")


def cmd_drift(args: argparse.Namespace) -> int:
    args.detailed_exitcode = True
    return _plan_command(args, "drift")


def cmd_output(args: argparse.Namespace) -> int:
    """The live ids of every declared identity and connection; writes nothing.

    Exit 0 when every declared object exists, 2 when some are missing (not applied yet).
    """
    from reconciler.render.outputs import collect_outputs, render_outputs

    session = _open_session(args, args.paths)
    live = _observe(session)
    document = collect_outputs(session.desired, live, tenant_id=session.services.tenant_id)
    sys.stdout.write(render_outputs(document, args.format))
    return EXIT_OK if document["complete"] else EXIT_CHANGES


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
    except RecursionError:
        # a plan document is a few levels deep; a deeply nested file is not one
        raise ConfigError(f"{path}:1: not a plan document: nested too deeply") from None
    if not isinstance(document, dict) or "format_version" not in document:
        raise ConfigError(f"{path}: not a plan document (no format_version)")
    from reconciler.render.document import from_document, summary

    # the one check `show` and `apply` share: a version this release reads, a well-formed plan
    try:
        plan = from_document(document)
    except PlanError as exc:
        raise PlanError(f"{path}: {exc}") from None
    # the counts a reviewer reads come from the changes, never from the file's own summary
    return {**document, "summary": summary(plan)}


def cmd_show(args: argparse.Namespace) -> int:
    document = _read_document(args.file)
    sys.stdout.write(_render(document, args.format, color=_use_color(args, sys.stdout)))
    return EXIT_OK


def _is_saved_plan(paths: Sequence[str]) -> bool:
    """One file that is a plan document: named ``.json``, or (whatever ``plan --out`` was
    given) not a ``.yaml``/``.yml`` spec and starting with a JSON object."""
    if len(paths) != 1 or not Path(paths[0]).is_file():
        return False
    name = paths[0].lower()
    if name.endswith(".json"):
        return True
    if name.endswith((".yaml", ".yml")):
        return False
    try:
        with open(paths[0], "rb") as handle:
            head = handle.read(64).lstrip()
    except OSError:
        return False
    return head.startswith(b"{")


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


def _check_not_stale(
    saved: Plan, fresh: Plan, saved_digest: str, fresh_digest: str, spec_paths: Sequence[str]
) -> None:
    moved: list[str] = []
    if saved_digest != fresh_digest:
        moved.append(
            f"the spec files changed since the plan was saved (read: {', '.join(spec_paths)})"
        )
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


def _path_list(document: Mapping[str, Any], key: str, plan_file: str) -> list[str] | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(p, str) for p in value):
        raise ConfigError(f"{plan_file}: {key} must be a non-empty list of paths")
    return list(value)


def _saved_spec_paths(
    plan_file: str, document: Mapping[str, Any], override: Sequence[str] | None
) -> list[str]:
    """The spec paths to re-plan a saved plan from, wherever apply runs.

    Tried in order: ``--specs`` (alone, when given); the paths relative to the plan file's
    folder (a plan saved next to its specs applies from any working directory); the paths as
    given, from the working directory (a pipeline that downloads the plan as an artifact and
    applies in its own checkout); the absolute paths recorded when it was saved. The first set
    that exists and whose digest is the saved one wins; else the first set that exists (the
    stale check then says the specs changed); else a ``ConfigError`` naming every path tried.
    """
    from reconciler.specs import spec_digest

    candidates: list[tuple[str, list[str]]] = []
    if override:
        candidates.append(("given with --specs", list(override)))
    else:
        folder = os.path.dirname(os.path.abspath(plan_file))
        relative = _path_list(document, "spec_paths_from_plan", plan_file)
        if relative is not None:
            joined = [os.path.normpath(os.path.join(folder, p)) for p in relative]
            candidates.append(("relative to the plan file", joined))
        given = _path_list(document, "spec_paths", plan_file)
        if given is None:
            raise ConfigError(f"{plan_file}: the saved plan does not name its spec files")
        candidates.append(("as given, from the working directory", given))
        absolute = _path_list(document, "spec_paths_absolute", plan_file)
        if absolute is not None:
            candidates.append(("absolute, as saved", absolute))
    wanted = str(document.get("spec_digest", ""))
    fallback: list[str] | None = None
    for _, paths in candidates:
        if not all(os.path.exists(p) for p in paths):
            continue
        try:
            digest = spec_digest(paths)
        except (ConfigError, OSError):
            continue
        if digest == wanted:
            return paths
        if fallback is None:
            fallback = paths
    if fallback is not None:
        return fallback
    tried = "\n  ".join(f"{', '.join(paths)} ({how})" for how, paths in candidates)
    raise ConfigError(
        f"{plan_file}: cannot find the spec files this plan was made from; tried:\n  {tried}\n"
        "check out the same specs, or name them with --specs PATH..."
    )


def _replan_saved(args: argparse.Namespace) -> tuple[Session, LiveState, Plan, dict[str, Any]]:
    """Re-plan a saved plan from its specs and live state; refuse unless they agree exactly.

    What runs is the fresh plan, never the file's changes: the file only has to say the same.
    """
    from reconciler.render.document import first_difference, from_document

    plan_file = args.paths[0]
    document = _read_document(plan_file)
    saved = from_document(document)
    if document.get("forced") is not False and not args.force:
        raise PlanError(
            f"{plan_file}: this plan was made with --force (it takes over objects that carry "
            "another owner's marker); apply it with --force as well, or make a new plan"
        )
    if getattr(args, "only", None):
        raise ConfigError(
            f"{plan_file}: --only is chosen when a plan is saved (plan --only ... --out)"
        )
    paths = _saved_spec_paths(plan_file, document, getattr(args, "specs", None))
    session = _open_session(args, paths)
    session.only = saved.only  # a partial plan stays partial: re-planned the same way
    live = _observe(session)
    fresh = _make_plan(session, live, force=args.force)
    _check_not_stale(saved, fresh, saved.spec_digest, session.spec_digest, paths)
    fresh_document = _document(fresh, session, "plan", force=args.force)
    difference = first_difference(document, fresh_document)
    if difference is not None:
        raise PlanError(
            f"{plan_file}: the saved plan is not what a fresh plan of the same specs and live "
            f"state says (edited by hand, or made by another version); nothing was applied; "
            f"make a new plan:\n  {difference}"
        )
    return session, live, fresh, fresh_document


def cmd_apply(args: argparse.Namespace) -> int:
    from reconciler.apply import apply_plan, check_destroy, interrupt_on_sigint
    from reconciler.kinds.executors import ApplyContext, lane, perform
    from reconciler.progress import JsonReporter, TextReporter

    color = _use_color(args, sys.stdout)
    saved_plan = _is_saved_plan(args.paths)
    if getattr(args, "specs", None) and not saved_plan:
        raise ConfigError("--specs names the specs of a saved plan: use it with apply FILE")
    if saved_plan:
        session, live, plan, document = _replan_saved(args)
        force = args.force
    else:
        session = _open_session(args, args.paths)
        live = _observe(session)
        force = args.force
        plan = _make_plan(session, live, force=force)
        document = _document(plan, session, "plan", force=force)

    if args.format == "json":
        from reconciler.progress import EVENTS_VERSION

        # "event" and "events_version" first, as on every event; the document's keys sorted
        body = json.dumps(document, sort_keys=True)
        sys.stdout.write(
            f'{{"event": "plan", "events_version": "{EVENTS_VERSION}", "document": {body}}}\n'
        )
    elif saved_plan:
        # reviewed when it was saved; say what it holds instead of printing it again
        counts = ", ".join(f"{n} to {k}" for k, n in plan.counts().items() if n)
        partial = f" (partial: only {', '.join(plan.only)})" if plan.partial else ""
        print(
            f"Applying the saved plan {args.paths[0]}{partial} (re-planned from "
            f"{', '.join(session.paths)}; it matches): {counts or 'no changes'}."
        )
    else:
        sys.stdout.write(_render(document, "text", color=color))
    if plan.empty:
        if args.format == "json":  # the last event still says how the run ended
            from reconciler.events import ApplyResult

            JsonReporter(sys.stdout).summary(ApplyResult(()), converged=True, remaining=0)
        return EXIT_OK
    check_destroy(plan, args.allow_destroy)
    if not _confirm(args, plan):
        print("Apply cancelled.")
        return EXIT_FAILED

    reporter: TextReporter | JsonReporter
    if args.format == "json":
        reporter = JsonReporter(sys.stdout)
    else:
        reporter = TextReporter(sys.stdout, color=color, tty=sys.stdout.isatty())
    ctx = ApplyContext(
        services=session.services,
        live=live,
        owner=session.desired.owner,
        declared=frozenset(session.desired.resources),
        credential_propagation=args.credential_propagation,
    )
    stop = threading.Event()
    notice = "\nInterrupted: finishing the calls in flight, starting nothing new\n"
    with interrupt_on_sigint(stop, notice=notice):
        result = apply_plan(
            plan,
            lambda change: perform(change, ctx),
            # more changes in progress than requests in flight (--workers, enforced by the
            # providers): a change waiting for a rate limit's turn holds a thread, not a request
            workers=args.workers * _CHANGES_PER_WORKER,
            lane=lane,
            reporter=reporter,
            stop=stop,
        )
    session.applied = True
    for address, message in ctx.notices:
        reporter.notice(address, message)
    if isinstance(reporter, JsonReporter):
        return _finish_json(args, session, reporter, result, force=force, before=live)
    reporter.summary(result)
    if result.interrupted:
        return EXIT_INTERRUPTED
    if not result.ok:
        _note_other_writers(session, live, result)
        return EXIT_FAILED
    return _check_converged(args, session, force=force, before=live, result=result)


def _finish_json(
    args: argparse.Namespace,
    session: Session,
    reporter: Any,
    result: Any,
    *,
    force: bool,
    before: LiveState,
) -> int:
    """``apply --format json``: check convergence first, so that the summary, the last event,
    carries ``converged`` (docs/apply-events.md); then exit as the text output does."""
    if result.interrupted or not result.ok:
        reporter.summary(result, converged=False)
        if result.interrupted:
            return EXIT_INTERRUPTED
        _note_other_writers(session, before, result)
        return EXIT_FAILED
    try:
        code = _check_converged(args, session, force=force, before=before, result=result)
    except NotConvergedError as exc:
        reporter.summary(result, converged=False, remaining=exc.remaining)
        raise
    except ReconcilerError:  # the re-read itself failed: convergence unknown
        reporter.summary(result, converged=False)
        raise
    reporter.summary(result, converged=True, remaining=0)
    return code


def _moved_by_others(session: Session, before: LiveState, after: LiveState, result: Any) -> str:
    """'' or the sentence naming what another writer of this owner changed during the run."""
    from reconciler.events import Status

    applied = {
        o.change.address: o.change.action for o in result.outcomes if o.status is Status.APPLIED
    }
    owner = session.desired.owner
    moved = other_writers(owner, before, after, applied)
    if not moved:
        return ""
    named = ", ".join(f"{a} ({how})" for a, how in moved[:_WRITERS_NAMED])
    more = f" and {len(moved) - _WRITERS_NAMED} more" if len(moved) > _WRITERS_NAMED else ""
    return (
        f"another writer changed {len(moved)} of this owner's objects during the run: "
        f"{named}{more}. Is another apply of owner '{owner}' running (another spec set with the "
        "same owner, or a second pipeline run)? Run one apply per owner at a time, then apply "
        "again"
    )


def _note_other_writers(session: Session, before: LiveState, result: Any) -> None:
    """After a failed apply, say whether another writer of this owner was at work (a change
    may have failed because of it). Best effort: a failure to read changes nothing."""
    try:
        after = _observe(session)
    except ReconcilerError:
        return
    sentence = _moved_by_others(session, before, after, result)
    if sentence:
        sys.stderr.write(f"note: {sentence}.\n")


_WRITERS_NAMED = 5


def other_writers(
    owner: str, before: LiveState, after: LiveState, applied: Mapping[Address, Action]
) -> list[tuple[Address, str]]:
    """This owner's objects that changed during an apply in a way the apply did not cause.

    ``before`` is the live state the plan was made from, ``after`` the one read once apply
    finished, ``applied`` the action of every change this run carried out. An object carrying
    the owner's marker (in either state) is another writer's doing when this run did not touch
    it and it appeared, is no longer read as this owner's (deleted, or its marker removed or
    changed; not when it merely fell out of what is read, see ``_out_of_sight``) or changed (its
    fingerprint); or when this run wrote it and it is gone, or deleted it and it is back.
    Returns (address, what happened), in address order.
    """
    found: list[tuple[Address, str]] = []
    owned = {a for state in (before, after) for a, r in state.resources.items() if r.owner == owner}
    for address in sorted(owned | set(applied)):
        old, new = before.resources.get(address), after.resources.get(address)
        action = applied.get(address)
        if action is None:
            if old is None or (old.owner != owner and new is not None and new.owner == owner):
                found.append((address, "appeared"))
            elif new is None:
                if _out_of_sight(address, owner, owned, after):
                    continue
                # not read again as this owner's: deleted, or its marker removed or changed
                found.append((address, "gone or no longer marked as this owner's"))
            elif old.fingerprint != new.fingerprint:
                found.append((address, "changed"))
        elif action is Action.DELETE and new is not None:
            found.append((address, "is back after this run deleted it"))
        elif action is not Action.DELETE and new is None:
            found.append((address, "gone after this run wrote it"))
    return found


def _out_of_sight(address: Address, owner: str, owned: set[Address], after: LiveState) -> bool:
    """Whether an object missing from ``after`` may simply not have been read: the tool reads a
    credential only under an identity that is declared or ours, and a connection only in an
    organisation the specs or this owner's objects lead to. When that identity lost this owner's
    marker (reported itself) or the organisation is no longer read, the object is out of sight,
    not gone."""
    from reconciler.kinds.executors import executor_for

    return executor_for(address.kind).out_of_sight(address, owner, owned, after)


def _check_converged(
    args: argparse.Namespace,
    session: Session,
    *,
    force: bool,
    before: LiveState | None = None,
    result: Any = None,
) -> int:
    """Observe and plan again: anything left means apply did not converge. When this owner's
    objects moved in ways this run did not cause, say so: another writer is at work."""
    live = _observe(session)
    again = _make_plan(session, live, force=force)
    if again.empty:
        if args.format != "json":
            print("Converged: a fresh plan shows no changes.")
        return EXIT_OK
    document = _document(again, session, "plan", force=force)
    sys.stderr.write(_render(document, "text", color=False))
    remaining = len(again.changes)
    if before is not None and result is not None:
        sentence = _moved_by_others(session, before, live, result)
        if sentence:
            raise NotConvergedError(
                f"{sentence}; {remaining} differences remain (shown above)", remaining=remaining
            )
    raise NotConvergedError(
        f"apply did not converge: {remaining} differences remain (shown above)",
        remaining=remaining,
    )


# -- export ------------------------------------------------------------------------------------

_GUID_TEXT = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_OWNER_TEXT = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_ORG_TEXT = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?$"


def _export_scope(args: argparse.Namespace) -> Any:
    """The ``ExportScope`` of the command line; ``ConfigError`` for a malformed one."""
    import re

    from reconciler.model import ExportScope

    subscriptions = list(args.subscription or [])
    for sub in subscriptions:
        if not re.match(_GUID_TEXT, sub):
            raise ConfigError(
                f"--subscription {sub!r}: must be a subscription id (a GUID like "
                "11111111-1111-1111-1111-111111111111)"
            )
    organizations = list(args.organization or [])
    for org in organizations:
        if not re.match(_ORG_TEXT, org):
            raise ConfigError(
                f"--organization {org!r}: must be an Azure DevOps organisation name (1-50 "
                "letters, digits and '-', starting and ending with a letter or digit), not a URL"
            )
    if args.project and not organizations:
        raise ConfigError("--project needs --organization (the organisation the project is in)")
    if args.owner is not None and not re.match(_OWNER_TEXT, args.owner):
        raise ConfigError(
            f"--owner {args.owner!r}: must be 1-63 characters: letters, digits, '.', '_' and "
            "'-', starting with a letter or digit"
        )
    return ExportScope(
        subscriptions=tuple(sorted({s.lower() for s in subscriptions})),
        resource_groups=tuple(sorted({g.lower() for g in args.resource_group or []})),
        organizations=tuple(sorted({o for o in organizations}, key=str.lower)),
        projects=tuple(sorted({p.lower() for p in args.project or []})),
    )


def _export_folder(out: str, force: bool) -> tuple[Path, list[str]]:
    """The folder to write into (created when its parent exists) and the files already in it.
    Refuses (``ConfigError``) a file, a dangling symbolic link, a missing parent, or a
    non-empty folder without ``--force``."""
    folder = Path(out)
    if folder.is_symlink() and not folder.exists():
        # a dangling link: writing through it would create a folder somewhere else
        raise ConfigError(
            f"--out {out}: is a symbolic link to {os.readlink(folder)}, which does not exist; "
            "name an existing folder, or a new path"
        )
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {out}: is a file; name a folder for the spec files")
    if not folder.exists():
        if not folder.resolve().parent.is_dir():
            raise ConfigError(
                f"--out {out}: the folder {str(folder.parent)!r} does not exist; create it first"
            )
        return folder, []
    present = sorted(p.name for p in folder.iterdir())
    if present and not force:
        raise ConfigError(
            f"--out {out}: the folder is not empty ({len(present)} entries, e.g. "
            f"{present[0]}); export into a new folder, or give --force to replace the files "
            "an export writes there (other files are left as they are)"
        )
    return folder, present


def cmd_export(args: argparse.Namespace) -> int:
    """Read the live estate of the scope and write spec files that declare it (README
    "Taking over an existing estate: export"). Exit 0 written, 1 refused."""
    import re
    import shutil
    import tempfile

    from reconciler.errors import SpecError
    from reconciler.export import export_specs, owners_found
    from reconciler.model import DesiredState, Reach
    from reconciler.observe import observe
    from reconciler.retry import RetryNotices
    from reconciler.specs import builtin_roles, load_desired_state, schema_path

    scope = _export_scope(args)
    folder, present = _export_folder(args.out, args.force)
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    services = _connect(args)
    desired = DesiredState(
        args.owner or "",
        {},
        (),
        Reach(subscriptions=scope.subscriptions, organizations=scope.organizations),
    )
    notices = RetryNotices(sys.stderr.write)
    try:
        live = observe(services, desired, workers=args.workers, on_retry=notices, export=scope)
    finally:
        notices.close()
    for org in scope.organizations:
        why = live.organization_errors.get(org.lower())
        if why:
            raise ConfigError(f"--organization {org}: cannot be read: {why}")
    spelled = [n for org in scope.organizations for n in live.project_names.get(org.lower(), ())]
    for project in args.project or []:
        if project.lower() not in {n.lower() for n in spelled}:
            import difflib

            close = difflib.get_close_matches(project, spelled, 1, 0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"--project {project}: no such project in {', '.join(scope.organizations)}{hint}"
            )
    owner = args.owner
    if owner is None:
        # only a re-export of one owner's estate, where every object carries its marker
        found, unmarked = owners_found(live)
        if len(found) != 1 or unmarked:
            listed = f"; owner markers found: {', '.join(found)}" if found else ""
            raise ConfigError(
                "--owner NAME is needed: the owner marker the exported specs will stamp on "
                f"each object they adopt (found without one only when every object in scope "
                f"carries one and the same marker{listed})"
            )
        owner = found[0]
    try:
        schema_ref = Path(os.path.relpath(schema_path(), folder.resolve())).as_posix()
    except ValueError:  # no relative path between two Windows drives
        schema_ref = schema_path().as_posix()
    builtin = {guid.lower(): name for name, guid in builtin_roles().items()}
    result = export_specs(
        live, scope, owner=owner, split=args.split, schema_ref=schema_ref, builtin=builtin
    )
    if not result.files:
        raise ConfigError(
            "nothing to export: no identity or service connection found in "
            + ", ".join(
                [f"subscription {s}" for s in scope.subscriptions]
                + [f"organization {o}" for o in scope.organizations]
            )
            + (
                f" (resource groups {', '.join(args.resource_group)})"
                if args.resource_group
                else ""
            )
        )
    # written beside the folder first and validated there: a folder is never left half written
    parent = folder.resolve().parent
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.export-", dir=parent))
    except OSError as exc:
        raise ConfigError(f"--out {args.out}: cannot write there: {exc.strerror or exc}") from None
    try:
        for name, text in result.files.items():
            (staging / name).write_text(text, encoding="utf-8")
        try:
            load_desired_state([str(staging / name) for name in result.files])
        except SpecError as exc:  # a bug: what export writes must validate
            lines = "\n  ".join(str(p) for p in exc.problems[:10])
            raise RuntimeError(f"the exported specs do not validate:\n  {lines}") from None
        folder.mkdir(exist_ok=True)
        for name in result.files:
            os.replace(staging / name, folder / name)
    except OSError as exc:
        raise ConfigError(f"--out {args.out}: cannot write there: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    replaced = sorted(set(present) & set(result.files))
    others = sorted(n for n in present if n not in result.files and re.search(r"\.ya?ml$", n, re.I))
    print(
        f"Exported {result.exported} objects into {args.out} ({len(result.files)} file"
        f"{'s' if len(result.files) != 1 else ''}: {', '.join(result.files)}); "
        f"{result.implied} federated credential{'s' if result.implied != 1 else ''} implied by "
        f"service connections; {result.unexpressed} not expressible (a comment in the file "
        "says why). Next: reconciler validate, then reconciler plan shows adopting each "
        f"object (owner '{owner}') and nothing else."
    )
    if replaced:
        print(f"replaced: {', '.join(replaced)}", file=sys.stderr)
    if others:
        print(
            f"warning: {args.out} also holds spec files this export did not write: "
            f"{', '.join(others)}; they are loaded with the exported ones",
            file=sys.stderr,
        )
    return EXIT_OK
