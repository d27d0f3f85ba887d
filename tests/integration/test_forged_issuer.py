"""A federated credential is a way into Azure: the tool writes one for the issuer and subject a
service connection reports, so it first checks that the pair is one Azure DevOps generates for
that connection (``federation.generated_pair_problem``). A connection reporting any other pair
(edited by hand, forged, or a service fault) fails the plan, naming it, and nothing is written;
the identity never trusts that issuer."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.sim.server import Simulator
from tests.sim.estates import LEGACY_ID, estate

from .conftest import SANDBOX, Portal, run, target, writes

GITHUB = "https://token.actions.githubusercontent.com"
ATTACKER = "repo:attacker/payload:ref:refs/heads/main"


def _spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""version: 1
owner: platform-team
defaults:
  subscription: {SANDBOX}
  resourceGroup: identities-rg
  location: westeurope
identities:
  - name: legacy-mi
    roleAssignments:
      - role: Reader
        resourceGroup: sandbox-rg
serviceConnections:
  - name: legacy-sc
    organization: contoso
    project: platform
    identity: legacy-mi
    subscriptionName: Sandbox
    issuer: devops
""",
        encoding="utf-8",
    )
    return spec


@pytest.mark.parametrize(
    ("issuer", "subject"),
    [
        (GITHUB, ATTACKER),
        # the right issuer format, but another organisation's
        ("https://vstoken.dev.azure.com/00000000-0000-0000-0000-00000000beef", "sc://x/y/z"),
    ],
)
def test_a_connection_reporting_a_pair_azure_devops_does_not_generate_fails_the_plan(
    sim: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    issuer: str,
    subject: str,
) -> None:
    seed = estate(sim.tenant_id)
    # the hand-made credential is gone, so the plan would write the connection's credential
    legacy_mi = next(i for i in seed["identities"] if i["name"] == "legacy-mi")
    legacy_mi["federatedCredentials"] = []
    endpoint = next(
        e for e in seed["devops"]["organizations"][0]["serviceEndpoints"] if e["id"] == LEGACY_ID
    )
    endpoint["parameters"].update(
        workloadIdentityFederationIssuer=issuer,
        workloadIdentityFederationSubject=subject,
        workloadIdentityFederationIssuerType="AzureDevOps",
    )
    sim.reset(seed)
    sim.clear_log()
    spec = _spec(tmp_path)

    code, out, err = run(capsys, "plan", str(spec), *target(sim))
    assert code == 1, out + err
    assert "contoso/platform/legacy-sc" in err and issuer in err, err
    assert "not made to trust" in err and f"{spec}:" in err

    code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve")
    assert code == 1, out + err
    assert writes(sim) == []
    creds = portal.credentials(portal.identity("identities-rg", "legacy-mi")["id"])
    assert [c for c in creds if c["properties"]["issuer"] == issuer] == []


def test_the_pairs_azure_devops_generates_pass(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # the control: the same estate with the pair the service generated plans and applies
    seed = estate(sim.tenant_id)
    legacy_mi = next(i for i in seed["identities"] if i["name"] == "legacy-mi")
    legacy_mi["federatedCredentials"] = []
    sim.reset(seed)
    spec = _spec(tmp_path)
    code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve")
    assert code == 0, out + err
    code, out, err = run(capsys, "plan", str(spec), *target(sim), "--detailed-exitcode")
    assert code == 0, out + err
