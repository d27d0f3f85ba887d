"""A saved plan cannot do more than a fresh plan would (issue 9, section 2), end to end.

Every tamper class is applied to a genuine saved plan; ``apply FILE`` must refuse with exit 1,
name the entry that differs, and write nothing (the simulator's request log shows no write).
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler import runner
from reconciler.sim.server import Simulator

from .conftest import SANDBOX, SPECS, WALKTHROUGH, Portal, run, target, writes

Doc = dict[str, Any]
IDENTITY = f"identity.{SANDBOX}/identities-rg/ado-pipeline-mi"
DEPLOY_B = f"identity.{SANDBOX}/team-b-rg/deploy-mi"
DATA_TEAM = f"identity.{SANDBOX}/identities-rg/data-team-mi"


def _saved_prune_plan(
    sim: Simulator, capsys: pytest.CaptureFixture[str], folder: Path
) -> tuple[Path, Doc]:
    """Every example spec applied, then a plan of the walkthrough alone with one tag changed:
    an identity update and 18 deletes (7 destructive), saved to ``folder/plan.json``."""
    assert run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")[0] == 0
    spec = folder / "walkthrough.yaml"
    spec.write_text(WALKTHROUGH.read_text().replace("azure-devops-deployments", "deployments"))
    saved = folder / "plan.json"
    code, _, err = run(capsys, "plan", str(spec), *target(sim), "--out", str(saved))
    assert code == 0, err
    document: Doc = json.loads(saved.read_text())
    return saved, document


def _find(document: Doc, address: str) -> dict[str, Any]:
    return next(c for c in document["changes"] if c["address"] == address)


def _append_foreign_delete(doc: Doc, portal: Portal) -> str:
    # an identity that carries another owner's tag, dressed up as one of ours
    ident = portal.identity("identities-rg", "data-team-mi")
    assert ident["tags"]["reconciler-owner"] == "data-team"
    delete = copy.deepcopy(_find(doc, DEPLOY_B))
    delete.update(
        address=DATA_TEAM,
        key=DATA_TEAM.split(".", 1)[1],
        depends_on=[],
        destructive=False,
        before={
            "subscription": SANDBOX,
            "resourceGroup": "identities-rg",
            "name": "data-team-mi",
            "location": ident["location"],
            "tags": {},
        },
    )
    doc["changes"].append(delete)
    return DATA_TEAM


def _append_owned_delete(doc: Doc, portal: Portal) -> str:
    # the walkthrough identity's role assignment exists, is ours and is in the specs
    address = next(
        a
        for a in doc["fingerprints"]
        if a.startswith("role_assignment.") and "identities-rg/ado-pipeline-mi" in a
    )
    template = copy.deepcopy(doc["changes"][0])
    template.update(address=address, key=address.split(".", 1)[1], before={"scope": "x"})
    doc["changes"].append(template)
    return address


def _remove_change(doc: Doc, portal: Portal) -> str:
    doc["changes"] = [c for c in doc["changes"] if c["address"] != DEPLOY_B]
    return DEPLOY_B


def _flip_destructive(doc: Doc, portal: Portal) -> str:
    for change in doc["changes"]:
        change["destructive"] = False
    doc["summary"]["destructive"] = 0
    return "destructive"


def _update_to_delete(doc: Doc, portal: Portal) -> str:
    change = _find(doc, IDENTITY)
    assert change["action"] == "update"
    change.update(action="delete", after=None, fields=[], reason="not in spec")
    return "action"


def _change_ownership(doc: Doc, portal: Portal) -> str:
    _find(doc, DEPLOY_B)["ownership"] = "unmarked"
    return "ownership"


def _change_after(doc: Doc, portal: Portal) -> str:
    _find(doc, IDENTITY)["after"]["tags"]["purpose"] = "anything"
    return "after"


def _change_before(doc: Doc, portal: Portal) -> str:
    _find(doc, DEPLOY_B)["before"]["location"] = "westus"
    return "before"


def _change_fields(doc: Doc, portal: Portal) -> str:
    _find(doc, IDENTITY)["fields"][0]["after"] = "anything"
    return "fields"


def _reorder(doc: Doc, portal: Portal) -> str:
    changes = doc["changes"]
    changes[0], changes[-1] = changes[-1], changes[0]
    return "out of order"


def _drop_depends_on(doc: Doc, portal: Portal) -> str:
    _find(doc, DEPLOY_B)["depends_on"] = []
    return "depends_on"


def _reorder_depends_on(doc: Doc, portal: Portal) -> str:
    change = _find(doc, DEPLOY_B)
    assert len(change["depends_on"]) > 1
    change["depends_on"].reverse()
    return "depends_on"


def _change_wave(doc: Doc, portal: Portal) -> str:
    _find(doc, DEPLOY_B)["wave"] = 0
    return "wave"


def _change_reason(doc: Doc, portal: Portal) -> str:
    _find(doc, DEPLOY_B)["reason"] = "adoption"
    return "reason"


def _change_owner(doc: Doc, portal: Portal) -> str:
    doc["owner"] = "data-team"
    return "owner"


def _tamper_digest(doc: Doc, portal: Portal) -> str:
    doc["spec_digest"] = "0" * 64
    return "spec files changed"


def _destructive_as_number(doc: Doc, portal: Portal) -> str:
    _find(doc, DEPLOY_B)["destructive"] = 1
    return "destructive"


TAMPERS: dict[str, Callable[[Doc, Portal], str]] = {
    f.__name__.lstrip("_"): f
    for f in (
        _append_foreign_delete,
        _append_owned_delete,
        _remove_change,
        _flip_destructive,
        _update_to_delete,
        _change_ownership,
        _change_after,
        _change_before,
        _change_fields,
        _reorder,
        _drop_depends_on,
        _reorder_depends_on,
        _change_wave,
        _change_reason,
        _change_owner,
        _tamper_digest,
        _destructive_as_number,
    )
}


@pytest.mark.parametrize("allow_destroy", [False, True], ids=["plain", "allow-destroy"])
@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampered_saved_plan_is_refused_and_nothing_is_written(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    portal: Portal,
    tmp_path: Path,
    tamper: str,
    allow_destroy: bool,
) -> None:
    saved, document = _saved_prune_plan(sim, capsys, tmp_path)
    names = TAMPERS[tamper](document, portal)
    saved.write_text(json.dumps(document, indent=2))
    sim.clear_log()
    flags = ["--allow-destroy"] if allow_destroy else []
    code, out, err = run(capsys, "apply", str(saved), *target(sim), "--auto-approve", *flags)
    assert code == 1, out + err
    assert names in err
    assert "nothing was applied" in err or "stale" in err
    assert writes(sim) == []
    assert {i["name"] for i in portal.identities()} >= {"deploy-mi", "data-team-mi"}


def test_untampered_saved_plan_applies_the_fresh_plan(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    saved, _ = _saved_prune_plan(sim, capsys, tmp_path)
    sim.clear_log()
    code, _, err = run(capsys, "apply", str(saved), *target(sim), "--auto-approve")
    assert code == 1 and "--allow-destroy" in err, "destructive verdicts still hold"
    assert writes(sim) == []
    code, out, err = run(
        capsys, "apply", str(saved), *target(sim), "--auto-approve", "--allow-destroy"
    )
    assert code == 0, out + err
    assert "Converged" in out
    ident = portal.identity("identities-rg", "ado-pipeline-mi")
    assert ident["tags"]["purpose"] == "deployments"
    names = {i["name"] for i in portal.identities()}
    assert "deploy-mi" not in names and "data-team-mi" in names


def test_forced_flag_in_the_file_grants_nothing(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    saved, document = _saved_prune_plan(sim, capsys, tmp_path)
    document["forced"] = True
    saved.write_text(json.dumps(document))
    sim.clear_log()
    code, _, err = run(
        capsys, "apply", str(saved), *target(sim), "--auto-approve", "--allow-destroy"
    )
    assert code == 1 and "--force" in err
    assert writes(sim) == []


def _checkout(root: Path) -> Path:
    """A copy of the example specs, as a pipeline's checkout of the repository would hold."""
    shutil.copytree(SPECS, root / "specs")
    return root


def test_plan_saved_in_one_folder_applies_from_another(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    portal: Portal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # stage 1 plans in its checkout with a relative path; stage 2 downloads the plan as an
    # artifact into another folder and applies from its own checkout of the same commit
    stage1 = _checkout(tmp_path / "agent1" / "s")
    monkeypatch.chdir(stage1)
    (stage1 / "out").mkdir()
    assert run(capsys, "plan", "./specs/", *target(sim), "--out", "out/plan.json")[0] == 0
    artifact = tmp_path / "agent2" / "drop" / "plan.json"
    artifact.parent.mkdir(parents=True)
    shutil.copy(stage1 / "out" / "plan.json", artifact)
    shutil.rmtree(stage1)  # the first agent's folder is gone
    stage2 = _checkout(tmp_path / "agent2" / "s")
    monkeypatch.chdir(stage2)
    code, out, err = run(capsys, "apply", str(artifact), *target(sim), "--auto-approve")
    assert code == 0, out + err
    assert "Converged" in out
    assert "ado-pipeline-mi" in {i["name"] for i in portal.identities()}


def test_plan_next_to_its_specs_applies_from_any_working_directory(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    portal: Portal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = _checkout(tmp_path / "repo")
    monkeypatch.chdir(repo)
    assert run(capsys, "plan", "specs", *target(sim), "--out", "plan.json")[0] == 0
    moved = tmp_path / "moved"
    shutil.move(repo, moved)  # the whole checkout moves; the absolute paths are now wrong
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run(capsys, "apply", str(moved / "plan.json"), *target(sim), "--auto-approve")
    assert code == 0, out + err
    assert "deploy-mi" in {i["name"] for i in portal.identities()}


def test_missing_specs_name_every_path_tried_and_specs_overrides(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    portal: Portal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = _checkout(tmp_path / "repo")
    monkeypatch.chdir(repo)
    assert run(capsys, "plan", "specs", *target(sim), "--out", "plan.json")[0] == 0
    artifact = tmp_path / "drop" / "plan.json"
    artifact.parent.mkdir()
    shutil.copy(repo / "plan.json", artifact)
    kept = tmp_path / "kept-specs"
    shutil.move(repo / "specs", kept)
    monkeypatch.chdir(tmp_path)
    sim.clear_log()
    code, _, err = run(capsys, "apply", str(artifact), *target(sim), "--auto-approve")
    assert code == 1
    assert "cannot find the spec files" in err and "--specs" in err
    assert str(tmp_path / "drop" / "specs") in err  # relative to the plan file
    assert "specs (as given" in err
    assert str(repo / "specs") in err  # absolute
    assert writes(sim) == []
    code, out, err = run(
        capsys, "apply", str(artifact), "--specs", str(kept), *target(sim), "--auto-approve"
    )
    assert code == 0, out + err
    assert "deploy-mi" in {i["name"] for i in portal.identities()}
    code, _, err = run(capsys, "apply", str(kept), "--specs", str(kept), *target(sim))
    assert code == 1 and "--specs" in err


# -- the owner marker is read again right before a delete ------------------------------------


def _marker_edits(sim: Simulator, portal: Portal) -> dict[str, Callable[[], str]]:
    """Portal edits made between the plan apply shows and its first write; each returns the
    path (lower-case) of the object whose delete must now be refused."""

    def identity() -> str:
        ident = portal.identity("team-b-rg", "deploy-mi")
        sim.edit("identity", ident["id"], {"tags": {"team": "team-b"}})  # marker removed
        return str(ident["id"]).lower()

    def credential_parent() -> str:
        ident = portal.identity("team-b-rg", "legacy-release-mi")
        sim.edit("identity", ident["id"], {"tags": {"reconciler-owner": "data-team"}})
        (fic,) = portal.credentials(ident["id"])
        return str(fic["id"]).lower()

    def role_assignment() -> str:
        ident = portal.identity("team-a-rg", "team-a-ci-mi")
        principal = ident["properties"]["principalId"]
        ra = next(a for a in portal.assignments() if a["properties"]["principalId"] == principal)
        sim.edit("role_assignment", ra["id"], {"description": "[reconciler-owner: data-team]"})
        return str(ra["id"]).lower()

    def service_connection() -> str:
        conn = next(c for c in portal.connections("contoso", "team-a") if c["name"] == "team-a-ci")
        sim.edit("service_connection", conn["id"], {"description": "made by hand"})
        return str(conn["id"]).lower()

    return {
        "identity": identity,
        "credential_parent": credential_parent,
        "role_assignment": role_assignment,
        "service_connection": service_connection,
    }


@pytest.mark.parametrize(
    "kind", ["identity", "credential_parent", "role_assignment", "service_connection"]
)
def test_marker_changed_during_apply_makes_the_delete_refuse(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    portal: Portal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    assert run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")[0] == 0
    edit = _marker_edits(sim, portal)[kind]
    gone: list[str] = []

    def confirm_then_edit(args: Any, plan: Any) -> bool:
        gone.append(edit())  # after the plan was read and shown, before anything is written
        return True

    monkeypatch.setattr(runner, "_confirm", confirm_then_edit)
    sim.clear_log()
    code, out, err = run(
        capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve", "--allow-destroy"
    )
    assert code == 1, out + err
    assert "OwnerMarkerChanged" in out + err and "refusing to delete" in out + err
    # and the failed apply says who else was at work
    assert "note: another writer changed 1 of this owner's objects during the run" in err, err
    (path,) = gone
    deleted = [w["path"].lower() for w in writes(sim) if w["method"] == "DELETE"]
    assert deleted, "the other deletes went ahead"
    assert not any(p.startswith(path) for p in deleted), "the refused object was not deleted"
    # and it is still there, as the portal shows it
    if kind == "identity":
        ident = portal.identity("team-b-rg", "deploy-mi")
        assert portal.credentials(ident["id"]), "its credentials were kept with it"
    elif kind == "credential_parent":
        assert portal.credentials(portal.identity("team-b-rg", "legacy-release-mi")["id"])
    elif kind == "role_assignment":
        assert any(a["id"].lower() == path for a in portal.assignments())
    else:
        assert any(c["id"].lower() == path for c in portal.connections("contoso", "team-a"))


def test_each_delete_reads_its_marker_once(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    saved, document = _saved_prune_plan(sim, capsys, tmp_path)
    deletes = [c for c in document["changes"] if c["action"] == "delete"]
    assert {c["kind"] for c in deletes} == {
        "identity",
        "federated_credential",
        "role_assignment",
        "service_connection",
    }
    assert len(document["changes"]) == len(deletes) + 1  # and the identity update

    def confirm(args: Any, plan: Any) -> bool:
        sim.clear_log()  # count from the first write on
        return True

    monkeypatch.setattr(runner, "_confirm", confirm)
    monkeypatch.setattr(runner, "_check_converged", lambda *a, **k: 0)
    code, out, err = run(
        capsys, "apply", str(saved), *target(sim), "--auto-approve", "--allow-destroy"
    )
    assert code == 0, out + err
    log = sim.request_log()
    removed = [r for r in log if r["method"] == "DELETE"]
    assert len(removed) == len(deletes)
    # reads of an object before its delete; after it, a connection's delete is awaited (Azure
    # DevOps deletes asynchronously) with reads that are not the marker's
    deleted: set[str] = set()
    reads = []
    for request in log:
        path = request["path"].rstrip("/").lower()
        # a connection is read in its project and deleted in its organisation: key it by id
        last = path.rsplit("/", 1)[-1] if "/serviceendpoint/" in path else path
        if request["method"] == "DELETE":
            deleted.add(last)
        elif request["method"] == "GET" and last not in deleted:
            reads.append(request["op"])
    # one read per delete (the marker, or the parent identity's for a credential), no more
    assert len(reads) == len(deletes), sorted(reads)


def test_show_counts_from_the_changes_not_the_files_summary(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A reviewer reading ``show`` (or the PR comment it makes) sees the deletes the file
    carries even when its ``summary`` block was edited to say there are none."""
    saved, document = _saved_prune_plan(sim, capsys, tmp_path)
    deletes = sum(1 for c in document["changes"] if c["action"] == "delete")
    assert deletes > 0
    document["summary"] = {k: 0 for k in document["summary"]}
    saved.write_text(json.dumps(document))
    for fmt, wanted in (("markdown", f"{deletes} to delete"), ("text", f"{deletes} to delete")):
        code, out, err = run(capsys, "show", str(saved), "--format", fmt)
        assert code == 0, err
        assert wanted in out and "0 to delete" not in out, out[-600:]


@pytest.mark.parametrize("name", ["reviewed.plan", "plan"])
def test_a_saved_plan_named_anything_but_yaml_is_applied_as_one(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path, name: str
) -> None:
    # plan --out takes any name; apply recognises the document by its content, not only by a
    # .json suffix (before: read as specs, 14 schema errors)
    saved, _ = _saved_prune_plan(sim, capsys, tmp_path)
    renamed = saved.rename(tmp_path / name)
    code, out, err = run(
        capsys, "apply", str(renamed), *target(sim), "--auto-approve", "--allow-destroy"
    )
    assert code == 0, out + err
    assert "Applying the saved plan" in out and "Converged" in out
    ident = portal.identity("identities-rg", "ado-pipeline-mi")
    assert ident["tags"]["purpose"] == "deployments"
