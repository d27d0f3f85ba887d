"""Plan and drift end to end: the CLI against the simulator over HTTPS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.model import implied_credential_name
from reconciler.sim.server import Simulator

from .conftest import SPECS, WALKTHROUGH, Portal, plan_document, run, target, writes


def test_examples_on_an_empty_world_plan_only_creates(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    document = plan_document(capsys, sim, tmp_path, [SPECS])
    actions = {c["action"] for c in document["changes"]}
    assert actions == {"create"}
    kinds = sorted({c["kind"] for c in document["changes"]})
    assert kinds == ["federated_credential", "identity", "role_assignment", "service_connection"]
    # 6 identities, 7 credentials (5 implied), 9 assignments, 5 connections
    assert len(document["changes"]) == 27
    assert writes(sim) == [], "plan must never write"


def test_plan_after_apply_is_empty_with_exit_code_0(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")
    assert code == 0, err
    code, out, _ = run(capsys, "plan", str(SPECS), *target(sim), "--detailed-exitcode")
    assert code == 0
    assert "No changes" in out


def test_detailed_exit_code_2_when_changes(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "plan", str(WALKTHROUGH), *target(sim), "--detailed-exitcode")
    assert code == 2
    assert "4 to create" in out
    code, _, _ = run(capsys, "plan", str(WALKTHROUGH), *target(sim))
    assert code == 0


def test_drift_names_exactly_the_out_of_band_edits(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    assert run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")[0] == 0
    assert run(capsys, "drift", str(SPECS), *target(sim))[0] == 0

    # the portal user: a credential subject, a deleted assignment, a connection description
    github = portal.identity(
        "identities-prod-rg", "github-app-deploy-mi", "22222222-2222-2222-2222-222222222222"
    )
    sim.edit(
        "federated_credential",
        f"{github['id']}/federatedIdentityCredentials/github-main",
        {"subject": "repo:contoso/app:ref:refs/heads/evil"},
    )
    ado = portal.identity("identities-rg", "ado-pipeline-mi")
    ra = next(
        a
        for a in portal.assignments()
        if a["properties"]["principalId"] == ado["properties"]["principalId"]
    )
    sim.delete("role_assignment", ra["id"])
    team_b = next(
        c for c in portal.connections("contoso", "team-b") if c["name"] == "team-b-deploy"
    )
    description = team_b["description"]
    sim.edit(
        "service_connection", team_b["id"], {"description": description.replace("[", "edited [", 1)}
    )

    out_file = tmp_path / "drift.json"
    code, out, _ = run(capsys, "drift", str(SPECS), *target(sim), "--out", str(out_file))
    assert code == 2
    document = json.loads(out_file.read_text())
    found = {(c["address"], c["action"]) for c in document["changes"]}
    assert found == {
        (
            "federated_credential.22222222-2222-2222-2222-222222222222/identities-prod-rg/github-app-deploy-mi/github-main",
            "update",
        ),
        (
            next(c["address"] for c in document["changes"] if c["kind"] == "role_assignment"),
            "create",
        ),
        ("service_connection.contoso/team-b/team-b-deploy", "update"),
    }
    ra_change = next(c for c in document["changes"] if c["kind"] == "role_assignment")
    assert "sandbox-rg" in ra_change["address"] and "ado-pipeline-mi" in ra_change["address"]
    fields = {
        c["address"].split(".", 1)[0]: [f["path"] for f in c["fields"]] for c in document["changes"]
    }
    assert fields["federated_credential"] == ["subject"]
    assert fields["service_connection"] == ["description"]
    assert "repo:contoso/app:ref:refs/heads/evil" in out
    assert document["mode"] == "drift"


def test_implied_credential_shows_known_after_apply_until_the_connection_exists(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    document = plan_document(capsys, sim, tmp_path, [WALKTHROUGH])
    fic = next(c for c in document["changes"] if c["kind"] == "federated_credential")
    assert sorted(fic["unknowns"]) == ["issuer", "subject"]
    assert fic["address"].endswith(
        implied_credential_name("contoso", "platform", "ado-pipeline-mi").lower()
    )
    # the connection comes before its credential in the apply order
    order = [c["kind"] for c in document["changes"]]
    assert order.index("service_connection") < order.index("federated_credential")
    assert (
        order.index("identity") < order.index("role_assignment") < order.index("service_connection")
    )


def test_show_renders_a_saved_plan_in_every_format(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plan_document(capsys, sim, tmp_path, [WALKTHROUGH])
    saved = tmp_path / "plan.json"
    code, text, _ = run(capsys, "show", str(saved), "--no-color")
    assert code == 0 and "4 to create" in text
    code, markdown, _ = run(capsys, "show", str(saved), "--format", "markdown")
    assert code == 0 and "|" in markdown and "<details>" in markdown
    code, again, _ = run(capsys, "show", str(saved), "--format", "json")
    assert code == 0 and json.loads(again)["summary"] == json.loads(saved.read_text())["summary"]


def test_plan_is_stable_across_runs(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = plan_document(capsys, sim, tmp_path, [SPECS])
    second = plan_document(capsys, sim, tmp_path, [SPECS])
    assert first == second


def test_foreign_owner_is_an_error_naming_it_unless_forced(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "steal.yaml"
    spec.write_text(
        "version: 1\nowner: platform-team\n"
        "identities:\n"
        "  - name: data-team-mi\n"
        "    subscription: 11111111-1111-1111-1111-111111111111\n"
        "    resourceGroup: identities-rg\n"
        "    location: westeurope\n"
    )
    code, _, err = run(capsys, "plan", str(spec), *target(sim))
    assert code == 1
    assert "data-team" in err and "steal.yaml:4" in err
    saved = tmp_path / "forced.json"
    code, out, _ = run(capsys, "plan", str(spec), *target(sim), "--force", "--out", str(saved))
    assert code == 0 and "data-team" in out
    # taking over is never decided by the file: a forced plan applies only with --force again
    sim.clear_log()
    code, out, err = run(capsys, "apply", str(saved), *target(sim), "--auto-approve")
    assert code == 1 and "--force" in err and "forced.json" in err
    assert writes(sim) == []
    code, out, err = run(capsys, "apply", str(saved), *target(sim), "--auto-approve", "--force")
    assert code == 0, out + err
    assert run(capsys, "plan", str(spec), *target(sim), "--detailed-exitcode")[0] == 0


def test_bad_target_file_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nope.json"
    code, _, err = run(capsys, "plan", str(WALKTHROUGH), "--target", str(missing))
    assert code == 1
    assert "nope.json" in err and "Traceback" not in err
