"""Apply end to end against the simulator, verified through the simulator's own API."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from reconciler.apply import Outcome, apply_plan
from reconciler.kinds.executors import ApplyContext, perform
from reconciler.model import implied_credential_name
from reconciler.observe import observe
from reconciler.plan import Change, Plan, make_plan
from reconciler.providers import connect
from reconciler.providers.target import resolve_target
from reconciler.retry import RetryPolicy
from reconciler.sim.server import Simulator
from reconciler.specs import load_desired_state

from .conftest import (
    CONTRIBUTOR,
    SANDBOX,
    SPECS,
    WALKTHROUGH,
    Portal,
    ScaledClock,
    run,
    target,
    writes,
)


def test_walkthrough_from_nothing_lands_exactly(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal
) -> None:
    code, out, err = run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")
    assert code == 0, err
    assert "Converged" in out

    ident = portal.identity("identities-rg", "ado-pipeline-mi")
    props = ident["properties"]
    org = portal.devops("/contoso/_apis/connectionData", **{"api-version": "7.1-preview.1"})
    assert ident["tags"] == {
        "purpose": "azure-devops-deployments",
        "reconciler-owner": "platform-team",
        # the inventory: the organisation where its connection signs in (README "Safety")
        f"reconciler-org-{org['instanceId'].lower()}": "contoso",
    }

    (conn,) = [
        c for c in portal.connections("contoso", "platform") if c["name"] == "ado-pipeline-mi"
    ]
    params = conn["authorization"]["parameters"]
    assert conn["authorization"]["scheme"] == "WorkloadIdentityFederation"
    assert conn["data"]["creationMode"] == "Manual"
    assert params["serviceprincipalid"] == props["clientId"]
    assert params["tenantid"] == props["tenantId"]

    (fic,) = portal.credentials(ident["id"])
    assert fic["name"] == implied_credential_name("contoso", "platform", "ado-pipeline-mi")
    assert fic["properties"]["issuer"] == params["workloadIdentityFederationIssuer"]
    assert fic["properties"]["subject"] == params["workloadIdentityFederationSubject"]
    assert fic["properties"]["audiences"] == ["api://AzureADTokenExchange"]

    (ra,) = [
        a for a in portal.assignments() if a["properties"]["principalId"] == props["principalId"]
    ]
    assert ra["properties"]["roleDefinitionId"].lower().endswith(CONTRIBUTOR)
    assert (
        ra["properties"]["scope"].lower() == f"/subscriptions/{SANDBOX}/resourcegroups/sandbox-rg"
    )
    assert ra["properties"]["principalType"] == "ServicePrincipal"

    perms = portal.permissions("contoso", "platform", conn["id"])
    assert [p["id"] for p in perms["pipelines"] if p["authorized"]] == [1]  # infra-deploy

    # the walkthrough's order: identity, assignment, connection, credential, permissions
    order = [r["op"] for r in writes(sim)]
    wanted = [
        "UserAssignedIdentities_CreateOrUpdate",
        "RoleAssignments_Create",
        "ServiceEndpoints_Create",
        "FederatedIdentityCredentials_CreateOrUpdate",
    ]
    assert [op for op in order if op in wanted] == wanted
    assert order.index("PipelinePermissions_Update") > order.index("ServiceEndpoints_Create")

    code, out, _ = run(capsys, "plan", str(WALKTHROUGH), *target(sim), "--detailed-exitcode")
    assert code == 0, out


def _pipeline(sim: Simulator, paths: list[Path], clock: ScaledClock) -> tuple[Any, Any, Plan]:
    desired = load_desired_state([str(p) for p in paths])
    services = connect(resolve_target(str(sim.connection_file)), workers=8)
    live = observe(services, desired, workers=8, clock=clock)
    return desired, services, make_plan(desired, live)


def test_converges_with_faults_on(sim: Simulator) -> None:
    sim.set_faults(
        None,
        seed=7,
        rate_429=0.08,
        rate_5xx=0.05,
        retry_after_ms=1000,
        principal_window_s=0.3,
        lag_ms=150,
        ready_after_ms=200,
        fic_write_ms=20,
    )
    clock = ScaledClock(scale=0.02)
    desired, services, plan = _pipeline(sim, [SPECS], clock)
    assert len(plan.changes) == 27
    ctx = ApplyContext(
        credential_propagation=0,  # the simulator honours new credentials at once
        services=services,
        live=observe(services, desired, clock=clock),
        owner="platform-team",
        clock=clock,
    )
    result = apply_plan(
        plan,
        lambda change: perform(change, ctx),
        workers=8,
        clock=clock,
        policy=RetryPolicy(attempts=30, budget=600.0),
    )
    failures = [o.error for o in result.outcomes if o.status != "applied"]
    assert result.ok, failures
    stats = sim.stats()
    assert stats["faults_injected"] > 0, "the faults must really have fired"
    total_attempts = sum(o.attempts for o in result.outcomes)
    assert total_attempts > len(plan.changes)  # some changes were retried
    assert total_attempts < len(plan.changes) * 10  # ...within a bounded number of retries

    sim.set_faults(None)
    _, _, again = _pipeline(sim, [SPECS], clock)
    assert again.empty, [str(c.address) for c in again.changes]


def test_wrong_principal_fails_fast_with_a_precise_message(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # an identity an earlier run made whose principal the directory still cannot see, even with
    # principalType (a principal deleted in Entra is not this case: with principalType ARM skips
    # the look-up and creates the assignment; README A-principal-type)
    assert run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")[0] == 0
    ident = next(i for i in sim.world.identities.values() if i.name == "ado-pipeline-mi")
    sim.update_faults(principal_window_s=3600)
    for name, ra in list(sim.world.role_assignments.items()):
        if ra.principal_id == ident.principal_id:
            sim.delete("role_assignment", name)
    sim.clear_log()
    code, out, err = run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")
    assert code == 1
    assert "PrincipalNotFound" in out + err
    assert "walkthrough.yaml:20" in out + err
    attempts = [r for r in sim.request_log() if r["op"] == "RoleAssignments_Create"]
    assert len(attempts) == 1, "a principal this run did not create is not retried"


def test_prune_deletes_only_owned_objects_and_needs_allow_destroy(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal
) -> None:
    assert run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")[0] == 0
    before = {i["name"] for i in portal.identities()}
    assert {"shared-build-mi", "data-team-mi", "deploy-mi", "team-a-ci-mi"} <= before
    sim.clear_log()

    code, _out, err = run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")
    assert code == 1
    assert "--allow-destroy" in err
    assert writes(sim) == [], "refused before changing anything"

    code, _, err = run(
        capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve", "--allow-destroy"
    )
    assert code == 0, err
    after = {i["name"] for i in portal.identities()}
    assert after == {"ado-pipeline-mi", "shared-build-mi", "data-team-mi"}
    assert portal.connections("contoso", "team-a") == []
    # the unmarked Reader assignment of shared-build-mi survives
    shared = next(i for i in portal.identities() if i["name"] == "shared-build-mi")
    assert any(
        a["properties"]["principalId"] == shared["properties"]["principalId"]
        for a in portal.assignments()
    )


def test_identity_replacement_cascades(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    assert run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")[0] == 0
    old = portal.identity("identities-rg", "ado-pipeline-mi")["properties"]
    moved = tmp_path / "walkthrough.yaml"
    moved.write_text(
        WALKTHROUGH.read_text().replace("location: westeurope", "location: northeurope")
    )
    code, out, _ = run(capsys, "plan", str(moved), *target(sim), "--no-color")
    assert code == 0 and "-/+" in out
    code, out, err = run(
        capsys, "apply", str(moved), *target(sim), "--auto-approve", "--allow-destroy"
    )
    assert code == 0, out + err
    new = portal.identity("identities-rg", "ado-pipeline-mi")
    assert new["location"] == "northeurope"
    props = new["properties"]
    assert props["principalId"] != old["principalId"]
    (conn,) = [
        c for c in portal.connections("contoso", "platform") if c["name"] == "ado-pipeline-mi"
    ]
    assert conn["authorization"]["parameters"]["serviceprincipalid"] == props["clientId"]
    principals = {a["properties"]["principalId"] for a in portal.assignments()}
    assert props["principalId"] in principals and old["principalId"] not in principals
    (fic,) = portal.credentials(new["id"])
    assert (
        fic["properties"]["subject"]
        == conn["authorization"]["parameters"]["workloadIdentityFederationSubject"]
    )


def test_interrupted_run_converges_when_run_again(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = ScaledClock()
    desired, services, plan = _pipeline(sim, [SPECS], clock)
    ctx = ApplyContext(
        credential_propagation=0,  # the simulator honours new credentials at once
        services=services,
        live=observe(services, desired),
        owner="platform-team",
    )
    stop = threading.Event()

    class StopAfter:
        def __init__(self) -> None:
            self.done = 0

        def started(self, change: Change) -> None: ...

        def retrying(self, change: Change, exc: Exception, delay: float) -> None: ...

        def finished(self, outcome: Outcome) -> None:
            self.done += 1
            if self.done == 6:
                stop.set()  # what Ctrl-C does

        def summary(self, result: Any) -> None: ...

    result = apply_plan(plan, lambda c: perform(c, ctx), workers=2, reporter=StopAfter(), stop=stop)
    assert result.interrupted
    assert 6 <= len(result.applied) < len(plan.changes)
    assert result.not_started

    code, out, err = run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")
    assert code == 0, out + err
    assert run(capsys, "plan", str(SPECS), *target(sim), "--detailed-exitcode")[0] == 0


def test_stale_saved_plan_is_refused(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    assert run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")[0] == 0
    ident = portal.identity("identities-rg", "ado-pipeline-mi")
    sim.edit(
        "identity",
        ident["id"],
        {"tags": {"purpose": "changed", "reconciler-owner": "platform-team"}},
    )
    saved = tmp_path / "plan.json"
    assert run(capsys, "plan", str(WALKTHROUGH), *target(sim), "--out", str(saved))[0] == 0
    sim.edit(
        "identity",
        ident["id"],
        {"tags": {"purpose": "moved again", "reconciler-owner": "platform-team"}},
    )
    sim.clear_log()
    code, _, err = run(capsys, "apply", str(saved), *target(sim), "--auto-approve")
    assert code == 1
    assert (
        "stale" in err
        and "identity.11111111-1111-1111-1111-111111111111/identities-rg/ado-pipeline-mi" in err
    )
    assert writes(sim) == []


def test_saved_plan_is_refused_when_specs_changed(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "walkthrough.yaml"
    spec.write_text(WALKTHROUGH.read_text())
    saved = tmp_path / "plan.json"
    assert run(capsys, "plan", str(spec), *target(sim), "--out", str(saved))[0] == 0
    spec.write_text(WALKTHROUGH.read_text().replace("azure-devops-deployments", "other"))
    code, _, err = run(capsys, "apply", str(saved), *target(sim), "--auto-approve")
    assert code == 1 and "spec files changed" in err
    assert writes(sim) == []


def test_apply_without_terminal_or_auto_approve_refuses(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "apply", str(WALKTHROUGH), *target(sim))
    assert code == 1
    assert "--auto-approve" in err
    assert writes(sim) == []


def test_json_progress_events(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code, out, err = run(
        capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve", "--format", "json"
    )
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan" and kinds.count("finish") == 4 and "summary" in kinds


def test_no_secret_is_ever_printed(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")
    assert code == 0
    secret = sim.connection["client_secret"]
    assert secret not in out and secret not in err
    assert "Bearer" not in out + err
