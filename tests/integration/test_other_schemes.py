"""An azurerm connection signing in with a scheme the tool neither manages nor converts (here
``ManagedServiceIdentity``: the identity of the agent's own VM) is never planned as an update
Azure DevOps would refuse: the plan fails naming it, and export writes it as a comment."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.sim.server import Simulator
from tests.sim.estates import DATA, estate

from .conftest import SANDBOX, run, target, writes

MSI_ID = "cccccccc-0000-4000-8000-000000000001"


@pytest.fixture
def world(sim: Simulator) -> Simulator:
    seed = estate(sim.tenant_id)
    seed["devops"]["organizations"][0]["serviceEndpoints"].append(
        {
            "id": MSI_ID,
            "name": "agent-msi-sc",
            "scheme": "ManagedServiceIdentity",
            "parameters": {"tenantid": sim.tenant_id},
            "data": DATA,
            "projects": ["platform"],
        }
    )
    sim.reset(seed)
    sim.clear_log()
    return sim


def test_a_declared_connection_with_another_scheme_fails_the_plan(
    world: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""version: 1
owner: platform-team
defaults:
  subscription: {SANDBOX}
  resourceGroup: identities-rg
  location: westeurope
identities:
  - name: legacy-mi
    roleAssignments:
      - role: Reader
        resourceGroup: sandbox-rg
serviceConnections:
  - name: agent-msi-sc
    organization: contoso
    project: platform
    identity: legacy-mi
    subscriptionName: Sandbox
""",
        encoding="utf-8",
    )
    code, out, err = run(capsys, "plan", str(spec), *target(world))
    assert code == 1, out + err
    assert "contoso/platform/agent-msi-sc" in err and "ManagedServiceIdentity" in err, err
    assert f"{spec}:" in err
    code, out, err = run(capsys, "apply", str(spec), *target(world), "--auto-approve")
    assert code == 1, out + err
    assert writes(world) == []


def test_export_writes_it_as_a_comment_without_promising_a_conversion(
    world: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_dir = tmp_path / "exported"
    code, out, err = run(
        capsys,
        "export",
        "--subscription",
        SANDBOX,
        "--organization",
        "contoso",
        "--split",
        "none",
        "--owner",
        "platform-team",
        "--out",
        str(out_dir),
        *target(world),
    )
    assert code == 0, out + err
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(out_dir.glob("*.yaml")))
    block = " ".join(text[text.index("agent-msi-sc") :][:600].replace("#", " ").split())
    assert "scheme ManagedServiceIdentity" in block and "does not convert" in block, block
    assert "converts it to workload identity federation" not in block
    assert "- name: agent-msi-sc" not in block, "no entry to declare is suggested"
    code, out, err = run(capsys, "validate", str(out_dir))
    assert code == 0, out + err
