"""The inventory (README "Safety"): every owned identity records, in ``reconciler-org-{id}``
tags, the Azure DevOps organisations where a connection of its owner signs in as it, so a
connection whose federated credential is gone is still found once the specs stop naming its
organisation. End to end over HTTPS against the simulator, live state read through its API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.apply import apply_plan
from reconciler.kinds.executors import ApplyContext, perform
from reconciler.model import implied_credential_name
from reconciler.observe import observe
from reconciler.plan import make_plan
from reconciler.providers import connect
from reconciler.providers.target import resolve_target
from reconciler.retry import RetryPolicy
from reconciler.sim.server import Simulator
from reconciler.specs import load_desired_state

from .conftest import Portal, ScaledClock, plan_document, run, target
from .test_reach import HEAD, MI_1, MI_ID, SC_1, _apply, _changes, _connection, _spec

OWNER_ONLY = {"reconciler-owner": "platform-team"}
IMPLIED = implied_credential_name("contoso", "platform", "sc-1")


def _contoso_id(portal: Portal) -> str:
    data = portal.devops("/contoso/_apis/connectionData", **{"api-version": "7.1-preview.1"})
    return str(data["instanceId"]).lower()


def _inventory(portal: Portal) -> dict[str, str]:
    tags = portal.identity("identities-rg", "mi-1").get("tags") or {}
    return {k: v for k, v in tags.items() if k.startswith("reconciler-org-")}


def _reads(sim: Simulator) -> dict[str, int]:
    ops = ("ConnectionData", "Projects_List", "ServiceEndpoints_List", "Profiles_Get")
    return {op: sim.count(op) for op in (*ops, "Accounts_List", "Resources")}


def test_apply_records_the_organisation_on_the_identity(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    _apply(capsys, sim, _spec(tmp_path, "both.yaml", HEAD + MI_1 + SC_1))
    assert _inventory(portal) == {f"reconciler-org-{_contoso_id(portal)}": "contoso"}
    # the user's view of the tags never shows it, and the next plan is empty
    document = plan_document(capsys, sim, tmp_path, [tmp_path / "both.yaml"])
    assert document["changes"] == []


def test_connection_without_its_credential_is_found_through_the_inventory(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    _apply(capsys, sim, _spec(tmp_path, "both.yaml", HEAD + MI_1 + SC_1))
    org_id = _contoso_id(portal)
    # the connection leaves the specs (the identity stays; nothing else names contoso), and
    # its federated credential is deleted by hand: only the inventory names contoso now
    sim.delete("federated_credential", f"{MI_ID}/federatedIdentityCredentials/{IMPLIED}")
    assert portal.credentials(MI_ID) == []
    only_identity = _spec(tmp_path, "identity.yaml", HEAD + MI_1)

    sim.clear_log()
    changes = _changes(plan_document(capsys, sim, tmp_path, [only_identity]))
    connection = changes[("service_connection", "sc-1")]
    assert connection["action"] == "delete" and connection["destructive"]
    identity = changes[("identity", "mi-1")]
    assert identity["action"] == "update"
    assert [f["path"] for f in identity["fields"]] == [f"organizations.{org_id}"]
    # the record goes only after the connection it stands for
    assert f"service_connection.{connection['key']}" in identity["depends_on"]
    assert set(changes) == {("service_connection", "sc-1"), ("identity", "mi-1")}
    # read by its recorded name: connectionData and the project list, no accounts lookup
    reads = _reads(sim)
    assert reads["ConnectionData"] == 1 and reads["Projects_List"] == 1
    assert reads["Accounts_List"] == 0 and reads["Profiles_Get"] == 0

    code, out, _ = run(capsys, "drift", str(only_identity), *target(sim))
    assert code == 2 and "sc-1" in out
    code, _, err = run(capsys, "apply", str(only_identity), *target(sim), "--auto-approve")
    assert code == 1 and "--allow-destroy" in err
    assert _connection(portal, "sc-1") is not None

    _apply(capsys, sim, only_identity, "--allow-destroy")
    assert _connection(portal, "sc-1") is None
    assert _inventory(portal) == {}
    assert portal.identity("identities-rg", "mi-1")["tags"] == OWNER_ONLY
    code, out, _ = run(capsys, "drift", str(only_identity), *target(sim))
    assert code == 0, out


def test_renamed_organisation_in_the_inventory_is_resolved_by_id(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    _apply(capsys, sim, _spec(tmp_path, "both.yaml", HEAD + MI_1 + SC_1))
    org_id = _contoso_id(portal)
    sim.delete("federated_credential", f"{MI_ID}/federatedIdentityCredentials/{IMPLIED}")
    # the recorded name no longer answers (the organisation was renamed since)
    sim.edit("identity", MI_ID, {"tags": {**OWNER_ONLY, f"reconciler-org-{org_id}": "old-name"}})
    only_identity = _spec(tmp_path, "identity.yaml", HEAD + MI_1)

    sim.clear_log()
    changes = _changes(plan_document(capsys, sim, tmp_path, [only_identity]))
    assert changes[("service_connection", "sc-1")]["action"] == "delete"
    assert sim.count("Accounts_List") == 1 and sim.count("Profiles_Get") == 1


def test_apply_stopped_before_the_connection_delete_keeps_the_record(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    _apply(capsys, sim, _spec(tmp_path, "both.yaml", HEAD + MI_1 + SC_1))
    recorded = _inventory(portal)
    assert recorded
    only_identity = _spec(tmp_path, "identity.yaml", HEAD + MI_1)

    # an apply that deletes the credential, then fails for good on the connection delete
    services = connect(resolve_target(str(sim.connection_file)), workers=4)
    clock = ScaledClock(scale=0.01)
    desired = load_desired_state([str(only_identity)])
    live = observe(services, desired, workers=4, clock=clock)
    plan = make_plan(desired, live)
    sim.set_faults(None, rate_5xx=1.0, ops=("ServiceEndpoints_Delete",))
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
    sim.set_faults(None)
    failed = {str(o.change.address).split(".", 1)[0] for o in result.failed}
    assert failed == {"service_connection"}
    assert {str(o.change.address).split(".", 1)[0] for o in result.skipped} == {"identity"}
    assert portal.credentials(MI_ID) == []
    assert _connection(portal, "sc-1") is not None
    assert _inventory(portal) == recorded  # the record outlives the failed delete

    # the specs still do not name contoso: the next plan finds the connection all the same
    changes = _changes(plan_document(capsys, sim, tmp_path, [only_identity]))
    assert changes[("service_connection", "sc-1")]["action"] == "delete"
    assert changes[("identity", "mi-1")]["action"] == "update"
    _apply(capsys, sim, only_identity, "--allow-destroy")
    assert _connection(portal, "sc-1") is None
    assert _inventory(portal) == {}
    assert plan_document(capsys, sim, tmp_path, [only_identity])["changes"] == []


def test_identity_applied_before_the_inventory_gets_it_recorded(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    both = _spec(tmp_path, "both.yaml", HEAD + MI_1 + SC_1)
    _apply(capsys, sim, both)
    org_id = _contoso_id(portal)
    # what an earlier version wrote: the owner tag only
    sim.edit("identity", MI_ID, {"tags": OWNER_ONLY})

    document = plan_document(capsys, sim, tmp_path, [both])
    (change,) = document["changes"]
    assert (change["kind"], change["action"], change["destructive"]) == (
        "identity",
        "update",
        False,
    )
    assert change["fields"] == [
        {"path": f"organizations.{org_id}", "before": None, "after": "contoso"}
    ]
    _apply(capsys, sim, both)
    assert _inventory(portal) == {f"reconciler-org-{org_id}": "contoso"}
    assert plan_document(capsys, sim, tmp_path, [both])["changes"] == []


def test_reserved_inventory_tag_in_the_specs_is_refused(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = _spec(
        tmp_path,
        "tagged.yaml",
        HEAD + MI_1 + "    tags:\n      reconciler-org-anything: contoso\n",
    )
    code, out, err = run(capsys, "plan", str(spec), *target(sim))
    assert code == 1, out
    assert f"{spec}:10:7: identities[0].tags.reconciler-org-anything: reserved tag" in err
    assert "record of the Azure DevOps organisations" in err


def test_warm_plan_with_the_inventory_reads_nothing_more(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    both = _spec(tmp_path, "both.yaml", HEAD + MI_1 + SC_1)
    _apply(capsys, sim, both)
    counts: list[dict[str, Any]] = []
    for tags in (None, OWNER_ONLY):  # with the inventory, then as an earlier version left it
        if tags is not None:
            sim.edit("identity", MI_ID, {"tags": tags})
        sim.clear_log()
        assert run(capsys, "plan", str(both), *target(sim))[0] in (0, 2)
        counts.append({"total": len(sim.request_log()), **_reads(sim)})
    assert counts[0] == counts[1]
    # contoso is named by the specs: read once, and no accounts lookup
    assert counts[0]["ConnectionData"] == 1 and counts[0]["Projects_List"] == 1
    assert counts[0]["Accounts_List"] == 0 and counts[0]["Resources"] == 2


def test_inventory_naming_an_unreadable_organisation_fails_plan_and_drift(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    only_identity = _spec(tmp_path, "identity.yaml", HEAD + MI_1)
    _apply(capsys, sim, only_identity)
    unknown = "5d0c7b1e-0000-4000-8000-00000000abcd"
    sim.edit("identity", MI_ID, {"tags": {**OWNER_ONLY, f"reconciler-org-{unknown}": "gone-org"}})
    sim.clear_log()
    for command in ("plan", "drift"):
        code, out, err = run(capsys, command, str(only_identity), *target(sim))
        assert code == 1, out
        assert unknown in err and "inventory tag of identity mi-1" in err
    assert sim.count("Accounts_List") == 2
