"""No sign-in gap (issue 11 §5), end to end over HTTPS against the simulator: while an apply
runs through the CLI, the sign-in probe (``probe.py``) asks the simulator every 25 ms whether
each service connection it holds can sign in, and counts the failures. Each change that
touches what a pipeline signs in with (issuer migration, secret conversion, an in-place
federated credential update, a role assignment's scope change, a connection update, an
adoption) must leave 0 failed sign-ins, over enough rounds that the test cannot pass without
the probe looking; one test deletes a credential during the apply to show the probe counts a
real gap. The simulator answers every request 30 ms late so an apply spans many rounds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from reconciler.sim.probe import SignInProbe, wait_rounds
from reconciler.sim.server import Simulator
from tests.sim.estates import LEGACY_ID, SPN_ID, estate

from .conftest import SANDBOX, Portal, run, target

RG_SCOPE = f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg"
OTHER_SCOPE = f"/subscriptions/{SANDBOX}/resourceGroups/identities-rg"
LATENCY_MS = 30
MIN_ROUNDS = 5

HEAD = f"""version: 1
owner: platform-team
defaults:
  subscription: {SANDBOX}
  resourceGroup: identities-rg
  location: westeurope
"""


@pytest.fixture
def world(sim: Simulator) -> Simulator:
    """The brownfield estate (``tests/sim/estates.py``), legacy-mi holding a role so its
    legacy-issuer connection signs in."""
    seed = estate(sim.tenant_id)
    seed["roleAssignments"].append(
        {"identity": f"{SANDBOX}/identities-rg/legacy-mi", "scope": RG_SCOPE, "role": "Reader"}
    )
    sim.reset(seed)
    sim.clear_log()
    return sim


def _write(tmp_path: Path, name: str, text: str) -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(HEAD + text, encoding="utf-8")
    return spec


def _legacy(tmp_path: Path, issuer: str | None, name: str) -> Path:
    return _write(
        tmp_path,
        name,
        f"""identities:
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
    )


def _app(
    tmp_path: Path,
    name: str,
    *,
    subject: str = "repo:contoso/app:ref:refs/heads/main",
    scope: str = RG_SCOPE,
    description: str = "App deployments",
) -> Path:
    """A managed identity with one extra credential and one role, and its connection."""
    return _write(
        tmp_path,
        name,
        f"""identities:
  - name: app-mi
    federatedCredentials:
      - name: github
        issuer: https://token.actions.githubusercontent.com
        subject: {subject}
    roleAssignments:
      - role: Reader
        scope: {scope}
serviceConnections:
  - name: app-sc
    organization: contoso
    project: platform
    identity: app-mi
    subscriptionName: Sandbox
    description: {description}
""",
    )


def _apply(sim: Simulator, capsys: pytest.CaptureFixture[str], spec: Path) -> None:
    code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve")
    assert code == 0, out + err


def _probed(sim: Simulator, capsys: pytest.CaptureFixture[str], spec: Path) -> SignInProbe:
    """Apply ``spec`` through the CLI with the probe running; the probe after it stopped."""
    sim.set_faults(None, latency_ms=LATENCY_MS)
    with SignInProbe.of(sim) as probe:
        wait_rounds(probe, 1)
        _apply(sim, capsys, spec)
    sim.set_faults(None)
    return probe


def _assert_no_gap(probe: SignInProbe, at_least: int = 1) -> None:
    assert probe.rounds >= MIN_ROUNDS, probe.summary()
    assert probe.counted >= at_least, probe.summary()
    assert probe.failures == 0, probe.summary()
    # the last round, after the apply: every connection counted still signs in
    assert probe.held_at_end >= probe.counted, probe.summary()
    assert probe.signing_in_at_end >= probe.counted, probe.summary()


def _managed_app(sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> str:
    """Create app-mi and app-sc with the tool; returns the connection's id."""
    _apply(sim, capsys, _app(tmp_path, "app"))
    (conn,) = [c for c in Portal(sim).connections("contoso", "platform") if c["name"] == "app-sc"]
    assert sim.sign_in("contoso", conn["id"])["ok"]
    return str(conn["id"])


def test_no_gap_during_an_issuer_migration(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _apply(world, capsys, _legacy(tmp_path, "devops", "kept"))
    probe = _probed(world, capsys, _legacy(tmp_path, None, "entra"))
    _assert_no_gap(probe, at_least=3)
    (conn,) = [c for c in portal.connections("contoso", "platform") if c["id"] == LEGACY_ID]
    assert conn["authorization"]["parameters"]["workloadIdentityFederationIssuerType"] == "EntraID"


def test_no_gap_during_a_secret_conversion(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = _write(
        tmp_path,
        "convert",
        f"""identities:
  - name: spn-mi
    roleAssignments:
      - role: Reader
        scope: {RG_SCOPE}
serviceConnections:
  - name: spn-sc
    organization: contoso
    project: platform
    identity: spn-mi
    subscriptionName: Sandbox
    sharedWith: [team-a]
""",
    )
    probe = _probed(world, capsys, spec)
    _assert_no_gap(probe, at_least=3)
    (conn,) = [c for c in portal.connections("contoso", "platform") if c["id"] == SPN_ID]
    assert conn["authorization"]["scheme"] == "WorkloadIdentityFederation"


def test_no_gap_during_an_in_place_credential_update(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _managed_app(world, capsys, tmp_path)
    ident = portal.identity("identities-rg", "app-mi")
    before = {c["name"]: c["id"] for c in portal.credentials(ident["id"])}
    probe = _probed(
        world, capsys, _app(tmp_path, "v2", subject="repo:contoso/app:environment:prod")
    )
    _assert_no_gap(probe, at_least=4)
    after = {c["name"]: c for c in portal.credentials(ident["id"])}
    assert after["github"]["properties"]["subject"] == "repo:contoso/app:environment:prod"
    assert {n: c["id"] for n, c in after.items()} == before, "updated in place, not replaced"


def test_no_gap_during_a_role_assignment_scope_change(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _managed_app(world, capsys, tmp_path)
    probe = _probed(world, capsys, _app(tmp_path, "moved", scope=OTHER_SCOPE))
    _assert_no_gap(probe, at_least=4)
    ident = portal.identity("identities-rg", "app-mi")
    scopes = {
        a["properties"]["scope"].lower()
        for a in portal.assignments()
        if a["properties"]["principalId"] == ident["properties"]["principalId"]
    }
    assert scopes == {OTHER_SCOPE.lower()}, "app-mi's only role moved to the new scope"


def test_no_gap_during_a_connection_update(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    endpoint_id = _managed_app(world, capsys, tmp_path)
    probe = _probed(world, capsys, _app(tmp_path, "described", description="Prod deployments"))
    _assert_no_gap(probe, at_least=4)
    (conn,) = [c for c in portal.connections("contoso", "platform") if c["id"] == endpoint_id]
    assert conn["description"].startswith("Prod deployments")


def test_no_gap_during_an_adoption(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    probe = _probed(world, capsys, _legacy(tmp_path, "devops", "adopt"))
    _assert_no_gap(probe, at_least=3)
    (conn,) = [c for c in portal.connections("contoso", "platform") if c["id"] == LEGACY_ID]
    assert "[reconciler-owner: platform-team]" in conn["description"]


def test_the_probe_counts_a_credential_deleted_during_an_apply(
    world: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """legacy-sc is outside the spec applied, so nothing puts its credential back."""
    deleted = threading.Event()

    def delete_when_running() -> None:
        wait_rounds(probe, 2)
        r = requests.post(
            f"{world.arm_url}/_sim/edit",
            json={
                "kind": "federated_credential",
                "id": f"/subscriptions/{SANDBOX}/resourceGroups/identities-rg/providers/"
                "Microsoft.ManagedIdentity/userAssignedIdentities/legacy-mi/"
                "federatedIdentityCredentials/legacy",
                "delete": True,
            },
            verify=world.connection["ca_bundle"],
            timeout=10,
        )
        r.raise_for_status()
        deleted.set()

    world.set_faults(None, latency_ms=LATENCY_MS)
    with SignInProbe.of(world) as probe:
        deleter = threading.Thread(target=delete_when_running)
        deleter.start()
        _apply(world, capsys, _app(tmp_path, "app"))
        deleter.join()
    world.set_faults(None)
    assert deleted.is_set()
    assert probe.rounds >= MIN_ROUNDS, probe.summary()
    assert probe.failures > 0, probe.summary()
    assert all(f"/{LEGACY_ID}: AADSTS70021" in r for r in probe.reasons), probe.summary()
    # and the last round says so too: one connection held at the end cannot sign in
    assert probe.signing_in_at_end == probe.held_at_end - 1, probe.summary()


PROPAGATION_MS = 400


def _moved(tmp_path: Path) -> Path:
    """app-sc signing in as a second identity, other-mi; app-mi (kept) loses its credential."""
    return _write(
        tmp_path,
        "moved-identity",
        f"""identities:
  - name: app-mi
    federatedCredentials:
      - name: github
        issuer: https://token.actions.githubusercontent.com
        subject: repo:contoso/app:ref:refs/heads/main
    roleAssignments:
      - role: Reader
        scope: {RG_SCOPE}
  - name: other-mi
    roleAssignments:
      - role: Reader
        scope: {RG_SCOPE}
serviceConnections:
  - name: app-sc
    organization: contoso
    project: platform
    identity: other-mi
    subscriptionName: Sandbox
    description: App deployments
""",
    )


def _probed_slow(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    spec: Path,
    propagation: str,
    before: Callable[[], None] | None = None,
) -> tuple[SignInProbe, str]:
    """Apply with a new credential honoured only PROPAGATION_MS after it is written (Entra's
    propagation), the probe running; returns the probe and the apply's output."""
    sim.set_faults(None, latency_ms=LATENCY_MS, fic_propagation_ms=PROPAGATION_MS)
    time.sleep(PROPAGATION_MS / 1000 + 0.1)  # what the earlier applies wrote is honoured now
    if before is not None:
        before()
    with SignInProbe.of(sim, interval=0.01) as probe:
        wait_rounds(probe, 1)
        code, out, err = run(
            capsys,
            "apply",
            str(spec),
            *target(sim),
            "--auto-approve",
            "--allow-destroy",
            "--credential-propagation",
            propagation,
        )
    sim.set_faults(None)
    assert code == 0, out + err
    return probe, out + err


@pytest.mark.parametrize("wait", ["1", "0"])
def test_moving_a_connection_to_another_identity_waits_for_its_new_credential(
    world: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    wait: str,
) -> None:
    endpoint_id = _managed_app(world, capsys, tmp_path)
    probe, out = _probed_slow(world, capsys, _moved(tmp_path), wait)
    (conn,) = [c for c in portal.connections("contoso", "platform") if c["id"] == endpoint_id]
    other = portal.identity("identities-rg", "other-mi")
    assert (
        conn["authorization"]["parameters"]["serviceprincipalid"] == other["properties"]["clientId"]
    )
    app = portal.identity("identities-rg", "app-mi")
    assert [c["name"] for c in portal.credentials(app["id"])] == ["github"], "old one deleted"
    if wait == "0":
        # the control: switching as soon as the credential is written leaves a gap, which is
        # what the wait is for
        assert probe.failures > 0, probe.summary()
        return
    _assert_no_gap(probe, at_least=4)
    assert "propagat" in out


@pytest.mark.parametrize("wait", ["1", "0"])
def test_a_conversion_waits_for_the_identitys_new_credential(
    world: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    wait: str,
) -> None:
    spec = _write(
        tmp_path,
        "convert-slow",
        f"""identities:
  - name: spn-mi
    roleAssignments:
      - role: Reader
        scope: {RG_SCOPE}
serviceConnections:
  - name: spn-sc
    organization: contoso
    project: platform
    identity: spn-mi
    subscriptionName: Sandbox
    sharedWith: [team-a]
""",
    )
    probe, _ = _probed_slow(world, capsys, spec, wait)
    (conn,) = [c for c in portal.connections("contoso", "platform") if c["id"] == SPN_ID]
    assert conn["authorization"]["scheme"] == "WorkloadIdentityFederation"
    if wait == "0":
        assert probe.failures > 0, probe.summary()
        return
    _assert_no_gap(probe, at_least=3)


def test_a_legacy_connection_moved_to_another_identity_and_migrated_at_once_has_no_gap(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # the attacker's case: one edit moves legacy-sc to target-mi and to the Entra issuer; the
    # credential legacy-mi holds for it goes only after the connection names target-mi
    _apply(world, capsys, _legacy(tmp_path, "devops", "kept"))
    spec = _write(
        tmp_path,
        "moved-migrated",
        f"""identities:
  - name: legacy-mi
    roleAssignments:
      - role: Reader
        scope: {RG_SCOPE}
  - name: target-mi
    roleAssignments:
      - role: Reader
        scope: {RG_SCOPE}
serviceConnections:
  - name: legacy-sc
    organization: contoso
    project: platform
    identity: target-mi
    subscriptionName: Sandbox
""",
    )
    probe, _ = _probed_slow(world, capsys, spec, "1")
    _assert_no_gap(probe, at_least=3)
    (conn,) = [c for c in portal.connections("contoso", "platform") if c["id"] == LEGACY_ID]
    params = conn["authorization"]["parameters"]
    target_mi = portal.identity("identities-rg", "target-mi")
    assert params["serviceprincipalid"] == target_mi["properties"]["clientId"]
    assert params["workloadIdentityFederationIssuerType"] == "EntraID"
    legacy_mi = portal.identity("identities-rg", "legacy-mi")
    assert portal.credentials(legacy_mi["id"]) == [], "the old identity's credential is gone"
    held = {
        (c["properties"]["issuer"], c["properties"]["subject"])
        for c in portal.credentials(target_mi["id"])
    }
    assert held == {
        (params["workloadIdentityFederationIssuer"], params["workloadIdentityFederationSubject"])
    }


def test_a_credential_written_moments_before_by_an_interrupted_run_is_waited_for(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # an apply interrupted during the wait left other-mi holding app-sc's credential, written
    # a moment ago; the rerun finds it held, must not write it again, and must still wait
    endpoint_id = _managed_app(world, capsys, tmp_path)
    staged = (
        _moved(tmp_path)
        .read_text(encoding="utf-8")
        .replace("    identity: other-mi\n", "    identity: app-mi\n")
    )
    _apply(world, capsys, _write(tmp_path, "other-first", staged.removeprefix(HEAD)))
    other = portal.identity("identities-rg", "other-mi")
    pair = world.sign_in("contoso", endpoint_id)

    def interrupted_run_wrote_it() -> None:
        portal.put_credential(
            other["id"], "ado-contoso-platform-app-sc", pair["issuer"], pair["subject"]
        )
        world.clear_log()

    probe, out = _probed_slow(world, capsys, _moved(tmp_path), "1", interrupted_run_wrote_it)
    _assert_no_gap(probe, at_least=4)
    assert "propagat" in out
    rewrites = [
        r
        for r in world.request_log(op="FederatedIdentityCredentials_CreateOrUpdate")
        if "/other-mi/" in r["path"]
    ]
    assert rewrites == [], "a credential it holds is not written again"
