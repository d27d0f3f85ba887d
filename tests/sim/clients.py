"""Constants and a ``requests`` wrapper shared by the simulator tests."""

from __future__ import annotations

from typing import Any

import requests

from reconciler.sim.server import Simulator

SANDBOX = "11111111-1111-1111-1111-111111111111"
PRODUCTION = "22222222-2222-2222-2222-222222222222"
ARM_SCOPE = "https://management.azure.com/.default"
DEVOPS_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"


def arm_kwargs(simulator: Simulator) -> dict[str, Any]:
    return {
        "base_url": simulator.arm_url,
        "credential_scopes": [ARM_SCOPE],
        "connection_verify": simulator.connection["ca_bundle"],
        "retry_total": 0,  # tests see every answer; retry behaviour is tested explicitly
    }


class Http:
    """A small ``requests`` wrapper bound to the simulator: ARM and DevOps with tokens."""

    def __init__(self, simulator: Simulator, credential: Any) -> None:
        self.sim = simulator
        self.credential = credential
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify=
        self.session.verify = simulator.connection["ca_bundle"]

    def token(self, scope: str) -> str:
        return str(self.credential.get_token(scope).token)

    def arm(self, method: str, path: str, *, auth: bool = True, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if auth:
            headers.setdefault("Authorization", f"Bearer {self.token(ARM_SCOPE)}")
        return self.session.request(method, self.sim.arm_url + path, headers=headers, **kw)

    def ado(self, method: str, path: str, *, auth: bool = True, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if auth:
            headers.setdefault("Authorization", f"Bearer {self.token(DEVOPS_SCOPE)}")
        return self.session.request(method, self.sim.devops_url + path, headers=headers, **kw)

    def admin(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.session.request(method, f"{self.sim.arm_url}/_sim/{path}", **kw)
