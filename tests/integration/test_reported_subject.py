"""Issue 11 §2 (c), end to end over HTTPS against the simulator: Azure DevOps reports another
Entra subject than the tool computed (the simulator's ``subject-drift`` fault: the formula in
``reconciler/federation.py`` out of date). A migration waits for the pair the service shows,
gives the identity a credential for it (over the computed one, which nothing signs in with),
switches, reads back, deletes the legacy credential, and tells the user in text and JSON,
naming the connection and both pairs. A conversion writes what the service reports and says
so too. The sign-in probe counts 0 failed sign-ins throughout, the identity ends with exactly
the credential the service's pair needs, and the next plan is empty."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.federation import devops_issuer, devops_subject, entra_federation
from reconciler.sim.probe import SignInProbe, wait_rounds
from reconciler.sim.server import Simulator
from tests.sim.estates import APP, DATA, LEGACY_ID, ORG_ID, SECRET, SPN_ID, estate

from .conftest import SANDBOX, Portal, run, target
from .stepping import Watch, apply_watched

DRIFT = "/drifted"


def drifted(subject: str) -> str:
    """What the ``subject-drift`` fault makes of a computed subject: DRIFT before its
    ``/sc/{organization id}/{connection id}`` tail."""
    head, sep, tail = subject.rpartition("/sc/")
    return f"{head}{DRIFT}{sep}{tail}"


LATENCY_MS = 30
FABRIKAM_ID = "5d3e2c1b-7a9f-4e6d-8c0b-1a2b3c4d5e6f"  # its default issuer is Azure DevOps'
FABRIKAM_SPN_ID = "bbbbbbbb-0000-4000-8000-000000000001"
RG_SCOPE = f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg"
HEAD = f"""version: 1
owner: platform-team
defaults:
  subscription: {SANDBOX}
  resourceGroup: identities-rg
  location: westeurope
"""


@pytest.fixture
def world(sim: Simulator) -> Simulator:
    """The brownfield estate, legacy-mi holding a role, and a secret-based spn-sc in fabrikam
    (whose default issuer is Azure DevOps')."""
    seed = estate(sim.tenant_id)
    seed["roleAssignments"].append(
        {"identity": f"{SANDBOX}/identities-rg/legacy-mi", "scope": RG_SCOPE, "role": "Reader"}
    )
    seed["devops"]["organizations"][1]["serviceEndpoints"] = [
        {
            "id": FABRIKAM_SPN_ID,
            "name": "spn-sc",
            "scheme": "ServicePrincipal",
            "parameters": {
                "serviceprincipalid": APP,
                "tenantid": sim.tenant_id,
                "authenticationType": "spnKey",
                "serviceprincipalkey": SECRET,
            },
            "data": DATA,
            "projects": ["legacy-app"],
        }
    ]
    sim.reset(seed)
    sim.clear_log()
    return sim


def _legacy(tmp_path: Path, name: str, issuer: str | None) -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        HEAD
        + f"""identities:
  - name: legacy-mi
    roleAssignments:
      - role: Reader
        scope: {RG_SCOPE}
serviceConnections:
  - name: legacy-sc
    organization: contoso
    project: platform
    identity: legacy-mi
    subscriptionName: Sandbox
"""
        + (f"    issuer: {issuer}\n" if issuer else ""),
        encoding="utf-8",
    )
    return spec


def _convert(tmp_path: Path, organization: str, project: str) -> Path:
    spec = tmp_path / f"convert-{organization}.yaml"
    spec.write_text(
        HEAD
        + f"""identities:
  - name: spn-mi
    roleAssignments:
      - role: Reader
        scope: {RG_SCOPE}
serviceConnections:
  - name: spn-sc
    organization: {organization}
    project: {project}
    identity: spn-mi
    subscriptionName: Sandbox
""",
        encoding="utf-8",
    )
    return spec


def _pairs(portal: Portal, identity: str) -> set[tuple[str, str]]:
    ident = portal.identity("identities-rg", identity)
    return {
        (c["properties"]["issuer"], c["properties"]["subject"])
        for c in portal.credentials(ident["id"])
    }


def _reported(portal: Portal, org: str, project: str, endpoint_id: str) -> tuple[str, str]:
    (conn,) = [c for c in portal.connections(org, project) if c["id"] == endpoint_id]
    params = conn["authorization"]["parameters"]
    return params["workloadIdentityFederationIssuer"], params["workloadIdentityFederationSubject"]


def _apply_drifted(
    sim: Simulator, capsys: pytest.CaptureFixture[str], spec: Path, *extra: str
) -> tuple[SignInProbe, str]:
    """Apply ``spec`` through the CLI under ``subject-drift`` with the probe running."""
    sim.set_faults(None, latency_ms=LATENCY_MS, subject_drift=DRIFT)
    with SignInProbe.of(sim) as probe:
        wait_rounds(probe, 1)
        code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve", *extra)
    sim.set_faults(None, subject_drift=DRIFT)
    assert code == 0, out + err
    assert probe.rounds >= 5 and probe.counted >= 3, probe.summary()
    assert probe.failures == 0, probe.summary()
    return probe, out


def _assert_told(message: str, key: str, computed: tuple[str, str]) -> None:
    assert f"service connection {key}" in message
    assert f"subject {drifted(computed[1])}" in message, "the reported subject"
    assert f"subject {computed[1]} the plan computed" in message, "the computed subject"
    assert f"issuer {computed[0]}" in message


def _assert_empty_plan(sim: Simulator, capsys: pytest.CaptureFixture[str], spec: Path) -> None:
    code, out, err = run(capsys, "plan", str(spec), *target(sim), "--detailed-exitcode")
    assert code == 0, out + err


@pytest.mark.parametrize("output", ["text", "json"])
def test_a_migration_follows_the_subject_the_service_reports_and_says_so(
    world: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    output: str,
) -> None:
    kept = _legacy(tmp_path, "kept", "devops")
    code, out, err = run(capsys, "apply", str(kept), *target(world), "--auto-approve")
    assert code == 0, out + err
    computed = entra_federation(world.tenant_id, ORG_ID, LEGACY_ID)
    spec = _legacy(tmp_path, "entra", None)
    _, out = _apply_drifted(world, capsys, spec, "--format", output)
    key = "contoso/platform/legacy-sc"
    if output == "json":
        events = [json.loads(line) for line in out.splitlines()]
        (notice,) = [e for e in events if e["event"] == "notice"]
        assert notice["address"] == f"service_connection.{key}"
        _assert_told(notice["message"], key, computed)
        assert events[-1]["event"] == "summary" and events[-1]["converged"] is True
    else:
        (line,) = [ln for ln in out.splitlines() if "Azure DevOps reports issuer" in ln]
        _assert_told(line, key, computed)
    reported = _reported(portal, "contoso", "platform", LEGACY_ID)
    assert reported == (computed[0], drifted(computed[1]))
    # exactly the credential the service's pair needs: the legacy one and the computed one gone
    assert _pairs(portal, "legacy-mi") == {reported}
    assert world.sign_in("contoso", LEGACY_ID)["ok"]
    _assert_empty_plan(world, capsys, spec)


@pytest.mark.parametrize(
    ("org", "project", "endpoint_id", "org_id"),
    [
        ("contoso", "platform", SPN_ID, ORG_ID),
        ("fabrikam", "legacy-app", FABRIKAM_SPN_ID, FABRIKAM_ID),
    ],
    ids=["entra-default", "azure-devops-default"],
)
def test_a_conversion_follows_the_subject_the_service_reports_and_says_so(
    world: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    org: str,
    project: str,
    endpoint_id: str,
    org_id: str,
) -> None:
    computed = entra_federation(world.tenant_id, org_id, endpoint_id)
    spec = _convert(tmp_path, org, project)
    _, out = _apply_drifted(world, capsys, spec)
    key = f"{org}/{project}/spn-sc"
    (line,) = [ln for ln in out.splitlines() if "Azure DevOps reports issuer" in ln]
    _assert_told(line, key, computed)
    reported = _reported(portal, org, project, endpoint_id)
    assert reported == (computed[0], drifted(computed[1]))
    legacy = (devops_issuer(org_id), devops_subject(org, project, "spn-sc"))
    held = _pairs(portal, "spn-mi")
    assert held == {reported} and legacy not in held and computed not in held
    assert world.sign_in(org, endpoint_id)["ok"]
    _assert_empty_plan(world, capsys, spec)


def test_without_the_fault_nothing_is_said(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kept = _legacy(tmp_path, "kept", "devops")
    code, out, err = run(capsys, "apply", str(kept), *target(world), "--auto-approve")
    assert code == 0, out + err
    code, out, err = run(
        capsys,
        "apply",
        str(_legacy(tmp_path, "entra", None)),
        *target(world),
        "--auto-approve",
        "--format",
        "json",
    )
    assert code == 0, out + err
    assert not [e for e in map(json.loads, out.splitlines()) if e["event"] == "notice"]
    assert _pairs(portal, "legacy-mi") == {entra_federation(world.tenant_id, ORG_ID, LEGACY_ID)}


def _kept_then_drift(sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Path:
    kept = _legacy(tmp_path, "kept", "devops")
    code, out, err = run(capsys, "apply", str(kept), *target(sim), "--auto-approve")
    assert code == 0, out + err
    sim.set_faults(None, subject_drift=DRIFT)
    return _legacy(tmp_path, "entra", None)


def _assert_followed(sim: Simulator, portal: Portal) -> None:
    computed = entra_federation(sim.tenant_id, ORG_ID, LEGACY_ID)
    reported = _reported(portal, "contoso", "platform", LEGACY_ID)
    assert reported == (computed[0], drifted(computed[1]))
    assert _pairs(portal, "legacy-mi") == {reported}


def test_a_migration_under_drift_writes_in_this_order_with_sign_in_at_every_moment(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = _kept_then_drift(world, capsys, tmp_path)
    watch = Watch(world, [("contoso", LEGACY_ID)])
    _, result = apply_watched(world, spec, watch)
    assert result.ok, [o.error for o in result.outcomes]
    # computed credential; switch refused (202, showing the pair it waits for); that
    # credential rewritten for it; switch; legacy credential deleted (no connection update:
    # nothing else differs)
    assert watch.writes == [
        "put_credential",
        "convert_authentication_scheme",
        "put_credential",
        "convert_authentication_scheme",
        "delete_credential",
    ]
    assert watch.failures == []
    _assert_followed(world, portal)
    _assert_empty_plan(world, capsys, spec)


@pytest.mark.parametrize("stop_before", [0, 1, 2, 3, 4])
def test_a_migration_under_drift_stopped_before_any_write_resumes_without_a_gap(
    world: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    stop_before: int,
) -> None:
    spec = _kept_then_drift(world, capsys, tmp_path)
    stopped = Watch(world, [("contoso", LEGACY_ID)], stop_before=stop_before)
    _, result = apply_watched(world, spec, stopped)
    assert stopped.stopped and not result.ok
    again = Watch(world, [("contoso", LEGACY_ID)])
    _, result = apply_watched(world, spec, again)
    assert result.ok, [o.error for o in result.outcomes]
    assert stopped.failures == [] and again.failures == []
    _assert_followed(world, portal)
    _assert_empty_plan(world, capsys, spec)
