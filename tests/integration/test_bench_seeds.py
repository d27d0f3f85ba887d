"""The bench's warm world is what the tool itself leaves behind: its plan is empty, and its
drift world plans exactly the drift it made (``make bench`` checks both at scale)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.world import BenchWorld, Shape
from reconciler.sim.server import Simulator

from .conftest import plan_document


def test_warm_bench_world_plans_nothing_and_drift_plans_its_edits(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    world = BenchWorld(Shape(identities=20, credentials=1, assignments=1, connection_every=5))
    specs = world.write_specs(tmp_path / "specs")
    sim.reset(world.seed("warm"))
    assert plan_document(capsys, sim, tmp_path, [specs])["changes"] == []
    sim.reset(world.seed("drift"))
    assert len(plan_document(capsys, sim, tmp_path, [specs])["changes"]) == world.drift_count()


def test_bench_drift_edits_through_the_admin_api_make_the_drift_seeds_changes(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The ``incremental`` scenario edits a warm world through the admin API (so the logs
    record each edit): object by object the same drift as the ``drift`` seed."""
    world = BenchWorld(Shape(identities=100))
    specs = world.write_specs(tmp_path / "specs")
    sim.reset(world.seed("drift"))
    seeded = plan_document(capsys, sim, tmp_path, [specs])["changes"]
    sim.reset(world.seed("warm"))
    arm_callers = set()
    for edit in world.drift_edits():
        if edit["kind"] != "service_endpoint":  # Azure DevOps: its audit log, not ARM's
            arm_callers.add(edit["caller"])
        if edit.get("delete"):
            sim.delete(edit["kind"], edit["id"], caller=edit["caller"])
        else:
            sim.edit(edit["kind"], edit["id"], edit["patch"], caller=edit["caller"])
    edited = plan_document(capsys, sim, tmp_path, [specs])["changes"]

    def view(changes: list[dict[str, Any]]) -> dict[str, Any]:
        return {c["address"]: (c["action"], c["fields"]) for c in changes}

    assert len(seeded) == world.drift_count() > 6
    assert view(edited) == view(seeded)
    assert {e["caller"] for e in sim.activity_log()} == arm_callers
