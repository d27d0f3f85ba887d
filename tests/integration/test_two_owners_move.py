"""Two owners side by side on one estate (different ``owner:`` values in different spec sets),
end to end over HTTPS against the simulator, while one owner moves a connection from one
Azure DevOps organisation to another: the other owner's identities, credentials, role
assignments and connections (in both organisations) are never written, both spec sets
converge (their next plans are empty), and the moved connection signs in where it went.
A move onto a name the other owner holds in the new organisation is refused by the plan,
naming it, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.sim.server import Simulator

from .conftest import SANDBOX, Portal, run, target, writes

RG_SCOPE = f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg"


def _spec(folder: Path, owner: str, identity: str, connections: list[tuple[str, str, str]]) -> Path:
    """``owner``'s spec set: ``identity`` with a Reader role and ``connections``
    (organisation, project, name) signing in as it."""
    text = f"""version: 1
owner: {owner}
defaults:
  subscription: {SANDBOX}
  resourceGroup: identities-rg
  location: westeurope
identities:
  - name: {identity}
    roleAssignments:
      - role: Reader
        scope: {RG_SCOPE}
"""
    if connections:
        text += "serviceConnections:\n" + "".join(
            f"""  - name: {name}
    organization: {org}
    project: {project}
    identity: {identity}
    subscriptionName: Sandbox
"""
            for org, project, name in connections
        )
    folder.mkdir(exist_ok=True)
    path = folder / "specs.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _owned_by(sim: Simulator, owner: str) -> dict[str, Any]:
    """Everything the simulator holds that carries ``owner``'s marker or hangs off an identity
    that does: identities (with tags and credentials), role assignments, connections (with
    their ids, descriptions, parameters and projects)."""
    state = sim.state()
    marker = f"[reconciler-owner: {owner}]"
    identities = {
        i["name"]: i
        for i in state["identities"]
        if (i.get("tags") or {}).get("reconciler-owner") == owner
    }
    roles = sorted(
        (
            json.dumps(r, sort_keys=True)
            for r in state["roleAssignments"]
            if marker in str(r.get("description") or "")
        ),
    )
    connections = sorted(
        json.dumps({**e, "organization": org["name"]}, sort_keys=True)
        for org in state["devops"]["organizations"]
        for e in org.get("serviceEndpoints") or []
        if marker in str(e.get("description") or "")
    )
    return {"identities": identities, "roles": roles, "connections": connections}


def _apply(sim: Simulator, capsys: pytest.CaptureFixture[str], spec: Path, *extra: str) -> None:
    code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve", *extra)
    assert code == 0, out + err


def _empty(sim: Simulator, capsys: pytest.CaptureFixture[str], spec: Path) -> None:
    code, out, err = run(capsys, "plan", str(spec), *target(sim), "--detailed-exitcode")
    assert code == 0, out + err


def _connection(portal: Portal, org: str, project: str, name: str) -> dict[str, Any] | None:
    found = [c for c in portal.connections(org, project) if c["name"] == name]
    return found[0] if found else None


@pytest.fixture
def two_owners(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> tuple[Path, Path]:
    """team-a: a-mi and deploy in contoso/platform; team-b: b-mi and its connections in both
    organisations, one named deploy too (in contoso/team-a)."""
    a = _spec(tmp_path / "a", "team-a", "a-mi", [("contoso", "platform", "deploy")])
    b = _spec(
        tmp_path / "b",
        "team-b",
        "b-mi",
        [
            ("contoso", "platform", "b-deploy"),
            ("contoso", "team-a", "deploy"),
            ("fabrikam", "legacy-app", "b-release"),
        ],
    )
    _apply(sim, capsys, a)
    _apply(sim, capsys, b)
    _empty(sim, capsys, a)
    _empty(sim, capsys, b)
    return a, b


@pytest.mark.parametrize(
    ("org", "project"), [("fabrikam", "legacy-app"), ("contoso", "team-b")], ids=["org", "project"]
)
def test_moving_a_connection_leaves_the_other_owner_untouched_and_both_converge(
    sim: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    two_owners: tuple[Path, Path],
    org: str,
    project: str,
) -> None:
    a, b = two_owners
    theirs = _owned_by(sim, "team-b")
    assert len(theirs["connections"]) == 3 and set(theirs["identities"]) == {"b-mi"}
    assert (
        len(theirs["roles"]) == 1 and len(theirs["identities"]["b-mi"]["federatedCredentials"]) == 3
    )
    old = _connection(portal, "contoso", "platform", "deploy")
    assert old is not None
    moved = _spec(tmp_path / "a-moved", "team-a", "a-mi", [(org, project, "deploy")])
    code, out, err = run(capsys, "plan", str(moved), *target(sim), "--format", "json")
    assert code == 0, err
    changes = json.loads(out)["changes"]
    # only team-a's objects: the connection created where it goes, the old one deleted, their
    # credentials (and a-mi's inventory of organisations)
    assert changes and all(
        "/a-mi" in c["address"] or c["address"].endswith("/deploy") for c in changes
    )
    assert not {c["address"] for c in changes} & {
        "service_connection.contoso/team-a/deploy",
        "service_connection.contoso/platform/b-deploy",
        "service_connection.fabrikam/legacy-app/b-release",
    }
    _apply(sim, capsys, moved, "--allow-destroy")
    assert _owned_by(sim, "team-b") == theirs, "the other owner's objects are never written"
    assert _connection(portal, "contoso", "platform", "deploy") is None
    new = _connection(portal, org, project, "deploy")
    assert new is not None and new["id"] != old["id"]
    assert sim.sign_in(org, new["id"])["ok"]
    # team-b's connection of the same name in the old organisation still signs in
    (same_name,) = [c for c in portal.connections("contoso", "team-a") if c["name"] == "deploy"]
    assert sim.sign_in("contoso", same_name["id"])["ok"]
    _empty(sim, capsys, moved)
    _empty(sim, capsys, b)
    # and back again: still nothing of team-b's touched
    _apply(sim, capsys, a, "--allow-destroy")
    assert _owned_by(sim, "team-b") == theirs
    _empty(sim, capsys, a)
    _empty(sim, capsys, b)


def test_a_move_onto_a_name_the_other_owner_holds_is_refused_naming_it(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    two_owners: tuple[Path, Path],
) -> None:
    a, b = two_owners
    theirs = _owned_by(sim, "team-b")
    onto = _spec(tmp_path / "a-onto", "team-a", "a-mi", [("contoso", "team-a", "deploy")])
    sim.clear_log()
    code, out, err = run(
        capsys, "apply", str(onto), *target(sim), "--auto-approve", "--allow-destroy"
    )
    assert code == 1, out + err
    assert "contoso/team-a/deploy" in err and "team-b" in err
    assert writes(sim) == []
    assert _owned_by(sim, "team-b") == theirs
    _empty(sim, capsys, a)
    _empty(sim, capsys, b)
