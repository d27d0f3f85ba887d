"""How many requests per second the simulator serves to the real SDK clients.

    python -m reconciler.sim.loadcheck [--seconds 5] [--threads 4] [--processes 1] [--in-process]

By default the simulator runs as ``reconciler sim serve`` in a child process (as in a demo or
benchmark) and this process drives it with ``azure-mgmt-msi``, ``azure-mgmt-authorization``
and ``requests`` over HTTPS keep-alive: a read-heavy mix like ``plan`` (identity gets, credential
lists, role assignment lists, service endpoint lists) plus credential writes like ``apply``.
Clients cost far more CPU per request than the server (``sdk-notes.md``: ~1.7 ms), so one
client process saturates before the server does; ``--processes 2`` shows what the server
sustains, and the child server's CPU time per request is printed. It prints one line per phase
and a JSON summary. A measurement, not a test: the figure
depends on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

SANDBOX = "11111111-1111-1111-1111-111111111111"


def _serve(directory: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "sim",
            "serve",
            "--port",
            "0",
            "--connection-file",
            str(directory / "connection.json"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            connection: dict[str, Any] = json.loads(line)
            return proc, connection
    raise RuntimeError("the simulator did not start")


def _clients(c: dict[str, Any], threads: int) -> tuple[Any, Any, Any, Any]:
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from azure.identity import ClientSecretCredential
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.msi import ManagedServiceIdentityClient

    credential = ClientSecretCredential(
        c["tenant_id"],
        c["client_id"],
        c["client_secret"],
        authority=c["authority"],
        disable_instance_discovery=True,
        connection_verify=c["ca_bundle"],
    )
    session = requests.Session()
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=threads * 2)
    session.mount("https://", adapter)
    kwargs = {
        "base_url": c["arm_url"],
        "credential_scopes": ["https://management.azure.com/.default"],
        "connection_verify": c["ca_bundle"],
        "transport": RequestsTransport(
            session=session, session_owner=False, connection_verify=c["ca_bundle"]
        ),
    }
    msi = ManagedServiceIdentityClient(credential, SANDBOX, **kwargs)
    authz = AuthorizationManagementClient(credential, SANDBOX, **kwargs)
    ado = requests.Session()
    ado.trust_env = False
    ado.verify = c["ca_bundle"]
    ado.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=threads * 2))
    ado.headers["Authorization"] = (
        "Bearer " + credential.get_token("499b84ac-1321-427f-aa17-267ca6975798/.default").token
    )
    return credential, msi, authz, ado


def _drive(
    seconds: float, threads: int, work: Callable[[int, int], str]
) -> tuple[int, float, Counter[str]]:
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        mine: Counter[str] = Counter()
        n = 0
        try:
            while time.perf_counter() < stop:
                mine[work(index, n)] += 1
                n += 1
        except BaseException as exc:  # report, do not hang the others
            errors.append(exc)
        with lock:
            counts.update(mine)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return sum(counts.values()), elapsed, counts


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _phase_worker(
    connection: dict[str, Any],
    index: int,
    threads: int,
    seconds: float,
    phase: str,
    start_at: float,
) -> tuple[int, float, dict[str, int]]:
    """One client process: its own SDK clients, ``threads`` threads, one phase."""
    _, msi, authz, ado = _clients(connection, threads)
    identities = msi.user_assigned_identities
    creds = msi.federated_identity_credentials
    assignments = authz.role_assignments
    names = [f"load-mi-{index}-{t}" for t in range(threads)]
    for name in names:
        identities.create_or_update("identities-rg", name, {"location": "westeurope"})
    devops = connection["devops_url"]

    def plan_mix(t: int, n: int) -> str:
        step = n % 4
        if step == 0:
            identities.get("identities-rg", names[t])
            return "UserAssignedIdentities_Get"
        if step == 1:
            list(creds.list("identities-rg", names[t]))
            return "FederatedIdentityCredentials_List"
        if step == 2:
            list(assignments.list_for_scope(f"/subscriptions/{SANDBOX}", filter="atScope()"))
            return "RoleAssignments_ListForScope"
        r = ado.get(
            f"{devops}/contoso/platform/_apis/serviceendpoint/endpoints?api-version=7.1&type=azurerm"
        )
        r.raise_for_status()
        return "ServiceEndpoints_List"

    def apply_mix(t: int, n: int) -> str:
        body = {
            "issuer": "https://token.actions.githubusercontent.com",
            "subject": f"repo:load/{index}-{t}:{n % 10}",
            "audiences": ["api://AzureADTokenExchange"],
        }
        creds.create_or_update("identities-rg", names[t], f"cred-{n % 10}", body)
        return "FederatedIdentityCredentials_CreateOrUpdate"

    time.sleep(max(0.0, start_at - time.time()))  # all processes start together
    total, elapsed, counts = _drive(seconds, threads, plan_mix if phase == "plan" else apply_mix)
    return total, elapsed, dict(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reconciler.sim.loadcheck", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase (default 5)")
    parser.add_argument(
        "--threads", type=int, default=4, help="client threads per process (default 4)"
    )
    parser.add_argument("--processes", type=int, default=1, help="client processes (default 1)")
    parser.add_argument(
        "--in-process", action="store_true", help="run the server in this process (shares the GIL)"
    )
    args = parser.parse_args(argv)

    import concurrent.futures
    import multiprocessing

    directory = Path(tempfile.mkdtemp(prefix="reconciler-loadcheck-"))
    proc = None
    sim = None
    if args.in_process:
        from reconciler.sim.server import start

        sim = start(state_dir=directory)
        connection = sim.connection
    else:
        proc, connection = _serve(directory)
    results: dict[str, Any] = {
        "server": "in-process" if sim else "child process",
        "client_processes": args.processes,
        "threads_per_process": args.threads,
        "cpus": os.cpu_count(),
    }
    try:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.processes, mp_context=context) as pool:
            for phase, label in (("plan", "plan (reads)"), ("apply", "apply (credential writes)")):
                server_cpu = _cpu_seconds(proc.pid) if proc else 0.0
                start_at = time.time() + 3.0  # room for the workers to import and sign in
                futures = [
                    pool.submit(
                        _phase_worker, connection, i, args.threads, args.seconds, phase, start_at
                    )
                    for i in range(args.processes)
                ]
                done = [f.result() for f in futures]
                total = sum(d[0] for d in done)
                elapsed = max(d[1] for d in done)
                counts: Counter[str] = Counter()
                for d in done:
                    counts.update(d[2])
                rate = total / elapsed
                line = f"{label:28s} {total:6d} requests in {elapsed:5.2f} s = {rate:7.1f} req/s"
                if proc:
                    # includes the workers' setup requests: an upper bound per request
                    per_request = (_cpu_seconds(proc.pid) - server_cpu) / max(1, total) * 1000
                    line += f"  server CPU {per_request:.2f} ms/request"
                    results[f"{phase}_server_cpu_ms_per_request"] = round(per_request, 2)
                print(line, dict(counts), flush=True)
                results[f"{phase}_req_per_s"] = round(rate, 1)
        print(json.dumps(results))
    finally:
        if sim is not None:
            sim.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
