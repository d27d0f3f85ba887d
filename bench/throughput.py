"""How many requests per second the simulator serves to real clients over the providers'
shared keep-alive pool: the Azure management SDK's own client (what apply's writes use), and
the tool's read path (plain REST over ``rest.Transport``) for ARM and Azure DevOps.

``python -m bench.throughput CONNECTION.json SUBSCRIPTION RESOURCE_GROUP IDENTITY ORG PROJECT
[CALLS] [WORKERS]``; prints one JSON line. Run in its own process against a simulator in
another, with no added latency: this measures client plus server cost per request.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reconciler.providers import connect
from reconciler.providers.target import resolve_target


def _rate(fn: Callable[[], Any], calls: int, workers: int) -> dict[str, float]:
    fn()  # warm: token, client construction, connection
    cpu = time.process_time()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(fn) for _ in range(calls)]:
            future.result()
    wall = time.perf_counter() - started
    return {
        "calls": calls,
        "workers": workers,
        "wall_s": round(wall, 3),
        "per_s": round(calls / wall, 1),
        "client_cpu_ms_per_call": round((time.process_time() - cpu) / calls * 1000, 3),
    }


def main(argv: list[str]) -> int:
    conn, sub, rg, identity, org, project = argv[:6]
    calls = int(argv[6]) if len(argv) > 6 else 1000
    workers = int(argv[7]) if len(argv) > 7 else 16
    services = connect(resolve_target(conn), workers=workers)
    arm, devops = services.arm, services.devops
    # the management SDK's own client (what writes use), over the same pool
    sdk = arm._msi_client(sub).federated_identity_credentials

    def sdk_list() -> Any:
        return list(sdk.list(rg, identity))

    out = {
        "arm_sdk_list_credentials": _rate(sdk_list, calls, workers),
        "arm_sdk_list_credentials_1_worker": _rate(sdk_list, calls // 4, 1),
        "arm_tool_list_credentials": _rate(
            lambda: arm.list_credentials(sub, rg, identity), calls, workers
        ),
        "arm_tool_list_credentials_1_worker": _rate(
            lambda: arm.list_credentials(sub, rg, identity), calls // 4, 1
        ),
        "devops_tool_list_endpoints": _rate(
            lambda: devops.list_endpoints(org, project), calls, workers
        ),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
