"""Hand-edited inventory tags (``reconciler-org-{id}``) never make the tool touch what is
not its own, and a malformed one never makes a plan pass silently. End to end over HTTPS
against the simulator, live state read through its API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.sim.server import Simulator

from .conftest import Portal, run, target
from .test_reach import HEAD, MI_1, MI_ID, SC_1, _apply, _spec
from .test_reach_inventory import OWNER_ONLY, _contoso_id


def test_forged_tag_on_another_owners_identity_deletes_nothing_of_ours(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    # platform-team owns mi-1 and sc-1 in contoso
    _apply(capsys, sim, _spec(tmp_path, "ours.yaml", HEAD + MI_1 + SC_1))
    org_tag = f"reconciler-org-{_contoso_id(portal)}"
    # other-team owns mi-9, whose tags someone edits to name contoso
    theirs = _spec(
        tmp_path,
        "theirs.yaml",
        HEAD.replace("platform-team", "other-team") + "identities:\n  - name: mi-9\n",
    )
    _apply(capsys, sim, theirs)
    mi_9 = MI_ID.replace("/mi-1", "/mi-9")
    sim.edit("identity", mi_9, {"tags": {"reconciler-owner": "other-team", org_tag: "contoso"}})
    code, _, err = run(
        capsys, "apply", str(theirs), *target(sim), "--auto-approve", "--allow-destroy"
    )
    assert code == 0, err
    # platform-team's connection and credential are untouched
    (endpoint,) = [
        e
        for e in portal.devops(
            "/contoso/platform/_apis/serviceendpoint/endpoints", **{"api-version": "7.1"}
        )["value"]
        if e["name"] == "sc-1"
    ]
    assert "[reconciler-owner: platform-team]" in (endpoint.get("description") or "")
    assert portal.identity("identities-rg", "mi-1")["tags"][org_tag] == "contoso"
    # and platform-team's own plan is still empty
    plan = tmp_path / "p.json"
    code, _, err = run(
        capsys, "plan", str(tmp_path / "ours.yaml"), *target(sim), "--out", str(plan)
    )
    assert code == 0, err
    assert json.loads(plan.read_text())["changes"] == []


def test_malformed_inventory_tag_is_not_ignored_silently(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    spec = _spec(tmp_path, "identity.yaml", HEAD + MI_1)
    _apply(capsys, sim, spec)
    sim.edit("identity", MI_ID, {"tags": {**OWNER_ONLY, "reconciler-org-not-a-guid": "x"}})
    # fail closed: the record cannot be read, so no "in sync" and no plan, naming the tag
    for command in ("plan", "drift"):
        code, out, err = run(capsys, command, str(spec), *target(sim))
        assert code == 1, out + err
        assert "not-a-guid" in err and "inventory tag of identity mi-1" in err
