"""Command line: argument parsing and the single error boundary that maps failures to exit codes.

Heavy modules (the Azure SDK, the simulator) are imported inside the command that needs them,
so ``--version``, ``--help`` and ``validate`` start fast.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from reconciler.errors import ConfigError, ReconcilerError, SpecError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CHANGES = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A command line argparse refused; carries the (sub)parser whose usage applies."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """Raises ``UsageError`` instead of exiting with argparse's status 2.

    Exit 2 means "changes present" (``drift``, ``plan --detailed-exitcode``): a mistyped flag in
    a scheduled job must not read as drift, so ``main`` maps usage errors to exit 1.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)


def _propagation_seconds(text: str) -> float:
    """0 to 150 seconds: a wait longer than the engine's retry budget for one step (180 s)
    would fail the change instead of waiting."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 150:
        raise argparse.ArgumentTypeError(f"must be between 0 and 150 seconds, got {text}")
    return value


def _version() -> str:
    # importlib.metadata costs ~60 ms to import: only --version pays it
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wif-reconciler")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


class _VersionAction(argparse.Action):
    """``--version``, looking the version up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings,
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            nargs=0,
            help="show program's version number and exit",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        sys.stdout.write(f"{parser.prog} {_version()}\n")
        parser.exit()


def _cmd_validate(args: argparse.Namespace) -> int:
    from reconciler.specs import describe, load_desired_state, role_warnings

    fmt = getattr(args, "format", "text")
    if fmt == "text":
        desired = load_desired_state(args.paths)
        for warning in role_warnings(desired):
            print(warning, file=sys.stderr)
        print(describe(desired, verbose=args.verbose))
        return EXIT_OK
    from reconciler.render.problems import render_problems

    try:
        desired = load_desired_state(args.paths)
    except SpecError as exc:
        # CI reads workflow and logging commands from stdout; the count goes to the log
        sys.stdout.write(render_problems(exc.problems, fmt))
        count = len(exc.problems)
        print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        return EXIT_FAILED
    warnings = role_warnings(desired)
    summary = describe(desired, verbose=args.verbose)
    if fmt == "json":
        sys.stdout.write(render_problems([], fmt, summary=summary, warnings=warnings))
    else:
        sys.stdout.write(render_problems(warnings, fmt, level="warning") + summary + "\n")
    return EXIT_OK


def _cmd_comment(args: argparse.Namespace) -> int:
    from reconciler.comment_cli import cmd_comment

    return cmd_comment(args)


def _cmd_sim(args: argparse.Namespace) -> int:
    from reconciler.sim.cli import SimConfigError, run

    try:
        result: int = run(args)
    except SimConfigError as exc:
        raise ConfigError(str(exc)) from exc
    return result


def _cmd_runner(name: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        from reconciler import runner

        command: Handler = getattr(runner, f"cmd_{name}")
        return command(args)

    return handler


def _add_target_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target")
    g.add_argument(
        "--target",
        metavar="FILE",
        help="simulator connection file, whatever its name (default: $RECONCILER_TARGET; "
        "without either, the real Azure and Azure DevOps)",
    )
    g.add_argument(
        "--cloud",
        choices=["public", "usgovernment", "china"],
        default=None,
        help="which real Azure cloud (default: public); not with a connection file",
    )
    g.add_argument(
        "--auth",
        choices=["auto", "pipelines", "cli", "environment", "managed-identity", "default"],
        default="auto",
        help="how to obtain Entra tokens from the real cloud (default: auto); a connection "
        "file always uses its own client credentials, so any other value with one is an error",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=16,
        metavar="N",
        help="concurrent requests while reading and applying (default: 16)",
    )


_MAX_LOG_DELAY_S = 86400.0  # the logs show events within minutes; a day is already generous


def _log_delay(text: str) -> float:
    """Seconds from 0 to a day (argparse type for --log-delay)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= _MAX_LOG_DELAY_S:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give seconds from 0 to {_MAX_LOG_DELAY_S:g} (a day)"
        )
    return value


def _add_only_option(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument(
        "--only",
        action="append",
        metavar="ADDRESS_OR_NAME",
        help=(
            f"{verb} only this object and what depends on it (an identity's credentials, role "
            "assignments and connections; a connection's credential), prune nothing else: a "
            "full address (identity.SUB/RG/NAME) or an identity's or connection's name; "
            "repeatable (Terraform's -target)"
        ),
    )


def _add_render_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format", choices=["text", "json", "markdown"], default="text", help="output format"
    )
    p.add_argument("--no-color", action="store_true", help="never colour the text output")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reconciler",
        description=(
            "Declare Azure DevOps workload identity federation in YAML: user-assigned managed "
            "identities, their federated credentials and role assignments, and the service "
            "connections that use them. Plan the difference against live Azure and Azure "
            "DevOps, apply it in order, detect drift."
        ),
        epilog=(
            "exit codes: 0 success / in sync, 1 error (usage errors included), 2 changes "
            "present (plan --detailed-exitcode, drift; output: objects missing), 3 internal "
            "error, 130 interrupted"
        ),
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "validate",
        help="check spec files against the schema and each other",
        description=(
            "Check spec files and folders (*.yaml, *.yml) against the schema and each other, "
            "reporting every problem as file:line:column: field: message. Talks to no service."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders")
    p.add_argument("-v", "--verbose", action="store_true", help="list every desired resource")
    p.add_argument(
        "--format",
        choices=["text", "json", "github", "azure-devops"],
        default="text",
        help="how to print problems: text, json, GitHub workflow commands (github) or Azure "
        "Pipelines logging commands (azure-devops), which annotate the pull request's lines",
    )
    p.set_defaults(handler=_cmd_validate)

    p = sub.add_parser(
        "plan",
        help="show what apply would change",
        description="Compare the specs with live state and print the ordered plan. Never writes.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders")
    _add_render_options(p)
    p.add_argument("--out", metavar="FILE", help="also save the plan document for apply/show")
    p.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when in sync, 2 when there are changes, 1 on error",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="take over objects that carry another owner's marker instead of failing",
    )
    _add_only_option(p, "plan")
    _add_target_options(p)
    p.set_defaults(handler=_cmd_runner("plan"))

    p = sub.add_parser(
        "drift",
        help="report out-of-band changes (exit 0 in sync, 2 drift, 1 error)",
        description=(
            "For scheduled jobs: compare live state with the specs and report each difference "
            "as drift. Exit 0 in sync, 2 drift found, 1 error."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders")
    _add_render_options(p)
    p.add_argument("--out", metavar="FILE", help="also save the report as a plan document")
    p.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="accepted for Terraform habits; drift always uses the detailed exit code",
    )
    p.add_argument(
        "--baseline",
        metavar="FILE",
        help="read only what the Activity Log shows changed since the last run recorded in "
        "FILE (read if present, written after a successful run; keep it as a pipeline cache "
        "or artifact). Without it, or when it cannot be used, everything is read",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="read everything even with a usable baseline (a periodic full sweep); the "
        "baseline is written afresh",
    )
    p.add_argument(
        "--log-delay",
        type=_log_delay,
        default=900.0,
        metavar="SECONDS",
        help="how long the Activity Log may take to show an event (default 900): changes "
        "younger than this are left to the next run's window",
    )
    _add_only_option(p, "check")
    _add_target_options(p)
    p.set_defaults(handler=_cmd_runner("drift"), force=False)

    p = sub.add_parser(
        "output",
        help="print the live ids pipelines need (client, principal, tenant, connection ids)",
        description=(
            "For each declared identity: client id, principal id, tenant id and resource id; "
            "for each declared service connection: its id, issuer, subject and the client id "
            "it signs in as. Reads only. Exit 0 when every declared object exists, 2 when some "
            "are missing (listed as missing), 1 on error."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders")
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    _add_target_options(p)
    p.set_defaults(handler=_cmd_runner("output"))

    p = sub.add_parser(
        "export",
        help="write spec files that declare the live estate (to take it over)",
        description=(
            "Read the identities (with their federated credentials and role assignments) of "
            "the given subscriptions and the service connections of the given Azure DevOps "
            "organisations, and write spec files that declare them, with a comment for each "
            "object a spec cannot declare. Reads only. Then validate, plan (it shows adopting "
            "each object and nothing else) and apply."
        ),
    )
    p.add_argument(
        "--subscription",
        action="extend",
        nargs="+",
        required=True,
        metavar="ID",
        help="subscription id whose identities and role assignments are exported (repeatable)",
    )
    p.add_argument(
        "--resource-group",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="export only the identities in these resource groups (default: every group)",
    )
    p.add_argument(
        "--organization",
        action="extend",
        nargs="+",
        metavar="ORG",
        help="Azure DevOps organisation whose service connections are exported",
    )
    p.add_argument(
        "--project",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="export only the connections of these projects (default: every project)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the spec files")
    p.add_argument(
        "--split",
        choices=["resource-group", "project", "none"],
        default="resource-group",
        help="one file per identity resource group (default), per project, or one file",
    )
    p.add_argument(
        "--owner",
        metavar="NAME",
        help="the owner the specs name (default: the one owner marker found in scope)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty folder, replacing the files of the same names",
    )
    _add_target_options(p)
    p.set_defaults(handler=_cmd_runner("export"))

    p = sub.add_parser(
        "show",
        help="render a saved plan again",
        description="Render a plan document saved with plan --out.",
    )
    p.add_argument("file", metavar="FILE", help="plan document written by plan --out")
    _add_render_options(p)
    p.set_defaults(handler=_cmd_runner("show"))

    p = sub.add_parser(
        "apply",
        help="make live state match the specs",
        description=(
            "Apply the specs (PATH... computes a fresh plan and asks for confirmation) or a "
            "saved plan (one FILE written by plan --out, refused when anything moved since)."
        ),
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="spec files or folders, or a saved plan"
    )
    _add_render_options(p)
    p.add_argument("--auto-approve", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--allow-destroy",
        action="store_true",
        help="permit deleting or replacing identities and service connections",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="take over objects that carry another owner's marker instead of failing",
    )
    p.add_argument(
        "--specs",
        action="append",
        metavar="PATH",
        help=(
            "with a saved plan: a spec file or folder it was made from (repeat for several), "
            "when they are not where the plan says (default: tried relative to the plan file, "
            "as given from the working directory, then absolute)"
        ),
    )
    p.add_argument(
        "--credential-propagation",
        type=_propagation_seconds,
        default=60.0,
        metavar="SECONDS",
        help=(
            "how long to wait after writing a federated credential before pointing an existing "
            "service connection at it (another identity, a conversion, the Entra issuer): Microsoft "
            "Entra honours a new credential only after a delay no API reports (default 60; "
            "0 to 150)"
        ),
    )
    _add_only_option(p, "apply")
    _add_target_options(p)
    p.set_defaults(handler=_cmd_runner("apply"))

    p = sub.add_parser(
        "comment",
        help="post a saved plan or drift report on the pull request (edited in place later)",
        description=(
            "Post the Markdown rendering of a plan document (plan --out or drift --out) as a "
            "comment on the pull request the pipeline builds, or edit the comment an earlier "
            "run posted for the same owner and spec paths. Azure Repos: SYSTEM_ACCESSTOKEN "
            "(or an Entra token from --auth); GitHub: GITHUB_TOKEN with pull-requests: write."
        ),
    )
    p.add_argument("file", metavar="PLAN_FILE", help="plan document written by plan/drift --out")
    p.add_argument(
        "--provider",
        choices=["azure-devops", "github"],
        help="where the pull request is (default: detected from TF_BUILD / GITHUB_ACTIONS)",
    )
    _add_target_options(p)
    p.set_defaults(handler=_cmd_comment)

    p = sub.add_parser(
        "sim",
        help="the local Azure and Azure DevOps simulator",
        description="A local, stateful simulator of Entra ID, ARM and Azure DevOps over HTTPS.",
    )
    from reconciler.sim.cli import add_arguments as add_sim_arguments

    add_sim_arguments(p)
    p.set_defaults(handler=_cmd_sim)
    return parser


def _own_the_collector() -> None:
    """Tune the garbage collector for a one-shot run (only when this process is the CLI).

    A plan holds hundreds of thousands of long-lived objects (specs, live state, the plan) and
    makes almost no reference cycles: collecting every 700 allocations cost ~0.35 s of a
    1,000-identity plan, and the full collection at interpreter exit another ~0.15 s.
    """
    gc.set_threshold(50_000, 20, 100)
    # whatever is alive at exit stays alive until the process ends: skip scanning it then
    atexit.register(gc.freeze)


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def _subcommand_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The deepest subcommand parser ``args`` went through (``sim serve`` as well as ``plan``)."""
    found = parser
    for action in found._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest or "", None)
            child = action.choices.get(chosen) if isinstance(chosen, str) else None
            if child is not None:
                return _subcommand_parser(child, args)
    return found


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an unknown argument is reported against the subcommand it was given to
    (argparse reports it against the top-level parser, whose usage does not help)."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        _subcommand_parser(parser, args).error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the console script or ``python -m reconciler``: the process is ours
        _own_the_collector()
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except UsageError as exc:
        if exc.parser is parser:  # no command: list them
            exc.parser.print_help(sys.stderr)
        else:
            exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    handler: Handler = args.handler
    try:
        return handler(args)
    except SpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        return EXIT_FAILED
    except ReconcilerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        # a terminal echoed "^C" where the cursor was (after a progress bar or a prompt):
        # the message starts on its own line
        start = "\n" if _isatty(sys.stderr) else ""
        print(f"{start}interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # the one place that catches everything: a bug, not user error
        import traceback

        traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
