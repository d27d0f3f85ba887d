"""A shared connection keeps the project Azure DevOps created it in (its owning project) for
life. A spec that names another of its projects as ``project`` is matched to it there, so it
would plan to unshare the owning project: removing that reference (and its pipeline
permissions; the real service may delete the connection). The plan refuses instead, naming the
spec line, the connection and its owning project, and apply writes nothing
(``kinds/service_connection.py: _home_moves``). Apply itself never removes the owning
project's reference (``executors/service_connection.py: _share``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.sim.server import Simulator
from tests.sim.estates import LEGACY_ID, SANDBOX, SPN_ID, estate

from .conftest import Portal, run, target, writes


def _legacy_shared(sim: Simulator) -> None:
    """legacy-sc, created in platform (its subject says so), shared with team-a."""
    seed = estate(sim.tenant_id)
    contoso = seed["devops"]["organizations"][0]
    endpoint = next(e for e in contoso["serviceEndpoints"] if e["id"] == LEGACY_ID)
    endpoint["projects"] = ["platform", "team-a"]
    contoso["pipelinePermissions"].append(
        {"project": "team-a", "endpoint": "legacy-sc", "pipelines": [3]}
    )
    sim.reset(seed)


def _spec(tmp_path: Path, name: str, connection: str, identity: str = "legacy-mi") -> Path:
    spec = tmp_path / name
    spec.write_text(
        f"""version: 1
owner: platform-team
defaults:
  subscription: {SANDBOX}
  resourceGroup: identities-rg
  location: westeurope
identities:
  - name: {identity}
    roleAssignments:
      - role: Reader
        resourceGroup: sandbox-rg
serviceConnections:
  - name: {connection}
    organization: contoso
    identity: {identity}
    subscriptionName: Sandbox
""",
        encoding="utf-8",
    )
    return spec


def _projects(portal: Portal, endpoint_id: str) -> list[str]:
    found = next(
        e
        for e in portal.connections("contoso", "platform") + portal.connections("contoso", "team-a")
        if e["id"] == endpoint_id
    )
    return sorted(r["projectReference"]["name"] for r in found["serviceEndpointProjectReferences"])


def _line(spec: Path, text: str) -> int:
    return next(i for i, line in enumerate(spec.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize(
    "moved",
    [
        # the attacker's repro: the home project dropped, the connection "moved" to team-a
        pytest.param("    project: team-a\n    issuer: devops\n", id="unshares-home"),
        # both projects kept, but the wrong one named as the owning project
        pytest.param(
            "    project: team-a\n    sharedWith: [platform]\n    issuer: devops\n", id="swapped"
        ),
        # names compare case-insensitively
        pytest.param("    project: TEAM-A\n    issuer: devops\n", id="case"),
    ],
)
def test_naming_a_shared_project_as_the_owning_one_fails_the_plan(
    sim: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    moved: str,
) -> None:
    _legacy_shared(sim)
    home = _spec(tmp_path, "home.yaml", "legacy-sc")
    home.write_text(
        home.read_text()
        + "    project: platform\n    sharedWith: [team-a]\n    issuer: devops\n"
        + "    pipelinePermissions: [infra-deploy, app-ci]\n"
    )
    code, out, err = run(capsys, "apply", str(home), *target(sim), "--auto-approve")
    assert code == 0, out + err
    assert _projects(portal, LEGACY_ID) == ["platform", "team-a"]

    spec = _spec(tmp_path, "moved.yaml", "legacy-sc")
    spec.write_text(spec.read_text() + moved)
    sim.clear_log()
    code, out, err = run(capsys, "plan", str(spec), *target(sim))
    assert code == 1, out + err
    message = " ".join(err.split())
    assert f"{spec}:{_line(spec, 'project:')}" in message, message
    assert "legacy-sc" in message and "created it in project 'platform'" in message, message
    assert "Declare project: platform with sharedWith: [team-a]" in message, message

    code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve")
    assert code == 1, out + err
    assert writes(sim) == []
    assert _projects(portal, LEGACY_ID) == ["platform", "team-a"]
    perms = portal.permissions("contoso", "platform", LEGACY_ID)
    assert sorted(p["id"] for p in perms["pipelines"]) == [1, 2]


def test_the_owning_project_shared_or_unshared_plans_and_applies(
    sim: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # the control: declared in its owning project, team-a can be unshared and shared again
    _legacy_shared(sim)
    spec = _spec(tmp_path, "home.yaml", "legacy-sc")
    base = spec.read_text() + "    project: Platform\n    issuer: devops\n"
    spec.write_text(base)
    code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve")
    assert code == 0, out + err
    assert _projects(portal, LEGACY_ID) == ["platform"]
    spec.write_text(base + "    sharedWith: [team-a]\n")
    code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve")
    assert code == 0, out + err
    assert _projects(portal, LEGACY_ID) == ["platform", "team-a"]


def test_a_shared_secret_connection_converted_through_another_project_is_left_as_it_was(
    sim: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # spn-sc signs in with a secret, created in platform and shared with team-a; nothing Azure
    # DevOps reports says which is its owning project, and it converts only through that one:
    # the plan warns, and apply, refused the conversion, never unshares platform
    sim.reset(estate(sim.tenant_id))
    spec = _spec(tmp_path, "moved.yaml", "spn-sc", identity="target-mi")
    spec.write_text(spec.read_text() + "    project: team-a\n")
    code, out, err = run(capsys, "plan", str(spec), *target(sim))
    assert code == 0, out + err
    message = " ".join(out.split())
    assert "contoso/team-a/spn-sc signs in as app registration" in message, message
    assert "It is shared with platform" in message, message
    assert "If it is not team-a, apply fails at the conversion" in message, message
    assert "only once it is converted is it unshared from platform" in message, message
    sim.clear_log()
    code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve")
    assert code == 1, out + err
    assert "converted only from that project" in " ".join((out + err).split()), out + err
    # the refused conversion (400) is the only Azure DevOps write: nothing unshared
    devops = [(w["op"], w["status"]) for w in writes(sim) if w["op"].startswith("ServiceEndpoints")]
    assert devops and all(status == 400 for _, status in devops), devops
    assert _projects(portal, SPN_ID) == ["platform", "team-a"]
    [endpoint] = [e for e in portal.connections("contoso", "platform") if e["id"] == SPN_ID]
    assert endpoint["authorization"]["scheme"] == "ServicePrincipal"


def test_unsharing_an_entra_connection_warns_that_its_owning_project_is_unknown(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # on the Entra issuer nothing says which project owns a connection: an unshare is planned,
    # with a warning that names the projects, so a reviewer checks before it removes a home
    text = f"""version: 1
owner: platform-team
defaults:
  subscription: {SANDBOX}
  resourceGroup: identities-rg
  location: westeurope
identities:
  - name: shared-mi
    roleAssignments:
      - role: Reader
        resourceGroup: sandbox-rg
serviceConnections:
  - name: shared-sc
    organization: contoso
    project: platform
    identity: shared-mi
    subscriptionName: Sandbox
    sharedWith: [team-a]
"""
    shared = tmp_path / "shared.yaml"
    shared.write_text(text, encoding="utf-8")
    code, out, err = run(capsys, "apply", str(shared), *target(sim), "--auto-approve")
    assert code == 0, out + err
    code, out, err = run(capsys, "plan", str(shared), *target(sim), "--detailed-exitcode")
    assert code == 0 and "does not report which of its projects" not in out + err
    unshared = tmp_path / "unshared.yaml"
    unshared.write_text(text.replace("    sharedWith: [team-a]\n", ""), encoding="utf-8")
    code, out, err = run(capsys, "plan", str(unshared), *target(sim), "--detailed-exitcode")
    assert code == 2, out + err
    assert "contoso/platform/shared-sc is unshared from team-a" in out
    assert "does not report which of its projects owns it" in out
