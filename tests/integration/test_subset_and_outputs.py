"""Issue 10 §4: --only (a partial plan), `reconciler output`, and versioned apply events."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from reconciler import runner
from reconciler.errors import NotConvergedError
from reconciler.sim.server import Simulator

from .conftest import SANDBOX, SPECS, WALKTHROUGH, Portal, run, target, writes

TEAMS = SPECS / "teams"
TEAM_A_CI = f"identity.{SANDBOX}/team-a-rg/team-a-ci-mi"


def _plan_json(capsys: pytest.CaptureFixture[str], sim: Simulator, *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "plan", *argv, *target(sim), "--format", "json")
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


# -- --only -------------------------------------------------------------------------------


def test_only_an_identity_plans_it_and_its_dependents_and_says_partial(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    document = _plan_json(capsys, sim, str(TEAMS), "--only", "team-a-ci-mi")
    assert document["partial"] is True and document["only"] == ["team-a-ci-mi"]
    assert sorted((c["kind"], c["key"]) for c in document["changes"]) == sorted(
        [
            ("identity", f"{SANDBOX}/team-a-rg/team-a-ci-mi"),
            (
                "role_assignment",
                next(c["key"] for c in document["changes"] if c["kind"] == "role_assignment"),
            ),
            ("service_connection", "contoso/team-a/team-a-ci"),
            (
                "federated_credential",
                f"{SANDBOX}/team-a-rg/team-a-ci-mi/ado-contoso-team-a-team-a-ci",
            ),
        ]
    )
    (assignment,) = [c for c in document["changes"] if c["kind"] == "role_assignment"]
    assert assignment["key"].startswith(f"{SANDBOX}/team-a-rg/team-a-ci-mi//")
    # every dependency of a kept change is kept: the partial plan can run on its own
    kept = {c["address"] for c in document["changes"]}
    assert all(set(c["depends_on"]) <= kept for c in document["changes"])
    for fmt in ("text", "markdown"):
        code, out, _ = run(
            capsys, "plan", str(TEAMS), *target(sim), "--only", "team-a-ci-mi", "--format", fmt
        )
        assert code == 0
        assert "Partial: only team-a-ci-mi and what depends on them were planned" in out


def test_only_a_connection_brings_the_identity_it_needs_but_not_the_identitys_other_objects(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    document = _plan_json(capsys, sim, str(TEAMS), "--only", "service_connection.team-a-ci")
    # the identity it signs in as is created first, and the connection waits for the
    # identity's role assignments (so that Azure DevOps can verify it): both come along
    assert sorted(c["kind"] for c in document["changes"]) == [
        "federated_credential",
        "identity",
        "role_assignment",
        "service_connection",
    ]
    assert {c["key"] for c in document["changes"] if c["kind"] == "identity"} == {
        f"{SANDBOX}/team-a-rg/team-a-ci-mi"
    }


def test_only_a_full_address_and_repeated_selectors(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    document = _plan_json(
        capsys,
        sim,
        str(TEAMS),
        "--only",
        TEAM_A_CI,
        "--only",
        f"identity.{SANDBOX}/team-b-rg/deploy-mi",
    )
    identities = sorted(c["key"] for c in document["changes"] if c["kind"] == "identity")
    assert identities == [f"{SANDBOX}/team-a-rg/team-a-ci-mi", f"{SANDBOX}/team-b-rg/deploy-mi"]
    assert document["only"] == [TEAM_A_CI, f"identity.{SANDBOX}/team-b-rg/deploy-mi"]


@pytest.mark.parametrize(
    ("selector", "message", "candidates"),
    [
        (
            "deploy-mi",
            "--only deploy-mi is ambiguous",
            [f"identity.{SANDBOX}/team-a-rg/deploy-mi", f"identity.{SANDBOX}/team-b-rg/deploy-mi"],
        ),
        (
            "nope-mi",
            "--only nope-mi: no identity or service_connection",
            ["service_connection.contoso/team-a/team-a-ci"],
        ),
        (
            f"identity.{SANDBOX}/team-a-rg/nope",
            "no identity with that name or address",
            [TEAM_A_CI],
        ),
    ],
)
def test_only_that_is_ambiguous_or_unmatched_is_an_error_listing_candidates(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    selector: str,
    message: str,
    candidates: list[str],
) -> None:
    for command in ("plan", "drift", "apply"):
        extra = ["--auto-approve"] if command == "apply" else []
        code, _, err = run(capsys, command, str(TEAMS), *target(sim), "--only", selector, *extra)
        assert code == 1, (command, err)
        assert message in err
        for candidate in candidates:
            assert f"\n  {candidate}" in err
    assert writes(sim) == []


def test_only_limits_prune_and_apply_to_the_named_object(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    assert run(capsys, "apply", str(TEAMS), *target(sim), "--auto-approve")[0] == 0
    # team A's file is gone: a whole plan would prune all of team A's objects
    specs = tmp_path / "teams"
    specs.mkdir()
    shutil.copy(TEAMS / "team-b.yaml", specs / "team-b.yaml")
    whole = _plan_json(capsys, sim, str(specs))
    assert {c["key"] for c in whole["changes"] if c["kind"] == "identity"} == {
        f"{SANDBOX}/team-a-rg/deploy-mi",
        f"{SANDBOX}/team-a-rg/team-a-ci-mi",
    }
    code, out, _ = run(capsys, "drift", str(specs), *target(sim), "--only", "team-a-ci-mi")
    assert code == 2
    assert "Partial: only team-a-ci-mi and what depends on them were checked" in out
    assert "deploy-mi" not in out and "team-a-deploy" not in out

    sim.clear_log()
    code, out, err = run(
        capsys,
        "apply",
        str(specs),
        *target(sim),
        "--only",
        "team-a-ci-mi",
        "--auto-approve",
        "--allow-destroy",
    )
    assert code == 0, err
    assert "Converged" in out
    names = [i["name"] for i in portal.identities()]
    assert "team-a-ci-mi" not in names
    assert names.count("deploy-mi") == 2  # team A's other identity was not pruned
    assert [c["name"] for c in portal.connections("contoso", "team-a")] == ["team-a-deploy"]
    deleted = {r["method"] for r in writes(sim)}
    assert deleted == {"DELETE"}
    # the whole plan still prunes the rest: nothing was forgotten, only left for later
    rest = _plan_json(capsys, sim, str(specs))
    assert {c["key"] for c in rest["changes"] if c["kind"] == "identity"} == {
        f"{SANDBOX}/team-a-rg/deploy-mi"
    }


def test_a_saved_partial_plan_applies_partially_and_refuses_a_new_only(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    saved = tmp_path / "plan.json"
    code, out, err = run(
        capsys, "plan", str(TEAMS), *target(sim), "--only", "team-a-ci-mi", "--out", str(saved)
    )
    assert code == 0, err
    assert json.loads(saved.read_text())["partial"] is True
    code, _, err = run(
        capsys, "apply", str(saved), *target(sim), "--auto-approve", "--only", "deploy-mi"
    )
    assert code == 1 and "--only is chosen when a plan is saved" in err
    code, out, err = run(capsys, "show", str(saved))
    assert code == 0 and out.startswith("Partial: only team-a-ci-mi")
    code, out, err = run(capsys, "apply", str(saved), *target(sim), "--auto-approve")
    assert code == 0, err
    assert out.startswith(f"Applying the saved plan {saved} (partial: only team-a-ci-mi)")
    names = {i["name"] for i in portal.identities()}
    assert "team-a-ci-mi" in names and "deploy-mi" not in names


# -- output -------------------------------------------------------------------------------


def test_output_lists_the_live_ids_and_missing_objects_and_writes_nothing(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal
) -> None:
    code, out, _ = run(capsys, "output", str(WALKTHROUGH), *target(sim), "--format", "json")
    assert code == 2  # declared objects missing: not applied yet
    document = json.loads(out)
    assert document["complete"] is False
    assert document["missing"] == [
        f"identity.{SANDBOX}/identities-rg/ado-pipeline-mi",
        "service_connection.contoso/platform/ado-pipeline-mi",
    ]
    code, out, _ = run(capsys, "output", str(WALKTHROUGH), *target(sim))
    assert code == 2
    assert "identity ado-pipeline-mi (" in out and "missing (not created yet" in out

    assert run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")[0] == 0
    sim.clear_log()
    code, out, err = run(capsys, "output", str(WALKTHROUGH), *target(sim), "--format", "json")
    assert code == 0, err
    assert writes(sim) == []
    document = json.loads(out)
    assert document["complete"] is True and document["outputs_version"] == "1.0"
    (identity,) = document["identities"]
    live = portal.identity("identities-rg", "ado-pipeline-mi")
    assert identity["clientId"] == live["properties"]["clientId"]
    assert identity["principalId"] == live["properties"]["principalId"]
    assert identity["tenantId"] == live["properties"]["tenantId"]
    assert identity["id"].lower() == live["id"].lower()
    (connection,) = document["serviceConnections"]
    (endpoint,) = portal.connections("contoso", "platform")
    params = endpoint["authorization"]["parameters"]
    assert connection["id"] == endpoint["id"]
    assert connection["issuer"] == params["workloadIdentityFederationIssuer"]
    assert connection["subject"] == params["workloadIdentityFederationSubject"]
    assert connection["identityClientId"] == live["properties"]["clientId"]
    code, out, _ = run(capsys, "output", str(WALKTHROUGH), *target(sim))
    assert code == 0
    assert f"clientId    = {live['properties']['clientId']}" in out
    assert f"subject          = {params['workloadIdentityFederationSubject']}" in out


# -- apply events -------------------------------------------------------------------------


def _events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_apply_events_are_versioned_and_end_with_convergence(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve", "--format", "json"
    )
    assert code == 0, err
    events = _events(out)  # stdout holds nothing but events
    assert all(
        list(e)[:2] == ["event", "events_version"] and e["events_version"] == "1.1" for e in events
    )
    assert events[0]["event"] == "plan" and events[0]["document"]["format_version"] == "1.2"
    last = events[-1]
    assert last["event"] == "summary" and [e["event"] for e in events].count("summary") == 1
    assert last["status"] == "complete" and last["converged"] is True and last["remaining"] == 0
    assert last["applied"] == 4

    # nothing to do: still a summary, converged
    code, out, _ = run(
        capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve", "--format", "json"
    )
    assert code == 0
    assert [e["event"] for e in _events(out)] == ["plan", "summary"]
    assert _events(out)[-1]["converged"] is True


def test_apply_events_say_when_the_run_did_not_converge(
    sim: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def three_left(*args: object, **kwargs: object) -> int:
        raise NotConvergedError("apply did not converge: 3 differences remain", remaining=3)

    monkeypatch.setattr(runner, "_check_converged", three_left)
    code, out, err = run(
        capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve", "--format", "json"
    )
    assert code == 1
    last = _events(out)[-1]
    assert last["event"] == "summary" and last["status"] == "complete"
    assert last["converged"] is False and last["remaining"] == 3
    assert "did not converge" in err
