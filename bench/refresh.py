"""The per-resource refresh model, run for real: one GET per declared resource (two per role
assignment), ten workers over one keep-alive pool, honouring ``Retry-After`` on 429 as the
azure SDKs do. Run as ``python -m bench.refresh READS.json CONNECTION.json`` in its own process;
prints one JSON line (wall, requests, 429s).

It uses plain ``requests`` rather than the Azure SDK, so it is if anything cheaper per call
than the provider it models.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

WORKERS = 10


def _token(session: requests.Session, conn: dict[str, str], scope: str) -> str:
    url = f"https://{conn['authority']}/{conn['tenant_id']}/oauth2/v2.0/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": conn["client_id"],
        "client_secret": conn["client_secret"],
        "scope": scope,
    }
    # verify per request: a session-level CA loses to $REQUESTS_CA_BUNDLE (requests' rule)
    response = session.post(url, data=form, timeout=30, verify=conn["ca_bundle"])
    response.raise_for_status()
    return str(response.json()["access_token"])


def main(argv: list[str]) -> int:
    reads: list[dict[str, Any]] = json.loads(Path(argv[0]).read_text())
    conn: dict[str, str] = json.loads(Path(argv[1]).read_text())
    session = requests.Session()
    session.mount("https://", HTTPAdapter(pool_maxsize=WORKERS, max_retries=0))
    started = time.perf_counter()
    arm = {
        "Authorization": "Bearer " + _token(session, conn, "https://management.azure.com/.default")
    }
    ado = {
        "Authorization": "Bearer "
        + _token(session, conn, "499b84ac-1321-427f-aa17-267ca6975798/.default")
    }
    throttled = 0
    failed = 0

    def get(read: dict[str, Any]) -> None:
        nonlocal throttled, failed
        url = conn["arm_url"] + read["path"]
        headers = ado if read["cls"] == "ado" else arm
        for _ in range(20):
            response = session.get(url, headers=headers, timeout=120, verify=conn["ca_bundle"])
            if response.status_code != 429:
                if response.status_code >= 400:
                    failed += 1
                return
            throttled += 1
            time.sleep(float(response.headers.get("Retry-After", "1")))
        failed += 1

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(get, reads))
    wall = time.perf_counter() - started
    print(
        json.dumps({"wall_s": wall, "reads": len(reads), "throttled": throttled, "failed": failed})
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
