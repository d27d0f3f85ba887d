"""``make demo`` end to end, in process, against the simulator (issue 11, "Checks": the demo's
brownfield act): both acts run through the real CLI, and act 2's outcome is asserted through
the simulator's own API: the two hand-made connections kept their ids and pipeline
permissions, are on the Entra issuer with workload identity federation, hold no secret, their
identities have no legacy credential left, the probe counted sign-ins and none failed, and the
secret staged for the demo was never printed nor written."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import demo
from reconciler.sim.probe import SignInProbe
from reconciler.sim.seed import entra_issuer, entra_subject
from reconciler.sim.server import Simulator

from .conftest import Portal

REPO = Path(__file__).resolve().parents[2]
ORG_ID = "0c7a5f0e-8d8b-4f7e-9a53-2f0b1f6c9d21"  # contoso in the default seed
STAGED_SECRET = "demo-staged-secret-4b7e9c1d"


def test_demo_takes_over_the_estate_with_no_sign_in_gap(
    sim: Simulator,
    portal: Portal,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)  # the demo names specs/ relative to the clone, as `make demo` runs
    workdir = tmp_path / "demo"
    workdir.mkdir()

    outcome = demo.play(sim, workdir, secret=STAGED_SECRET)

    out, err = capsys.readouterr()
    tenant = sim.tenant_id
    # the probe counted every connection (act 1's and the two of act 2) and none failed
    assert outcome.failures == 0, outcome.probe_line
    assert outcome.checks >= 3, outcome.probe_line
    assert outcome.probe_line in out
    assert "0 failed" in outcome.probe_line

    # live state through the simulator's API: same ids, Entra issuer, scheme WIF
    endpoints = {e["name"]: e for e in portal.connections("contoso", "team-a")}
    deploy, ci = endpoints[demo.LEGACY_CONNECTION], endpoints[demo.SECRET_CONNECTION]
    assert deploy["id"] == demo.LEGACY_CONNECTION_ID
    assert ci["id"] == demo.SECRET_CONNECTION_ID
    for endpoint in (deploy, ci):
        auth = endpoint["authorization"]
        assert auth["scheme"] == "WorkloadIdentityFederation", endpoint
        assert auth["parameters"]["workloadIdentityFederationIssuer"] == entra_issuer(tenant)
        assert auth["parameters"]["workloadIdentityFederationSubject"] == entra_subject(
            tenant, ORG_ID, endpoint["id"]
        )
        assert endpoint["description"].endswith("[reconciler-owner: team-a]")
    # the converted connection signs in as the identity the engineer declared
    ci_identity = portal.identity(demo.RESOURCE_GROUP, demo.NEW_IDENTITY)
    assert (
        ci["authorization"]["parameters"]["serviceprincipalid"]
        == (ci_identity["properties"]["clientId"])
    )
    # no secret on either connection (the API never returns one: read the simulator's state)
    held = next(o for o in sim.state()["devops"]["organizations"] if o["name"] == "contoso")
    for endpoint in held["serviceEndpoints"]:
        if endpoint["id"] in (demo.LEGACY_CONNECTION_ID, demo.SECRET_CONNECTION_ID):
            assert not any(
                "key" in k.lower() or "secret" in k.lower() for k in endpoint["parameters"]
            ), endpoint["name"]
    # each identity holds exactly the Entra credential of its connection, no legacy one
    for identity, endpoint in (
        (portal.identity(demo.RESOURCE_GROUP, demo.LEGACY_IDENTITY), deploy),
        (ci_identity, ci),
    ):
        creds = portal.credentials(identity["id"])
        assert [(c["properties"]["issuer"], c["properties"]["subject"]) for c in creds] == [
            (entra_issuer(tenant), entra_subject(tenant, ORG_ID, endpoint["id"]))
        ], identity["name"]
    # pipeline permissions kept through adoption, migration and conversion
    for endpoint, pipeline in ((deploy, 3), (ci, 4)):
        permissions = portal.permissions("contoso", "team-a", endpoint["id"])
        assert [p["id"] for p in permissions["pipelines"]] == [pipeline], endpoint["name"]
    # act 1's connection is still there, next to act 2's
    assert [e["name"] for e in portal.connections("contoso", "platform")] == ["ado-pipeline-mi"]

    # the demo's own account of it, before and after
    assert outcome.before[demo.SECRET_CONNECTION].secret_set
    assert (
        outcome.before[demo.LEGACY_CONNECTION].issuer == f"https://vstoken.dev.azure.com/{ORG_ID}"
    )
    assert not outcome.after[demo.SECRET_CONNECTION].secret_set
    assert "issuer: devops" in out  # the export kept the legacy issuer, shown on screen
    assert "-    issuer: devops" in out  # and the engineer's diff removes it
    assert "migrate issuer in place" in out
    assert "convert to workload identity federation in place" in out

    # the staged secret is never printed nor written
    assert STAGED_SECRET not in out + err
    for path in workdir.rglob("*"):
        if path.is_file():
            assert STAGED_SECRET not in path.read_text(encoding="utf-8"), path
    assert "Traceback" not in out + err


def _probe(checks: int, failures: int, reasons: list[str]) -> SignInProbe:
    probe = SignInProbe(read=list)
    probe.checks, probe.failures, probe.reasons = checks, failures, reasons
    return probe


def test_the_demo_fails_naming_the_probes_failures() -> None:
    reason = "round 3: contoso/2b9e: AADSTS70021: No matching federated identity record found"
    with pytest.raises(SystemExit, match="1 failed: round 3: contoso/2b9e: AADSTS70021"):
        demo.check_probe(_probe(12, 1, [reason]))
    with pytest.raises(SystemExit, match="the probe checked nothing"):
        demo.check_probe(_probe(0, 0, []))
    assert demo.check_probe(_probe(12, 0, [])).endswith(
        "12 sign-ins of 0 connections during the apply, 0 failed"
    )
