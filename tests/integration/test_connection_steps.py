"""Multi-request changes resume at the step that failed (issue 9 §6), end to end over HTTPS
against the simulator, with live state read through the simulator's own API."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.world import ORG, BenchWorld, Shape
from reconciler.apply import ApplyResult, Status, apply_plan
from reconciler.observe import observe
from reconciler.operations import ApplyContext, perform
from reconciler.plan import Plan, make_plan
from reconciler.providers import Services, connect
from reconciler.providers.target import resolve_target
from reconciler.retry import RetryPolicy
from reconciler.sim.server import Simulator
from reconciler.specs import load_desired_state

from .conftest import Portal, ScaledClock

# 50 identities, each with one GitHub credential and one role assignment; every fifth has a
# service connection (10), which implies one more credential and sets pipeline permissions
SHAPE = Shape(identities=50, credentials=1, assignments=1, connection_every=5)


@pytest.fixture(scope="module")
def bench_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[BenchWorld, Path]:
    world = BenchWorld(SHAPE)
    specs = world.write_specs(tmp_path_factory.mktemp("steps-specs"))
    return world, specs


def _plan(services: Services, specs: Path, clock: ScaledClock) -> tuple[Any, Plan]:
    desired = load_desired_state([str(specs)])
    live = observe(services, desired, workers=8, clock=clock)
    return live, make_plan(desired, live)


def _apply(services: Services, specs: Path, clock: ScaledClock) -> tuple[Plan, ApplyResult]:
    live, plan = _plan(services, specs, clock)
    ctx = ApplyContext(
        services=services, live=live, owner="bench", clock=clock, readiness_interval=0.5
    )
    result = apply_plan(
        plan, lambda change: perform(change, ctx), workers=16, clock=clock, policy=RetryPolicy()
    )
    return plan, result


def _assert_one_connection_each_with_its_credential(portal: Portal, world: BenchWorld) -> None:
    identities = [i for sub, _ in world.subscriptions for i in portal.identities(sub)]
    by_client = {i["properties"]["clientId"]: i for i in identities}
    seen: list[tuple[str, str]] = []
    for project in world.project_names:
        for conn in portal.connections(ORG, project):
            params = conn["authorization"]["parameters"]
            seen.append((project, conn["name"].lower()))
            # the identity the connection signs in as holds a credential for exactly it
            ident = by_client[params["serviceprincipalid"]]
            pairs = {
                (c["properties"]["issuer"], c["properties"]["subject"])
                for c in portal.credentials(ident["id"])
            }
            wanted = (
                params["workloadIdentityFederationIssuer"],
                params["workloadIdentityFederationSubject"],
            )
            assert wanted in pairs, f"{conn['name']} has no federated credential"
    duplicates = [key for key, n in Counter(seen).items() if n > 1]
    assert not duplicates
    assert len(seen) == len(world.connections)


@pytest.mark.parametrize("fault", ["429:0.3", "5xx:0.3"])
@pytest.mark.parametrize("seed", range(10))
def test_fifty_identities_converge_within_two_applies_under_heavy_faults(
    sim: Simulator,
    portal: Portal,
    bench_world: tuple[BenchWorld, Path],
    fault: str,
    seed: int,
) -> None:
    world, specs = bench_world
    sim.reset(world.seed("cold"))
    services = connect(resolve_target(str(sim.connection_file)), workers=8)
    clock = ScaledClock(scale=0.01)
    applies = injected = 0
    while True:
        sim.set_faults([fault], seed=seed * 7 + applies)
        plan, result = _apply(services, specs, clock)
        applies += 1
        assert len(plan.changes) > 0
        injected += sim.stats()["faults_injected"]
        # resumed, not restarted: a created connection is never created again
        creates = Counter(r["status"] for r in sim.request_log(op="ServiceEndpoints_Create"))
        assert creates[409] == 0, "a retry created a connection that already existed"
        sim.set_faults(None)
        _, again = _plan(services, specs, clock)
        if again.empty:
            break
        failed = [o.error for o in result.outcomes if o.status is not Status.APPLIED]
        assert applies < 2, f"not converged after {applies} applies: {failed[:5]}"
    assert injected > 0, "the faults must really have fired"
    _assert_one_connection_each_with_its_credential(portal, world)
