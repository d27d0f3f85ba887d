"""Multi-request changes resume at the step that failed (issue 9 §6), end to end over HTTPS
against the simulator, with live state read through the simulator's own API."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.world import ORG, BenchWorld, Shape
from reconciler.apply import ApplyResult, Status, apply_plan
from reconciler.kinds.executors import ApplyContext, perform
from reconciler.model import Kind
from reconciler.observe import observe
from reconciler.plan import Plan, make_plan
from reconciler.providers import Services, connect
from reconciler.providers.target import resolve_target
from reconciler.retry import RetryPolicy
from reconciler.sim.server import Simulator
from reconciler.specs import load_desired_state

from .conftest import WALKTHROUGH, Portal, ScaledClock, run, target

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
        credential_propagation=0,  # the simulator honours new credentials at once
        services=services,
        live=live,
        owner="bench",
        clock=clock,
        readiness_interval=0.5,
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


# -- a connection that got part of the way ---------------------------------------------------

WALKTHROUGH_CONN = "service_connection.contoso/platform/ado-pipeline-mi"


def _walkthrough(services: Services, clock: ScaledClock) -> tuple[Any, Plan]:
    desired = load_desired_state([str(WALKTHROUGH)])
    live = observe(services, desired, workers=4, clock=clock)
    return live, make_plan(desired, live)


def test_created_connection_whose_permissions_fail_is_reported_created_and_resumed(
    sim: Simulator, portal: Portal
) -> None:
    services = connect(resolve_target(str(sim.connection_file)), workers=4)
    clock = ScaledClock(scale=0.01)
    live, plan = _walkthrough(services, clock)
    # every pipeline-permission write fails: the connection is created, its permissions not
    sim.set_faults(None, rate_5xx=1.0, ops=("PipelinePermissions_Update",))
    ctx = ApplyContext(
        credential_propagation=0,  # the simulator honours new credentials at once
        services=services,
        live=live,
        owner="platform-team",
        clock=clock,
    )
    result = apply_plan(
        plan,
        lambda change: perform(change, ctx),
        workers=4,
        clock=clock,
        policy=RetryPolicy(attempts=3),
    )
    (failed,) = result.failed
    assert str(failed.change.address) == WALKTHROUGH_CONN
    assert failed.completed_steps == ("create", "wait until ready", "share")
    assert failed.failed_step == "set pipeline permissions"
    assert "created, ready, shared; set pipeline permissions failed: " in failed.message
    assert "(gave up after 3 attempts)" in failed.message
    # the step was retried on its own: one create, three permission writes
    assert len(sim.request_log(op="ServiceEndpoints_Create")) == 1
    assert len(sim.request_log(op="PipelinePermissions_Update")) == 3
    (conn,) = [
        c for c in portal.connections("contoso", "platform") if c["name"] == "ado-pipeline-mi"
    ]

    # the next plan sees the connection as existing: it completes it instead of creating it
    sim.set_faults(None)
    live, again = _walkthrough(services, clock)
    actions = {str(c.address): str(c.action) for c in again.changes}
    assert actions[WALKTHROUGH_CONN] == "update"
    ctx = ApplyContext(
        credential_propagation=0,  # the simulator honours new credentials at once
        services=services,
        live=live,
        owner="platform-team",
        clock=clock,
    )
    assert apply_plan(again, lambda change: perform(change, ctx), clock=clock).ok
    _, last = _walkthrough(services, clock)
    assert last.empty, [str(c.address) for c in last.changes]
    (after,) = [
        c for c in portal.connections("contoso", "platform") if c["name"] == "ado-pipeline-mi"
    ]
    assert after["id"] == conn["id"]
    perms = portal.permissions("contoso", "platform", conn["id"])
    assert [p["id"] for p in perms["pipelines"] if p["authorized"]] == [1]  # infra-deploy
    params = after["authorization"]["parameters"]
    ident = portal.identity("identities-rg", "ado-pipeline-mi")
    (fic,) = portal.credentials(ident["id"])
    assert fic["properties"]["subject"] == params["workloadIdentityFederationSubject"]


def test_a_failed_later_step_never_repeats_the_create(sim: Simulator, portal: Portal) -> None:
    """Readiness polls and permission writes fail often; the engine's retries resume."""
    services = connect(resolve_target(str(sim.connection_file)), workers=4)
    clock = ScaledClock(scale=0.01)
    live, plan = _walkthrough(services, clock)
    sim.set_faults(
        None,
        seed=5,
        rate_5xx=0.6,
        ready_after_ms=50,
        ops=("ServiceEndpoints_Get", "PipelinePermissions_Update", "PipelinePermissions_Get"),
    )
    ctx = ApplyContext(
        credential_propagation=0,  # the simulator honours new credentials at once
        services=services,
        live=live,
        owner="platform-team",
        clock=clock,
        readiness_interval=0.1,
    )
    # at 60% failures the default 8 attempts give up now and then (0.6**8 per step); what is
    # tested is that retries resume after the create, not the default budget
    policy = RetryPolicy(attempts=24, budget=3600.0)
    result = apply_plan(plan, lambda change: perform(change, ctx), clock=clock, policy=policy)
    assert result.ok, [o.error for o in result.failed]
    assert sim.stats()["faults_injected"] > 0
    assert [r["status"] for r in sim.request_log(op="ServiceEndpoints_Create")] == [200]
    assert len([c for c in portal.connections("contoso", "platform")]) == 1


# -- behaving like Azure DevOps (issue 10 §2) --------------------------------------------------


def _without_connection(tmp_path: Path) -> Path:
    """The walkthrough with its connection replaced by another in the same project."""
    text = WALKTHROUGH.read_text(encoding="utf-8")
    spec = tmp_path / "other-connection.yaml"
    head, _, tail = text.partition("serviceConnections:\n  - name: ado-pipeline-mi")
    spec.write_text(f"{head}serviceConnections:\n  - name: kept-conn{tail}", encoding="utf-8")
    return spec


def test_delete_waits_until_the_connection_is_gone_and_partial_objects_count_as_gone(
    sim: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")
    assert code == 0, err
    (conn,) = [
        c for c in portal.connections("contoso", "platform") if c["name"] == "ado-pipeline-mi"
    ]
    # Azure DevOps keeps a deleted connection for a while: whole for 3 s, then partial
    sim.set_faults(["delete-lag:600", "delete-whole:3"])
    sim.clear_log()
    spec = _without_connection(tmp_path)
    code, out, err = run(
        capsys, "apply", str(spec), *target(sim), "--auto-approve", "--allow-destroy"
    )
    assert code == 0, err
    assert "Converged" in out
    log = sim.request_log()
    deleted = next(r["seq"] for r in log if r["op"] == "ServiceEndpoints_Delete")
    polls = [r for r in log if r["op"] == "ServiceEndpoints_Get" and r["seq"] > deleted]
    assert len(polls) >= 2, "the delete was reported done before Azure DevOps stopped returning it"
    # still listed, as the partial object the service returns meanwhile; plan treats it as gone
    (ghost,) = [c for c in portal.connections("contoso", "platform") if c["id"] == conn["id"]]
    assert ghost["authorization"] is None
    code, out, _ = run(capsys, "plan", str(spec), *target(sim), "--detailed-exitcode")
    assert code == 0, out


def test_references_in_any_order_keep_the_owning_project(
    sim: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sim.set_faults(["reverse-references:1"])
    shared = tmp_path / "shared.yaml"
    text = WALKTHROUGH.read_text(encoding="utf-8")
    shared.write_text(
        text.replace(
            "    pipelinePermissions:", "    sharedWith: [team-a]\n    pipelinePermissions:"
        ),
        encoding="utf-8",
    )
    code, out, err = run(capsys, "apply", str(shared), *target(sim), "--auto-approve")
    assert code == 0, err
    (conn,) = [
        c for c in portal.connections("contoso", "platform") if c["name"] == "ado-pipeline-mi"
    ]
    refs = [r["projectReference"]["name"] for r in conn["serviceEndpointProjectReferences"]]
    assert refs == ["team-a", "platform"]  # the owning project is listed last
    code, out, _ = run(capsys, "plan", str(shared), *target(sim), "--detailed-exitcode")
    assert code == 0, out
    # unsharing removes team-a's reference, never the owning project's
    code, out, err = run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")
    assert code == 0, err
    (after,) = [
        c for c in portal.connections("contoso", "platform") if c["name"] == "ado-pipeline-mi"
    ]
    assert after["id"] == conn["id"]
    assert [r["projectReference"]["name"] for r in after["serviceEndpointProjectReferences"]] == [
        "platform"
    ]
    assert portal.connections("contoso", "team-a") == []


def test_update_sends_only_what_the_tool_manages(
    sim: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")
    assert code == 0, err
    (conn,) = [
        c for c in portal.connections("contoso", "platform") if c["name"] == "ado-pipeline-mi"
    ]
    # a service that refuses what it generates itself (createdBy, isReady, issuer, subject...)
    sim.set_faults(["strict-update:1"])
    changed = tmp_path / "changed.yaml"
    changed.write_text(
        WALKTHROUGH.read_text(encoding="utf-8").replace(
            "Sandbox deployments (workload", "Sandbox releases (workload"
        ),
        encoding="utf-8",
    )
    code, _, err = run(capsys, "apply", str(changed), *target(sim), "--auto-approve")
    assert code == 0, err
    assert [r["status"] for r in sim.request_log(op="ServiceEndpoints_Update")] == [200]
    (after,) = [
        c for c in portal.connections("contoso", "platform") if c["name"] == "ado-pipeline-mi"
    ]
    assert after["id"] == conn["id"]
    assert after["description"].startswith("Sandbox releases (workload")
    params = after["authorization"]["parameters"]
    before = conn["authorization"]["parameters"]
    assert (
        params["workloadIdentityFederationSubject"] == before["workloadIdentityFederationSubject"]
    )
    assert after["createdBy"] == conn["createdBy"]


def _legacy_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "legacy.yaml"
    spec.write_text(
        WALKTHROUGH.read_text(encoding="utf-8")
        .replace("organization: contoso", "organization: fabrikam")
        .replace("project: platform", "project: legacy-app")
        .replace("      - infra-deploy", "      - legacy-release")
        # kept on the Azure DevOps issuer (the default, entra, would migrate it)
        .replace(
            "    identity: ado-pipeline-mi\n", "    identity: ado-pipeline-mi\n    issuer: devops\n"
        ),
        encoding="utf-8",
    )
    assert "issuer: devops" in spec.read_text(encoding="utf-8")
    return spec


def test_portal_rename_on_the_legacy_issuer_changes_the_subject_and_apply_repairs_it(
    sim: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = _legacy_spec(tmp_path)
    code, _, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve")
    assert code == 0, err
    (conn,) = [
        c for c in portal.connections("fabrikam", "legacy-app") if c["name"] == "ado-pipeline-mi"
    ]
    subject = conn["authorization"]["parameters"]["workloadIdentityFederationSubject"]
    assert subject == "sc://fabrikam/legacy-app/ado-pipeline-mi"

    sim.edit("service_endpoint", conn["id"], {"name": "renamed-in-portal"})
    (renamed,) = [c for c in portal.connections("fabrikam", "legacy-app") if c["id"] == conn["id"]]
    params = renamed["authorization"]["parameters"]
    assert (
        params["workloadIdentityFederationSubject"] == "sc://fabrikam/legacy-app/renamed-in-portal"
    )

    code, out, _ = run(capsys, "drift", str(spec), *target(sim), "--format", "json")
    assert code == 2
    changes = {c["address"]: c for c in json.loads(out)["changes"]}
    fic = next(a for a in changes if a.startswith("federated_credential."))
    assert changes[fic]["action"] == "update"

    code, out, err = run(
        capsys, "apply", str(spec), *target(sim), "--auto-approve", "--allow-destroy"
    )
    assert code == 0, err
    assert "Converged" in out
    (final,) = portal.connections("fabrikam", "legacy-app")
    final_params = final["authorization"]["parameters"]
    ident = portal.identity("identities-rg", "ado-pipeline-mi")
    pairs = {
        (c["properties"]["issuer"], c["properties"]["subject"])
        for c in portal.credentials(ident["id"])
    }
    assert (
        final_params["workloadIdentityFederationIssuer"],
        final_params["workloadIdentityFederationSubject"],
    ) in pairs


def test_entra_subjects_do_not_follow_a_rename(
    sim: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")
    assert code == 0, err
    (conn,) = [
        c for c in portal.connections("contoso", "platform") if c["name"] == "ado-pipeline-mi"
    ]
    sim.edit("service_endpoint", conn["id"], {"name": "renamed-in-portal"})
    (renamed,) = [c for c in portal.connections("contoso", "platform") if c["id"] == conn["id"]]
    assert renamed["name"] == "renamed-in-portal"
    assert (
        renamed["authorization"]["parameters"]["workloadIdentityFederationSubject"]
        == conn["authorization"]["parameters"]["workloadIdentityFederationSubject"]
    )


# -- the same for every change of several requests ------------------------------------------


def test_replaced_assignment_whose_create_fails_says_the_old_one_is_gone(
    sim: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A moved identity is replaced (new principal); its assignment with it: the old grant is
    deleted first (its principal is gone), then the new one is created."""
    code, _, err = run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")
    assert code == 0, err
    moved = tmp_path / "moved.yaml"
    moved.write_text(
        WALKTHROUGH.read_text(encoding="utf-8").replace(
            "location: westeurope", "location: northeurope"
        ),
        encoding="utf-8",
    )
    services = connect(resolve_target(str(sim.connection_file)), workers=4)
    clock = ScaledClock(scale=0.01)
    desired = load_desired_state([str(moved)])
    live = observe(services, desired, workers=4, clock=clock)
    plan = make_plan(desired, live)
    (replace,) = [c for c in plan.changes if c.address.kind is Kind.ROLE_ASSIGNMENT]
    assert str(replace.action) == "delete-then-create"
    old_principal = str((replace.before or {})["principalId"])
    sim.set_faults(None, rate_5xx=1.0, ops=("RoleAssignments_Create",))
    ctx = ApplyContext(
        credential_propagation=0,  # the simulator honours new credentials at once
        services=services,
        live=live,
        owner="platform-team",
        clock=clock,
    )
    result = apply_plan(
        plan,
        lambda change: perform(change, ctx),
        workers=4,
        clock=clock,
        policy=RetryPolicy(attempts=2),
    )
    failed = {o.change.address: o for o in result.failed}
    outcome = failed[replace.address]
    assert outcome.completed_steps == ("delete old",)
    assert outcome.failed_step == "create new"
    assert outcome.message.startswith("old one deleted; create new failed: ")
    # what the message says is what happened: the old grant is gone, no new one yet
    principal = portal.identity("identities-rg", "ado-pipeline-mi")["properties"]["principalId"]
    holders = {a["properties"]["principalId"] for a in portal.assignments()}
    assert old_principal not in holders
    assert principal not in holders

    # the next apply creates the missing grant and converges
    sim.set_faults(None)
    code, out, err = run(capsys, "apply", str(moved), *target(sim), "--auto-approve")
    assert code == 0, err
    assert "Converged" in out
    holders = {a["properties"]["principalId"] for a in portal.assignments()}
    assert principal in holders
