"""The export round trip of issue 11 §1 on a generated estate of 1,000 identities (the bench's
shape, made by hand: no owner marker anywhere), asserted through the simulator's API: export,
validate passes, plan shows adoption only (one per identity, role assignment and connection,
each stamping the owner marker and nothing else), apply with no failed sign-in, plan empty, and
the live state unchanged but the markers. ``make bench`` (``roundtrip``) runs the same check
against a simulator in another process and measures it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench.world import ORG, OWNER, BenchWorld, Shape, adoption_plan, marker_only_changes
from reconciler.sim.probe import SignInProbe
from reconciler.sim.server import Simulator

from .conftest import run, target

IDENTITIES = 1000


def test_export_round_trip_of_1000_identities_adopts_only_and_changes_nothing_else(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    world = BenchWorld(Shape(IDENTITIES))
    sim.reset(world.seed("unmarked"))
    before = sim.state()
    out = tmp_path / "exported"
    subscriptions = [sub for sub, _ in world.subscriptions]
    code, stdout, err = run(
        capsys, "export", "--subscription", *subscriptions, "--organization", ORG,
        "--owner", OWNER, "--out", str(out), *target(sim),
    )  # fmt: skip
    assert code == 0, err
    assert "Exported" in stdout
    exported = [yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))]
    assert sum(len(d.get("identities") or []) for d in exported) == IDENTITIES
    assert sum(len(d.get("serviceConnections") or []) for d in exported) == len(world.connections)

    code, _, err = run(capsys, "validate", str(out))
    assert code == 0, err

    plan_file = tmp_path / "plan.json"
    code, _, err = run(capsys, "plan", str(out), *target(sim), "--out", str(plan_file))
    assert code == 0, err
    counts, wrong = adoption_plan(world, json.loads(plan_file.read_text())["changes"])
    assert wrong == []
    assert counts == {
        "identity": IDENTITIES,
        "role_assignment": 3 * IDENTITIES,
        "service_connection": IDENTITIES // 5,
    }

    with SignInProbe.of(sim, interval=0.05) as probe:
        code, stdout, err = run(capsys, "apply", str(out), *target(sim), "--auto-approve")
    assert code == 0, err + stdout[-2000:]
    assert probe.counted == len(world.connections)
    assert probe.failures == 0, probe.summary()

    code, stdout, err = run(capsys, "plan", str(out), *target(sim), "--detailed-exitcode")
    assert code == 0, stdout[-2000:] + err

    assert marker_only_changes(before, sim.state(), OWNER) == []
