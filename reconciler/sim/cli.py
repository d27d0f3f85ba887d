"""``reconciler sim ...`` arguments. Kept light: the server is imported only when it runs."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser(
        "serve",
        help="run the simulator in the foreground",
        description=(
            "Serve a local Entra token endpoint, ARM (Managed Identity, Authorization) and Azure "
            "DevOps over HTTPS until Ctrl-C. Writes a connection file for --target."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=0, metavar="N", help="port (default: 0, any free port)"
    )
    p.add_argument(
        "--state", metavar="FILE", help="persist state here and start from it if it exists"
    )
    p.add_argument(
        "--seed", metavar="FILE", help="seed world, YAML or JSON (default: the built-in one)"
    )
    p.add_argument(
        "--latency-ms", type=float, default=0, metavar="N", help="added to every response"
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject faults, e.g. 429:0.1, 5xx:0.05, drop:0.01, lag:2000, principal-window:5, "
        "throttle[:SCALE], jitter:20, seed:7 (repeatable)",
    )
    p.add_argument(
        "--connection-file",
        default=".sim/connection.json",
        metavar="PATH",
        help="where to write the connection file; the CA certificate goes beside it "
        "(default: .sim/connection.json)",
    )


class SimConfigError(Exception):
    """A simulator option or seed that cannot be used; the tool's command line reports it as a
    configuration error (exit 1). The simulator imports nothing of the tool's, not even its
    error types."""


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C. Raises ``SimConfigError`` for a bad option or seed."""
    import json
    import signal
    import threading
    from pathlib import Path

    from reconciler.sim.faults import make_faults
    from reconciler.sim.server import start

    if args.sim_command != "serve":
        raise SimConfigError(f"unknown sim command {args.sim_command!r}")
    try:
        faults = make_faults(args.fault, make_faults({"latency_ms": args.latency_ms}))
    except ValueError as exc:
        raise SimConfigError(str(exc)) from exc
    connection_file = Path(args.connection_file).resolve()
    try:
        sim = start(
            seed=Path(args.seed) if args.seed else None,
            state_dir=connection_file.parent,
            latency_ms=args.latency_ms,
            faults=faults,
            host=args.host,
            port=args.port,
            state_file=Path(args.state) if args.state else None,
            connection_file=connection_file,
        )
    except (OSError, ValueError) as exc:
        raise SimConfigError(f"cannot start the simulator: {exc}") from exc
    c = sim.connection
    print("reconciler simulator running (Ctrl-C stops it)")
    print(f"  ARM            {c['arm_url']}")
    print(f"  Azure DevOps   {c['devops_url']}/{{organization}}")
    print(f"  audit log      {c['audit_url']}/{{organization}}/_apis/audit/auditlog")
    print(f"  token endpoint https://{c['authority']}/{c['tenant_id']}/oauth2/v2.0/token")
    print(f"  CA certificate {c['ca_bundle']}")
    print(f"  connection     {c['connection_file']}  (use --target or RECONCILER_TARGET)")
    print(f"  admin          {c['arm_url']}/_sim/stats")
    if args.state:
        print(f"  state          {Path(args.state).resolve()}")
    print(json.dumps(c), flush=True)

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sim.stop()
    print("simulator stopped", flush=True)
    return 0
