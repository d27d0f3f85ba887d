"""The bench's warm world is what the tool itself leaves behind: its plan is empty, and its
drift world plans exactly the drift it made (``make bench`` checks both at scale)."""

from __future__ import annotations

from pathlib import Path

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
