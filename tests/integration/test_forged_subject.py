"""The pair a connection reports must name that connection, not only have the right form
(``federation.generated_pair_problem``): on the Azure DevOps issuer the subject is
``sc://{organization}/{owning project}/{connection name}``; on the Microsoft Entra issuer its
``/t/{tenant}/`` segment is the tenant's and it ends in ``/sc/{organization id}/{connection
id}``. A connection reporting another connection's subject, or another tenant's, fails the plan
naming it, apply writes nothing, and export does not adopt it (a comment says why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.federation import devops_issuer, entra_issuer, entra_subject, guid_segment
from reconciler.sim.server import Simulator
from tests.sim.estates import LEGACY_ID, ORG_ID, SANDBOX, estate

from .conftest import Portal, run, target, writes
from .test_forged_issuer import _spec

OTHER_TENANT = "0badbad0-0000-4000-8000-00000000beef"


def _seed(sim: Simulator, issuer: str, subject: str) -> dict[str, Any]:
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
        workloadIdentityFederationIssuerType=(
            "AzureDevOps" if issuer.startswith("https://vstoken.") else "EntraID"
        ),
    )
    sim.reset(seed)
    sim.clear_log()
    return seed


def _entra(tenant: str, middle_tenant: str) -> tuple[str, str]:
    """The Entra pair of legacy-sc, its subject's tenant segment that of ``middle_tenant``."""
    subject = entra_subject(tenant, ORG_ID, LEGACY_ID).replace(
        f"/t/{guid_segment(tenant)}/", f"/t/{guid_segment(middle_tenant)}/"
    )
    return entra_issuer(tenant), subject


FORGED = [
    # the right organisation's issuer, the subject of a connection in another project
    pytest.param("devops", "sc://contoso/team-a/victim", id="another-project"),
    # ... of another connection of the same project, or of another organisation
    pytest.param("devops", "sc://contoso/platform/other-sc", id="another-connection"),
    pytest.param("devops", "sc://fabrikam/platform/legacy-sc", id="another-organisation"),
    pytest.param("devops", "sc://contoso/platform/legacy-sc/x", id="longer"),
    # the tenant's Entra issuer and this connection's /sc/ tail, another tenant's segment
    pytest.param("entra", OTHER_TENANT, id="entra-another-tenant"),
]


@pytest.mark.parametrize(("issuer", "subject"), FORGED)
def test_a_subject_naming_another_connection_or_tenant_fails_the_plan(
    sim: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    issuer: str,
    subject: str,
) -> None:
    if issuer == "devops":
        issuer = devops_issuer(ORG_ID)
    else:
        issuer, subject = _entra(sim.tenant_id, subject)
    _seed(sim, issuer, subject)
    spec = _spec(tmp_path)

    code, out, err = run(capsys, "plan", str(spec), *target(sim))
    assert code == 1, out + err
    assert "contoso/platform/legacy-sc" in err and subject in err, err
    assert "does not name this connection" in err and "not made to trust" in err, err
    assert f"{spec}:" in err

    code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve")
    assert code == 1, out + err
    assert writes(sim) == []
    creds = portal.credentials(portal.identity("identities-rg", "legacy-mi")["id"])
    assert [c for c in creds if c["properties"]["subject"] == subject] == []


@pytest.mark.parametrize(
    "subject",
    [
        "sc://contoso/platform/legacy-sc",
        # Azure DevOps' names are case-insensitive
        "sc://Contoso/PLATFORM/Legacy-SC",
    ],
)
def test_the_subject_azure_devops_generates_plans_and_applies(
    sim: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    subject: str,
) -> None:
    _seed(sim, devops_issuer(ORG_ID), subject)
    spec = _spec(tmp_path)
    code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve")
    assert code == 0, out + err
    creds = portal.credentials(portal.identity("identities-rg", "legacy-mi")["id"])
    assert [c["properties"]["subject"] for c in creds] == [subject]


def test_the_entra_subject_of_the_tenant_plans_and_applies(
    sim: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    issuer, subject = _entra(sim.tenant_id, sim.tenant_id)
    _seed(sim, issuer, subject)
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text().replace("    issuer: devops\n", ""))
    code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve")
    assert code == 0, out + err
    creds = portal.credentials(portal.identity("identities-rg", "legacy-mi")["id"])
    assert [(c["properties"]["issuer"], c["properties"]["subject"]) for c in creds] == [
        (issuer, subject)
    ]


@pytest.mark.parametrize(
    ("issuer", "subject"),
    [
        pytest.param("devops", "sc://contoso/team-a/victim", id="another-project"),
        pytest.param("entra", OTHER_TENANT, id="entra-another-tenant"),
    ],
)
def test_export_does_not_adopt_a_connection_reporting_a_forged_pair(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, issuer: str, subject: str
) -> None:
    if issuer == "devops":
        issuer = devops_issuer(ORG_ID)
    else:
        issuer, subject = _entra(sim.tenant_id, subject)
    _seed(sim, issuer, subject)
    out = tmp_path / "exported"
    argv = ["--subscription", SANDBOX, "--organization", "contoso", "--owner", "platform-team"]
    code, stdout, err = run(capsys, "export", *argv, "--out", str(out), *target(sim))
    assert code == 0, err
    text = "\n".join(p.read_text() for p in sorted(out.iterdir()))
    prose = " ".join(line.lstrip("#").strip() for line in text.splitlines())
    declared = [
        c["name"]
        for p in sorted(out.iterdir())
        for c in (yaml.safe_load(p.read_text()) or {}).get("serviceConnections") or []
    ]
    assert "legacy-sc" not in declared, declared
    assert f"service connection contoso/platform/legacy-sc (id {LEGACY_ID})" in prose, prose
    assert "does not name this connection" in prose, prose
    assert subject in "".join(prose.split()), prose  # long values are wrapped
    # the exported specs adopt nothing that trusts the forged pair
    code, stdout, err = run(capsys, "plan", str(out), *target(sim))
    assert code in (0, 2), stdout + err
    assert subject not in stdout, stdout
