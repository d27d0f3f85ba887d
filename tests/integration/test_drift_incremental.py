"""Incremental drift (issue 13) end to end over HTTPS: ``drift --baseline FILE`` against the
simulator's Activity Log and audit log, compared object by object with a full read, and the
attribution of every edit to the caller the simulator's admin API was given."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from bench.world import BenchWorld, Identity, Shape
from reconciler.sim.server import Simulator

from .conftest import SANDBOX, SPECS, Portal, run, target

# the tool's assumed ingestion delay in these tests (the simulator's is set per edit)
LOG_DELAY = "60"


def _drift(
    capsys: pytest.CaptureFixture[str],
    sim: Simulator,
    specs: Path,
    out: Path,
    *extra: str,
) -> dict[str, Any]:
    code, _, err = run(
        capsys,
        "drift",
        str(specs),
        *target(sim),
        "--out",
        str(out),
        "--log-delay",
        LOG_DELAY,
        *extra,
    )
    assert code in (0, 2), err
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def _objects(document: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """Each change, object by object, without who made it."""
    return {
        c["address"]: (c["action"], c["reason"], c["detail"], c["before"], c["after"], c["fields"])
        for c in document["changes"]
    }


def _credential_lists(sim: Simulator) -> int:
    return sum(1 for r in sim.request_log() if r["op"] == "FederatedIdentityCredentials_List")


def whole_subscription_lists(sim: Simulator) -> int:
    """Whole-subscription identity lists in the request log (incremental runs list groups)."""
    return sum(
        1
        for r in sim.request_log()
        if r["op"] == "UserAssignedIdentities_ListBySubscription"
        and "/resourceGroups/" not in r["path"]
    )


def _ra_id(ident: Identity, n: int) -> str:
    a = ident.assignments[n]
    return f"{a.scope}/providers/Microsoft.Authorization/roleAssignments/{a.name}"


def _ident_key(ident: Identity) -> str:
    return f"{ident.subscription}/{ident.resource_group}/{ident.name}".lower()


@pytest.mark.parametrize(
    ("edits", "identities"),
    [
        (200, 50),
        (1000, 200),  # the target: 1,000 random edits (a few seconds)
    ],
)
def test_incremental_drift_misses_nothing_and_names_every_caller(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    portal: Portal,
    tmp_path: Path,
    edits: int,
    identities: int,
) -> None:
    world = BenchWorld(Shape(identities))
    specs = world.write_specs(tmp_path / "specs")
    sim.reset(world.seed("warm"))
    sim.update_faults(activity_log_delay_s=0)
    baseline = tmp_path / "baseline.json"

    # run 1: no baseline yet, so everything is read, and the baseline written
    first = _drift(capsys, sim, specs, tmp_path / "d1.json", "--baseline", str(baseline))
    assert first["changes"] == []
    assert any(p["read"] == "full" and "no baseline yet" in p["why"] for p in first["reads"]), (
        first["reads"]
    )
    assert baseline.is_file()
    ids_before = json.loads(baseline.read_text())["objects"]

    # random out-of-band edits by named portal users; the last 15% are made while the
    # Activity Log takes 30 s to show them (inside the ingestion delay)
    rng = random.Random(13)
    alive = {i.name: i for i in world.identities}
    creds = {i.name: [c.name for c in i.credentials] for i in world.identities}
    assignments = {i.name: list(range(len(i.assignments))) for i in world.identities}
    last_caller: dict[str, tuple[int, str]] = {}  # lower-case ARM id -> (edit, who) last
    deleted_identities: set[str] = set()
    visible_touch: set[str] = set()  # identity keys with an edit the log shows
    hidden_touch: set[str] = set()
    visible_msi: set[str] = set()  # ... of which Managed Identity writes or deletes
    hidden_msi: set[str] = set()
    # ten identities are edited only while the log lags, so that nothing else lists them again
    lagging = {i.name for i in world.identities[::5]}
    lag_from = edits - edits * 15 // 100
    for n in range(edits):
        hidden = n >= lag_from
        if n == lag_from:
            sim.update_faults(activity_log_delay_s=30)
        pool = sorted(name for name in alive if (name in lagging) == hidden)
        ident = alive[rng.choice(pool)]
        caller = f"user{n % 7}@contoso.com"
        kind = rng.choice(["subject", "subject", "delete-cred", "tags", "ra-del", "ra-desc"])
        if n in (edits // 5, edits * 3 // 5):
            kind = "delete-identity"
        if kind in ("subject", "delete-cred") and not creds[ident.name]:
            kind = "tags"
        if kind in ("ra-del", "ra-desc") and not assignments[ident.name]:
            kind = "tags"
        touched = _ident_key(ident)
        if kind == "subject":
            name = rng.choice(creds[ident.name])
            rid = f"{ident.arm_id}/federatedIdentityCredentials/{name}"
            sim.edit("federated_credential", rid, {"subject": f"repo:evil/{n}"}, caller=caller)
        elif kind == "delete-cred":
            name = creds[ident.name].pop(rng.randrange(len(creds[ident.name])))
            rid = f"{ident.arm_id}/federatedIdentityCredentials/{name}"
            sim.delete("federated_credential", rid, caller=caller)
        elif kind == "tags":
            rid = ident.arm_id
            sim.edit("identity", rid, {"tags": {"team": f"edited-{n}"}}, caller=caller)
        elif kind == "ra-del":
            k = assignments[ident.name].pop(rng.randrange(len(assignments[ident.name])))
            rid = _ra_id(ident, k)
            sim.delete("role_assignment", rid, caller=caller)
        elif kind == "ra-desc":
            rid = _ra_id(ident, rng.choice(assignments[ident.name]))
            sim.edit("role_assignment", rid, {"description": f"widened {n}"}, caller=caller)
        else:
            rid = ident.arm_id
            sim.delete("identity", rid, caller=caller)
            del alive[ident.name]
            deleted_identities.add(rid.lower())
        last_caller[rid.lower()] = (n, caller)
        (hidden_touch if hidden else visible_touch).add(touched)
        if not kind.startswith("ra-"):  # a Microsoft.ManagedIdentity write or delete
            (hidden_msi if hidden else visible_msi).add(touched)
    sim.update_faults(activity_log_delay_s=0)

    # run 2: incremental; compared with a full read made right after it
    sim.clear_log()
    second = _drift(capsys, sim, specs, tmp_path / "d2.json", "--baseline", str(baseline))
    relisted = _credential_lists(sim)
    whole_lists = whole_subscription_lists(sim)
    full = _drift(capsys, sim, specs, tmp_path / "f2.json")
    assert any(p["read"] == "incremental" for p in second["reads"]), second["reads"]
    # exactly the identities the Activity Log names (deleted ones are not there to list)
    alive_keys = {_ident_key(i) for i in alive.values()}
    assert relisted == len(visible_msi & alive_keys) < identities

    # the only differences: credentials of identities whose edits the log does not show yet
    # (they are in the next run's window), and nothing else
    hidden_only = hidden_msi - visible_msi
    assert hidden_only
    late = {
        address
        for address, (_, _, _, before, after, _) in _objects(full).items()
        if address.startswith("federated_credential.")
        and str((before or after)["identity"]) in hidden_only
    }
    incremental, complete = _objects(second), _objects(full)
    assert {a: v for a, v in complete.items() if a not in late} == {
        a: v for a, v in incremental.items() if a not in late
    }
    assert late, "some edits must have been inside the ingestion delay"
    note = next(
        p
        for p in second["reads"]
        if p["read"] == "incremental" and p["part"].startswith("federated credentials")
    )["why"]
    # identities: listed per resource group where they were, not per subscription
    assert any(p["part"].startswith("identities in subscription") for p in second["reads"])
    assert whole_lists == 0
    assert "may not be in the log yet" in note

    # the hidden edits become visible: run 3 equals a full read object by object
    sim.age_logs(30)
    third = _drift(capsys, sim, specs, tmp_path / "d3.json", "--baseline", str(baseline))
    full = _drift(capsys, sim, specs, tmp_path / "f3.json")
    assert _objects(third) == _objects(full)
    assert len(third["changes"]) > edits // 2

    # who: every change whose own edit (or its identity's deletion) the log records names the
    # caller given to the admin API, with the operation and time
    checked = 0
    for change in third["changes"]:
        before = change["before"] or {}
        oid = str(before.get("id") or ids_before.get(change["address"], {}).get("id") or "")
        # the latest of its own edits and its identity's deletion
        parent = oid.lower().split("/federatedidentitycredentials/")[0]
        candidates = [last_caller[oid.lower()]] if oid.lower() in last_caller else []
        if parent != oid.lower() and parent in deleted_identities:
            candidates.append(last_caller[parent])
        expected = max(candidates)[1] if candidates else None
        by = change["changed_by"]
        if expected is None:
            assert by["caller"] is None and by["unknown"], change["address"]
            continue
        assert by["caller"] == expected, (change["address"], by)
        assert by["status"] == "Succeeded"
        assert by["operation"].startswith(
            ("Microsoft.ManagedIdentity/", "Microsoft.Authorization/")
        )
        assert by["operation"].endswith(("/write", "/delete"))
        assert by["time"].startswith("20")
        checked += 1
    assert checked > edits // 2


def test_without_baseline_reads_in_full_and_says_why(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")[0] == 0
    code, out, _ = run(capsys, "drift", str(SPECS), *target(sim))
    assert code == 0
    assert "Read in full" in out and "no baseline" in out


def _fake_baseline_time(path: Path, when: str) -> None:
    document = json.loads(path.read_text())
    for state in document["subscriptions"].values():
        state["checked"] = when
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("when", "why"),
    [
        ("2026-01-01T00:00:00Z", "older than the Activity Log's 90-day retention"),
        ("2999-01-01T00:00:00Z", "within the Activity Log's ingestion delay"),
    ],
)
def test_a_baseline_outside_the_logs_window_reads_in_full(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    when: str,
    why: str,
) -> None:
    assert run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")[0] == 0
    baseline = tmp_path / "b.json"
    assert run(capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline))[0] == 0
    _fake_baseline_time(baseline, when)
    sim.clear_log()
    code, out, _ = run(capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline))
    assert code == 0
    assert why in out
    # every credential list read again: one per identity of the specs
    assert _credential_lists(sim) == 6


def test_an_unreadable_activity_log_reads_that_subscription_in_full(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")[0] == 0
    baseline = tmp_path / "b.json"
    assert run(capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline))[0] == 0
    sim.update_faults(**{"5xx": 1.0, "ops": ["ActivityLogs_List"], "retry_after_ms": 1})
    sim.clear_log()
    code, out, err = run(
        capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline), "--format", "json"
    )
    assert code == 0, err
    document = json.loads(out)
    parts = {p["part"]: p for p in document["reads"]}
    sandbox = parts[f"federated credentials in subscription {SANDBOX}"]
    assert sandbox["read"] == "full"
    assert "Activity Log cannot be read" in sandbox["why"]
    assert _credential_lists(sim) == 6


def test_corrupt_baseline_is_ignored_with_a_warning_and_rewritten(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")[0] == 0
    baseline = tmp_path / "b.json"
    baseline.write_text('{"format": "reconciler-drift-baseline", "version": 99}')
    code, out, err = run(capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline))
    assert code == 0
    assert "cannot be used: version: 99" in err
    assert "Read in full" in out
    written = json.loads(baseline.read_text())
    assert written["version"] == 1
    text = baseline.read_text()
    secret = sim.connection["client_secret"]
    assert secret not in text
    # a second run is incremental (the apply's writes hours ago, before its window)
    sim.age_logs(3 * 3600)
    sim.clear_log()
    code, out, _ = run(capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline))
    assert code == 0
    assert _credential_lists(sim) == 0


def test_full_sweep_reads_everything_and_rewrites_the_baseline(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")[0] == 0
    baseline = tmp_path / "b.json"
    assert run(capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline))[0] == 0
    before = json.loads(baseline.read_text())["written"]
    time.sleep(1.1)
    sim.clear_log()
    code, out, _ = run(
        capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline), "--full"
    )
    assert code == 0
    assert "--full was given" in out
    assert _credential_lists(sim) == 6
    assert json.loads(baseline.read_text())["written"] != before


def test_connection_drift_names_the_audit_actor_or_says_auditing_is_off(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    assert run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")[0] == 0
    baseline = tmp_path / "b.json"
    assert run(capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline))[0] == 0
    team_b = next(
        c for c in portal.connections("contoso", "team-b") if c["name"] == "team-b-deploy"
    )
    edited = team_b["description"].replace("[", "edited [", 1)

    # auditing off (the default): the change is found, its author unknown, and why
    sim.edit("service_connection", team_b["id"], {"description": edited}, caller="eve@contoso.com")
    code, out, _ = run(
        capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline), "--format", "json"
    )
    assert code == 2
    change = next(
        c for c in json.loads(out)["changes"] if c["key"] == "contoso/team-b/team-b-deploy"
    )
    assert change["changed_by"]["caller"] is None
    assert "Log Audit Events" in change["changed_by"]["unknown"]

    # auditing on: the audit log names the portal user, the action and the time
    sim.set_auditing("contoso", True, caller="admin@contoso.com")
    sim.edit(
        "service_connection", team_b["id"], {"description": edited + "!"}, caller="eve@contoso.com"
    )
    for fmt in ("json", "text", "markdown"):
        code, out, _ = run(
            capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline), "--format", fmt
        )
        assert code == 2
        if fmt == "json":
            change = next(
                c for c in json.loads(out)["changes"] if c["key"] == "contoso/team-b/team-b-deploy"
            )
            by = change["changed_by"]
            assert by["caller"] == "eve@contoso.com"
            assert by["operation"] == "Library.ServiceConnectionModified"
            assert by["source"] == "Azure DevOps audit log"
        else:
            assert "eve@contoso.com" in out and "Library.ServiceConnectionModified" in out

    # auditing switched off, then another edit: the last entry is not the author any more
    sim.set_auditing("contoso", False, caller="admin@contoso.com")
    sim.edit(
        "service_connection",
        team_b["id"],
        {"description": edited + "?"},
        caller="oscar@contoso.com",
    )
    code, out, _ = run(
        capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline), "--format", "json"
    )
    assert code == 2
    change = next(
        c for c in json.loads(out)["changes"] if c["key"] == "contoso/team-b/team-b-deploy"
    )
    by = change["changed_by"]
    assert by["caller"] is None
    assert "auditing was turned off in contoso" in by["unknown"]
    assert "admin@contoso.com" in by["unknown"] and "eve@contoso.com" in by["unknown"]


def test_credential_drift_names_the_portal_user_in_every_format(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    sim.update_faults(activity_log_delay_s=0)
    assert run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")[0] == 0
    baseline = tmp_path / "b.json"
    assert run(capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline))[0] == 0
    sim.age_logs(3 * 3600)  # the apply's writes: hours ago, before the baseline's window
    github = portal.identity(
        "identities-prod-rg", "github-app-deploy-mi", "22222222-2222-2222-2222-222222222222"
    )
    sim.edit(
        "federated_credential",
        f"{github['id']}/federatedIdentityCredentials/github-main",
        {"subject": "repo:contoso/app:ref:refs/heads/evil"},
        caller="mallory@contoso.com",
    )
    sim.clear_log()
    outputs = {}
    for fmt in ("json", "text", "markdown"):
        code, outputs[fmt], _ = run(
            capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline), "--format", fmt
        )
        assert code == 2
    # one credential list per run: the identity the Activity Log names
    assert _credential_lists(sim) == 3
    change = json.loads(outputs["json"])["changes"][0]
    assert change["changed_by"]["caller"] == "mallory@contoso.com"
    assert change["changed_by"]["operation"] == (
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write"
    )
    for fmt in ("text", "markdown"):
        assert "mallory@contoso.com" in outputs[fmt]
        assert "federatedIdentityCredentials/write" in outputs[fmt]


def _permission_reads(sim: Simulator) -> int:
    return sum(1 for r in sim.request_log() if r["op"] == "PipelinePermissions_Get")


def _part(document: dict[str, Any], org: str) -> dict[str, Any]:
    name = f"pipeline permissions in Azure DevOps organisation {org}"
    found: dict[str, Any] = next(p for p in document["reads"] if p["part"] == name)
    return found


def test_pipeline_permissions_are_read_again_only_where_the_audit_log_says(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    assert run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")[0] == 0
    sim.set_auditing("contoso", True, caller="admin@contoso.com")  # fabrikam: off (default)
    sim.age_logs(3600)
    baseline = tmp_path / "b.json"
    first = _drift(capsys, sim, SPECS, tmp_path / "d1.json", "--baseline", str(baseline))
    assert _part(first, "contoso")["read"] == "full"

    # nothing changed: contoso's four connections keep the baseline's permissions; fabrikam's
    # audit log is off, so an empty answer proves nothing and its one connection is read again
    sim.clear_log()
    second = _drift(capsys, sim, SPECS, tmp_path / "d2.json", "--baseline", str(baseline))
    assert second["changes"] == []
    assert _part(second, "contoso")["read"] == "incremental"
    fabrikam = _part(second, "fabrikam")
    assert fabrikam["read"] == "full" and "no entry of the last run reading it" in fabrikam["why"]
    assert _permission_reads(sim) == 1

    # a portal user authorises every pipeline on team-a-deploy: read again, found, named
    team_a = next(
        c for c in portal.connections("contoso", "team-a") if c["name"] == "team-a-deploy"
    )
    sim.edit(
        "pipeline_permissions",
        f"contoso/team-a/endpoint/{team_a['id']}",
        {"allPipelines": True},
        caller="eve@contoso.com",
    )
    sim.clear_log()
    third = _drift(capsys, sim, SPECS, tmp_path / "d3.json", "--baseline", str(baseline))
    assert _permission_reads(sim) == 2
    (change,) = third["changes"]
    assert change["key"] == "contoso/team-a/team-a-deploy"
    assert change["changed_by"]["caller"] == "eve@contoso.com"
    # the edit authorised the project and dropped the one pipeline: two entries, the last wins
    assert change["changed_by"]["operation"] == "Pipelines.ResourceUnauthorizedForPipeline"
    full = _drift(capsys, sim, SPECS, tmp_path / "f3.json")
    assert _objects(third) == _objects(full)

    # auditing off and on again in between: nothing the log says can be trusted
    sim.set_auditing("contoso", False, caller="admin@contoso.com")
    sim.set_auditing("contoso", True, caller="admin@contoso.com")
    sim.clear_log()
    fourth = _drift(capsys, sim, SPECS, tmp_path / "d4.json", "--baseline", str(baseline))
    contoso = _part(fourth, "contoso")
    assert contoso["read"] == "full" and "policy was set to" in contoso["why"]
    assert _permission_reads(sim) == 5


def test_a_baseline_path_that_cannot_be_written_is_refused_before_reading(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for bad, message in (
        (tmp_path, "is a folder"),
        (tmp_path / "missing" / "b.json", "does not exist"),
    ):
        sim.clear_log()
        code, _, err = run(capsys, "drift", str(SPECS), *target(sim), "--baseline", str(bad))
        assert code == 1
        assert f"--baseline {bad}: " in err and message in err
        assert not [r for r in sim.request_log() if r["op"] != "OpenIdConfiguration"]


def test_an_owned_identity_made_out_of_band_in_another_resource_group_is_found(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    """Incremental runs list identities per resource group (those that held the owner's
    identities, those the specs, Resource Graph and the Activity Log name): one made by hand
    elsewhere, carrying the owner's tag, is still found, and named."""
    from reconciler.ownership import mark_tags

    sim.update_faults(activity_log_delay_s=0)
    assert run(capsys, "apply", str(SPECS), *target(sim), "--auto-approve")[0] == 0
    baseline = tmp_path / "b.json"
    assert run(capsys, "drift", str(SPECS), *target(sim), "--baseline", str(baseline))[0] == 0
    sim.age_logs(3 * 3600)
    rogue = (
        f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/rogue-mi"
    )
    r = portal.session.put(
        f"{sim.arm_url}{rogue}",
        params={"api-version": "2024-11-30"},
        headers=portal._arm_headers(),
        json={"location": "westeurope", "tags": mark_tags({}, "platform-team")},
    )
    assert r.status_code in (200, 201), r.text
    sim.clear_log()
    document = _drift(capsys, sim, SPECS, tmp_path / "d.json", "--baseline", str(baseline))
    assert whole_subscription_lists(sim) == 0
    (change,) = document["changes"]
    assert change["key"].endswith("/sandbox-rg/rogue-mi") and change["action"] == "delete"
    assert change["changed_by"]["operation"] == (
        "Microsoft.ManagedIdentity/userAssignedIdentities/write"
    )
    assert change["changed_by"]["caller"]  # the portal's service principal


@pytest.mark.parametrize("value", ["-1", "nan", "1e12", "soon"])
def test_a_log_delay_outside_zero_to_a_day_is_a_usage_error(
    sim: Simulator, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    code, _, err = run(capsys, "drift", str(SPECS), *target(sim), "--log-delay", value)
    assert code == 1
    assert "--log-delay" in err and value in err
