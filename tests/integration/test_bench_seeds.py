"""The bench's warm world is what the tool itself leaves behind: its plan is empty, and its
drift world plans exactly the drift it made (``make bench`` checks both at scale); its
``migrate`` and ``unmarked`` worlds and the checks the ``migrate`` and ``roundtrip`` scenarios
make of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.world import (
    BENCH_SECRET,
    CONVERT_OP,
    MIGRATE_OP,
    OWNER,
    BenchWorld,
    Shape,
    marker_only_changes,
    migration_plan,
    migration_problems,
)
from reconciler.sim.server import Simulator

from .conftest import plan_document, run, target


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


def test_bench_migrate_seed_plans_one_migration_or_conversion_per_connection_and_apply_ends_it(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The ``migrate`` scenario's estate (connections on the Azure DevOps issuer, every fourth
    one secret-based) and its checks: the plan holds exactly the in-place changes, and after
    apply every connection is on the Entra issuer (the check fails before)."""
    world = BenchWorld(Shape(identities=40))
    specs = world.write_specs(tmp_path / "specs")
    sim.reset(world.seed("migrate"))
    assert world.migrations() == (6, 2)
    counts, wrong = migration_plan(world, plan_document(capsys, sim, tmp_path, [specs])["changes"])
    assert wrong == []
    assert counts == {MIGRATE_OP: 6, CONVERT_OP: 2, "inventory": 2}
    assert len(migration_problems(world, sim.state())) >= 8
    code, out, err = run(capsys, "apply", str(specs), *target(sim), "--auto-approve")
    assert code == 0, out + err
    assert migration_problems(world, sim.state()) == []
    assert BENCH_SECRET not in out + err


def test_marker_only_changes_allows_the_markers_and_names_every_other_change(
    sim: Simulator,
) -> None:
    """The ``roundtrip`` check: the bench's estate made by hand and the same estate marked by
    ``bench`` differ by markers only; an edited credential, a deleted role assignment, an
    edited tag and another owner's marker are each named."""
    world = BenchWorld(Shape(identities=10))
    sim.reset(world.seed("unmarked"))
    before = sim.state()
    sim.reset(world.seed("warm"))
    assert marker_only_changes(before, sim.state(), OWNER) == []
    assert marker_only_changes(before, sim.state(), "someone-else") != []
    ident = world.identities[0]
    c = world.identities[0].connection
    assert c is not None
    sim.edit(
        "federated_credential",
        f"{ident.arm_id}/federatedIdentityCredentials/{ident.credentials[0].name}",
        {"subject": "repo:bench/other:ref:refs/heads/main"},
    )
    sim.delete("role_assignment", ident.assignments[0].name)
    other = world.identities[1]  # no connection: no inventory tag
    tags = {**other.tags, "reconciler-owner": OWNER, "team": "moved"}
    sim.edit("identity", other.arm_id, {"tags": tags})
    sim.edit("service_endpoint", c.endpoint_id, {"description": "x [reconciler-owner: other]"})
    found = marker_only_changes(before, sim.state(), OWNER)
    assert len(found) == 4, found
    assert any("federated credentials" in line and ident.name in line for line in found)
    assert any(ident.assignments[0].name in line for line in found)
    assert any("tag team" in line and other.name in line for line in found)
    assert any(c.endpoint_id in line and "description" in line for line in found)
