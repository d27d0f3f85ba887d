"""Helpers for end-to-end tests: drive ``cli.main`` against the session simulator over HTTPS,
and read the simulator's own API (not the tool) to verify what landed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from reconciler.cli import main
from reconciler.sim.server import Simulator

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"
WALKTHROUGH = SPECS / "walkthrough.yaml"
SANDBOX = "11111111-1111-1111-1111-111111111111"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"


class ScaledClock:
    """Really sleeps, but only a fraction of what is asked, and records the asked time.

    The simulator's fault windows pass in real time, so a pure fake clock would burn the retry
    budget before a window closes; scaling keeps 'Retry-After: 1' at a few milliseconds.
    """

    def __init__(self, scale: float = 0.02) -> None:
        self.scale = scale
        self.asked: list[float] = []
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def monotonic(self) -> float:
        with self._lock:
            return self._start + sum(self.asked) + (time.monotonic() - self._start)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.asked.append(seconds)
        if seconds > 0:
            time.sleep(seconds * self.scale)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The CLI in-process. ``apply`` waits for no credential propagation unless the test says
    otherwise: the simulator honours a new credential at once unless its ``fic-propagation``
    fault is set, and the tests that set it pass their own ``--credential-propagation``."""
    if argv and argv[0] == "apply" and "--credential-propagation" not in argv:
        argv = (*argv, "--credential-propagation", "0")
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def target(sim: Simulator) -> list[str]:
    return ["--target", str(sim.connection_file)]


class Portal:
    """The simulator's public REST APIs with its own client: what a person in the portal sees."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = sim.connection["ca_bundle"]
        self._tokens: dict[str, str] = {}

    def _token(self, scope: str) -> str:
        if scope not in self._tokens:
            c = self.sim.connection
            r = self.session.post(
                f"https://{c['authority']}/{c['tenant_id']}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": c["client_id"],
                    "client_secret": c["client_secret"],
                    "scope": scope,
                },
            )
            r.raise_for_status()
            self._tokens[scope] = r.json()["access_token"]
        return self._tokens[scope]

    def arm(self, path: str, api_version: str) -> Any:
        r = self.session.get(
            f"{self.sim.arm_url}{path}",
            params={"api-version": api_version},
            headers={
                "Authorization": f"Bearer {self._token('https://management.azure.com/.default')}"
            },
        )
        r.raise_for_status()
        return r.json()

    def devops(self, path: str, **params: str) -> Any:
        r = self.session.get(
            f"{self.sim.devops_url}{path}",
            params={"api-version": "7.1", **params},
            headers={
                "Authorization": f"Bearer {self._token('499b84ac-1321-427f-aa17-267ca6975798/.default')}"
            },
        )
        r.raise_for_status()
        return r.json()

    def _arm_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token('https://management.azure.com/.default')}"}

    def put_credential(self, identity_id: str, name: str, issuer: str, subject: str) -> Any:
        """A federated credential added by hand (in the portal)."""
        r = self.session.put(
            f"{self.sim.arm_url}{identity_id}/federatedIdentityCredentials/{name}",
            params={"api-version": "2024-11-30"},
            headers=self._arm_headers(),
            json={
                "properties": {
                    "issuer": issuer,
                    "subject": subject,
                    "audiences": ["api://AzureADTokenExchange"],
                }
            },
        )
        r.raise_for_status()
        return r.json()

    def resource_graph(self, query: str, *, expect: int = 200) -> Any:
        r = self.session.post(
            f"{self.sim.arm_url}/providers/Microsoft.ResourceGraph/resources",
            params={"api-version": "2021-03-01"},
            headers=self._arm_headers(),
            json={"query": query, "options": {"resultFormat": "objectArray"}},
        )
        assert r.status_code == expect, r.text
        return r.json()

    def identity(self, rg: str, name: str, sub: str = SANDBOX) -> Any:
        return self.arm(
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/"
            f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
            "2024-11-30",
        )

    def identities(self, sub: str = SANDBOX) -> list[Any]:
        page = self.arm(
            f"/subscriptions/{sub}/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
            "2024-11-30",
        )
        return list(page["value"])

    def credentials(self, identity_id: str) -> list[Any]:
        return list(self.arm(f"{identity_id}/federatedIdentityCredentials", "2024-11-30")["value"])

    def assignments(self, sub: str = SANDBOX) -> list[Any]:
        page = self.arm(
            f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments", "2022-04-01"
        )
        return list(page["value"])

    def connections(self, org: str, project: str) -> list[Any]:
        return list(
            self.devops(f"/{org}/{project}/_apis/serviceendpoint/endpoints", includeFailed="true")[
                "value"
            ]
        )

    def permissions(self, org: str, project: str, endpoint_id: str) -> Any:
        r = self.session.get(
            f"{self.sim.devops_url}/{org}/{project}/_apis/pipelines/pipelinePermissions/endpoint/{endpoint_id}",
            params={"api-version": "7.1-preview.1"},
            headers={
                "Authorization": f"Bearer {self._token('499b84ac-1321-427f-aa17-267ca6975798/.default')}"
            },
        )
        r.raise_for_status()
        return r.json()


def writes(sim: Simulator) -> list[dict[str, Any]]:
    """Requests that change state (token requests and Resource Graph queries are POSTs that
    change nothing)."""
    return [
        r
        for r in sim.request_log()
        if r["method"] in ("PUT", "POST", "PATCH", "DELETE")
        and r["op"] not in ("Token", "Resources")
    ]


def plan_document(
    capsys: pytest.CaptureFixture[str], sim: Simulator, tmp_path: Path, paths: Sequence[Path]
) -> dict[str, Any]:
    out = tmp_path / "plan.json"
    code, _, err = run(capsys, "plan", *map(str, paths), *target(sim), "--out", str(out))
    assert code == 0, err
    document: dict[str, Any] = json.loads(out.read_text())
    return document


@pytest.fixture
def portal(sim: Simulator) -> Portal:
    return Portal(sim)
