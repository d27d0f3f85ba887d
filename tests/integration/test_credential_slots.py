"""The 20-credential limit at its edge for every in-place operation that adds more than one
credential to an identity before it deletes one (issue 11 §2, §3), end to end over HTTPS
against the simulator:

- a secret-based connection converted in an organisation whose default issuer is still the
  Azure DevOps one (fabrikam, ``issuerFormat: vstoken``): the conversion lands on that issuer,
  the identity gets its credential, then the migration adds the Entra issuer's before it
  deletes the legacy one: two extra slots at once;
- a connection on the Azure DevOps issuer that migrates and moves to another identity: that
  identity gets the legacy pair first (the connection must sign in at every moment), then the
  Entra one: two again.

With 18 live credentials both fit (20 at the busiest moment); with 19 the plan fails naming the
identity, unless the specs drop a credential, whose delete then runs first. Never a failed
write at apply, never a failed sign-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.federation import devops_issuer, devops_subject, entra_federation
from reconciler.sim.server import Simulator
from tests.sim.estates import APP, DATA, LEGACY_ID, SECRET, estate
from tests.sim.estates import ORG_ID as CONTOSO_ID

from .conftest import SANDBOX, Portal, run, target, writes
from .stepping import Watch, apply_watched

FABRIKAM_ID = "5d3e2c1b-7a9f-4e6d-8c0b-1a2b3c4d5e6f"  # its default issuer is Azure DevOps'
CONVERTED_ID = "bbbbbbbb-0000-4000-8000-000000000001"
RG_SCOPE = f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg"
CONVERTED = "fabrikam/legacy-app/spn-sc"
MIGRATED = "contoso/platform/legacy-sc"


def _spec(
    tmp_path: Path, name: str, identity: str, credentials: int, connection: str | None
) -> Path:
    """``identity`` with ``credentials`` GitHub credentials of its own and a Reader role, and
    (``converted`` or ``migrated``) the connection that signs in as it."""
    extra = "".join(
        f"      - name: github-{n}\n"
        f"        issuer: https://token.actions.githubusercontent.com\n"
        f"        subject: repo:contoso/app-{n}:ref:refs/heads/main\n"
        for n in range(credentials)
    )
    text = f"""version: 1
owner: platform-team
defaults:
  subscription: {SANDBOX}
  resourceGroup: identities-rg
  location: westeurope
identities:
  - name: {identity}
    roleAssignments:
      - role: Reader
        scope: {RG_SCOPE}
""" + (f"    federatedCredentials:\n{extra}" if extra else "")
    if connection == "converted":
        text += f"""serviceConnections:
  - name: spn-sc
    organization: fabrikam
    project: legacy-app
    identity: {identity}
    subscriptionName: Sandbox
"""
    elif connection == "migrated":
        text += f"""serviceConnections:
  - name: legacy-sc
    organization: contoso
    project: platform
    identity: {identity}
    subscriptionName: Sandbox
"""
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(text, encoding="utf-8")
    return spec


@pytest.fixture
def world(sim: Simulator) -> Simulator:
    """The conversion estate, plus a secret-based spn-sc in fabrikam (Azure DevOps issuer by
    default) and legacy-mi holding a role."""
    seed = estate(sim.tenant_id)
    seed["roleAssignments"].append(
        {"identity": f"{SANDBOX}/identities-rg/legacy-mi", "scope": RG_SCOPE, "role": "Reader"}
    )
    fabrikam = seed["devops"]["organizations"][1]
    assert fabrikam["issuerFormat"] == "vstoken"
    fabrikam["serviceEndpoints"] = [
        {
            "id": CONVERTED_ID,
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


def _credentials(portal: Portal, identity: str) -> list[tuple[str, str]]:
    ident = portal.identity("identities-rg", identity)
    return [
        (c["properties"]["issuer"], c["properties"]["subject"])
        for c in portal.credentials(ident["id"])
    ]


def _prepare(
    sim: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    identity: str,
    held: int,
) -> None:
    """Take ``identity`` over with ``held`` credentials of its own (the connection not yet)."""
    spec = _spec(tmp_path, "before", identity, held, None)
    code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve")
    assert code == 0, out + err
    assert len(_credentials(portal, identity)) == held


CASES = {
    # (identity, connection, organisation, connection id)
    "conversion": ("spn-mi", "converted", "fabrikam", CONVERTED_ID),
    "migration-to-another-identity": ("target-mi", "migrated", "contoso", LEGACY_ID),
}


def _final_pair(sim: Simulator, case: str) -> tuple[str, str]:
    if case == "conversion":
        return entra_federation(sim.tenant_id, FABRIKAM_ID, CONVERTED_ID)
    return entra_federation(sim.tenant_id, CONTOSO_ID, LEGACY_ID)


@pytest.mark.parametrize("case", sorted(CASES))
def test_eighteen_credentials_leave_room_for_both_slots(
    world: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    case: str,
) -> None:
    identity, connection, org, endpoint_id = CASES[case]
    _prepare(world, portal, capsys, tmp_path, identity, 18)
    spec = _spec(tmp_path, "after", identity, 18, connection)
    code, out, err = run(capsys, "plan", str(spec), *target(world))
    assert code == 0, out + err
    watch = Watch(world, [(org, endpoint_id)])
    _, result = apply_watched(world, spec, watch)
    assert result.ok, [o.error for o in result.outcomes]
    assert watch.failures == []
    # two credentials added before the legacy one goes: 20 at the busiest moment
    first = watch.writes.index("put_credential")
    assert watch.writes[first:].count("put_credential") == 2
    assert watch.writes[-1] == "delete_credential"
    held = _credentials(portal, identity)
    assert len(held) == 19 and _final_pair(world, case) in held
    assert world.sign_in(org, endpoint_id)["ok"]
    code, out, err = run(capsys, "plan", str(spec), *target(world), "--detailed-exitcode")
    assert code == 0, out + err


@pytest.mark.parametrize("case", sorted(CASES))
def test_nineteen_credentials_fail_the_plan_naming_the_identity(
    world: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    case: str,
) -> None:
    identity, connection, org, endpoint_id = CASES[case]
    _prepare(world, portal, capsys, tmp_path, identity, 19)
    before = sorted(_credentials(portal, identity))
    spec = _spec(tmp_path, "after", identity, 19, connection)
    key = CONVERTED if case == "conversion" else MIGRATED
    code, out, err = run(capsys, "plan", str(spec), *target(world))
    assert code == 1, out + err
    assert f"identity {identity} has no free federated credential slot for {key}" in err
    assert "would hold 21 federated credentials" in err
    world.clear_log()
    code, out, err = run(capsys, "apply", str(spec), *target(world), "--auto-approve")
    assert code == 1, out + err
    assert f"identity {identity} has no free federated credential slot" in err
    # nothing written: the connection is as it was and still signs in
    assert writes(world) == []
    assert sorted(_credentials(portal, identity)) == before
    assert world.sign_in(org, endpoint_id)["ok"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_nineteen_credentials_and_one_dropped_delete_it_first(
    world: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    case: str,
) -> None:
    identity, connection, org, endpoint_id = CASES[case]
    _prepare(world, portal, capsys, tmp_path, identity, 19)
    spec = _spec(tmp_path, "after", identity, 18, connection)
    code, out, err = run(capsys, "plan", str(spec), *target(world), "--format", "json")
    assert code == 0, err
    changes = {c["address"]: c for c in json.loads(out)["changes"]}
    (dropped,) = [a for a, c in changes.items() if c["action"] == "delete"]
    key = CONVERTED if case == "conversion" else MIGRATED
    assert dropped in changes[f"service_connection.{key}"]["depends_on"]
    watch = Watch(world, [(org, endpoint_id)])
    _, result = apply_watched(world, spec, watch)
    assert result.ok, [o.error for o in result.outcomes]
    assert watch.failures == []
    assert watch.writes.index("delete_credential") < watch.writes.index("put_credential")
    held = _credentials(portal, identity)
    assert len(held) == 19 and _final_pair(world, case) in held
    legacy = (devops_issuer(CONTOSO_ID), devops_subject("contoso", "platform", "legacy-sc"))
    assert legacy not in held
    code, out, err = run(capsys, "plan", str(spec), *target(world), "--detailed-exitcode")
    assert code == 0, out + err
