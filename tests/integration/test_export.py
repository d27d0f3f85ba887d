"""``reconciler export`` end to end over HTTPS against the simulator (issue 11 section 1).

A hand-made estate, seeded through the simulator: two subscriptions, several resource groups,
identities with GitHub credentials and credentials made for service connections, role
assignments at subscription, resource group and management group scope (built-in and custom
roles), connections shared with other projects and with pipeline permissions, a connection on
the legacy issuer, and objects a spec cannot declare (a secret-based connection, one signing
in as an app registration, an identity of another owner). The round trip: export, validate,
plan shows only adoption, apply, plan is empty; asserted through the simulator's own API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.world import BenchWorld, Shape
from reconciler.federation import devops_issuer, devops_subject
from reconciler.sim.seed import default_seed, entra_issuer, entra_subject
from reconciler.sim.server import Simulator
from tests.integration.conftest import WALKTHROUGH, Portal, run, target

SANDBOX = "11111111-1111-1111-1111-111111111111"
PRODUCTION = "22222222-2222-2222-2222-222222222222"
CONTOSO = "0c7a5f0e-8d8b-4f7e-9a53-2f0b1f6c9d21"
FABRIKAM = "5d3e2c1b-7a9f-4e6d-8c0b-1a2b3c4d5e6f"
GITHUB = "https://token.actions.githubusercontent.com"
MG = "/providers/Microsoft.Management/managementGroups/contoso-root"
SECRET = "seeded-secret-value-do-not-write-9c1e"
APP = "3f2e1d0c-aaaa-4bbb-8ccc-0123456789ab"  # an app registration, no managed identity
AUDITOR = "9f0c2a8e-5b7d-4c3e-8a1f-6d2e4b8c0a11"  # the default seed's custom role
DEPLOY_SC = "e0000000-0000-4000-8000-000000000001"
TEAM_A_SC = "e0000000-0000-4000-8000-000000000002"
PROD_SC = "e0000000-0000-4000-8000-000000000003"
LEGACY_SC = "e0000000-0000-4000-8000-000000000004"
SPN_SC = "e0000000-0000-4000-8000-000000000005"
APP_SC = "e0000000-0000-4000-8000-000000000006"
CLIENT = {
    "deploy-mi": "c0000000-0000-4000-8000-000000000001",
    "team-a-mi": "c0000000-0000-4000-8000-000000000002",
    "prod-deploy-mi": "c0000000-0000-4000-8000-000000000003",
    "legacy-mi": "c0000000-0000-4000-8000-000000000004",
    "build-mi": "c0000000-0000-4000-8000-000000000005",
}
DATA = {"environment": "AzureCloud", "scopeLevel": "Subscription", "creationMode": "Manual"}


def _identity(sub: str, rg: str, name: str, creds: list[dict[str, str]], **extra: Any) -> Any:
    entry = {
        "subscription": sub,
        "resourceGroup": rg,
        "name": name,
        "location": extra.pop("location", "westeurope"),
        "federatedCredentials": creds,
        **extra,
    }
    entry.setdefault("clientId", CLIENT[name])
    return entry


def estate(tenant: str) -> dict[str, Any]:
    """The default world plus a hand-made estate (nothing carries platform-team's marker)."""
    seed = default_seed()

    def entra(endpoint: str) -> dict[str, str]:
        return {"issuer": entra_issuer(tenant), "subject": entra_subject(tenant, CONTOSO, endpoint)}

    seed["identities"] += [
        _identity(
            SANDBOX,
            "identities-rg",
            "deploy-mi",
            [
                {
                    "name": "github-main",
                    "issuer": GITHUB,
                    "subject": "repo:contoso/app:ref:refs/heads/main",
                },
                # made by hand for the connection, under a name of its own
                {"name": "deploy-sc-federation", **entra(DEPLOY_SC)},
            ],
            tags={"costCenter": "1234", "team": "platform"},
        ),
        _identity(
            SANDBOX,
            "team-a-rg",
            "team-a-mi",
            [
                {
                    "name": "github-pr",
                    "issuer": GITHUB,
                    "subject": "repo:contoso/team-a:pull_request",
                },
                {
                    "name": "github-env",
                    "issuer": GITHUB,
                    "subject": "repo:contoso/team-a:environment:prod",
                },
                {"name": "team-a-sc", **entra(TEAM_A_SC)},
            ],
        ),
        _identity(SANDBOX, "identities-rg", "build-mi", [], location="northeurope"),
        # the same name in another subscription: connections must name it in full
        _identity(
            PRODUCTION,
            "identities-prod-rg",
            "deploy-mi",
            [{"name": "prod-sc", **entra(PROD_SC)}],
            clientId="c0000000-0000-4000-8000-000000000013",
        ),
        _identity(
            PRODUCTION,
            "identities-prod-rg",
            "legacy-mi",
            [
                {
                    "name": "legacy",
                    "issuer": devops_issuer(FABRIKAM),
                    "subject": devops_subject("fabrikam", "legacy-app", "legacy-sc"),
                }
            ],
        ),
    ]
    seed["roleAssignments"] += [
        {
            "identity": f"{SANDBOX}/identities-rg/deploy-mi",
            "scope": f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg",
            "role": "Contributor",
            "description": "Deploy the sandbox",
        },
        {"identity": f"{SANDBOX}/identities-rg/deploy-mi", "scope": MG, "role": "Reader"},
        {
            "identity": f"{SANDBOX}/team-a-rg/team-a-mi",
            "scope": f"/subscriptions/{SANDBOX}",
            "roleDefinitionId": AUDITOR,
        },
        {
            "identity": f"{SANDBOX}/team-a-rg/team-a-mi",
            "scope": f"/subscriptions/{SANDBOX}/resourceGroups/team-a-rg",
            "role": "Contributor",
        },
        {
            "identity": f"{SANDBOX}/identities-rg/build-mi",
            "scope": f"/subscriptions/{SANDBOX}",
            "role": "Reader",
        },
        {
            "identity": f"{PRODUCTION}/identities-prod-rg/deploy-mi",
            "scope": f"/subscriptions/{PRODUCTION}/resourceGroups/app-prod-rg",
            "role": "Contributor",
        },
        # the production identity on a resource group of the other subscription
        {
            "identity": f"{PRODUCTION}/identities-prod-rg/legacy-mi",
            "scope": f"/subscriptions/{PRODUCTION}/resourceGroups/app-prod-rg",
            "role": "Reader",
        },
    ]
    contoso, fabrikam = seed["devops"]["organizations"]

    def wif(
        endpoint_id: str,
        name: str,
        client: str,
        sub: str,
        sub_name: str,
        projects: list[str],
        **extra: Any,
    ) -> Any:
        return {
            "id": endpoint_id,
            "name": name,
            "parameters": {
                "serviceprincipalid": client,
                "tenantid": tenant,
                **extra.pop("parameters", {}),
            },
            "data": {**DATA, "subscriptionId": sub, "subscriptionName": sub_name},
            "projects": projects,
            **extra,
        }

    contoso["serviceEndpoints"] = [
        wif(
            DEPLOY_SC,
            "deploy-sc",
            CLIENT["deploy-mi"],
            SANDBOX,
            "Sandbox",
            ["platform"],
            description="Sandbox deployments",
        ),
        wif(
            TEAM_A_SC,
            "team-a-sc",
            CLIENT["team-a-mi"],
            SANDBOX,
            "Sandbox",
            ["team-a", "team-b"],
            parameters={"scope": f"/subscriptions/{SANDBOX}/resourceGroups/team-a-rg"},
        ),
        wif(
            PROD_SC,
            "prod-sc",
            "c0000000-0000-4000-8000-000000000013",
            PRODUCTION,
            "Production",
            ["platform"],
        ),
        {
            "id": SPN_SC,
            "name": "spn-sc",
            "scheme": "ServicePrincipal",
            "parameters": {
                "serviceprincipalid": APP,
                "tenantid": tenant,
                "authenticationType": "spnKey",
                "serviceprincipalkey": SECRET,
            },
            "data": {
                **DATA,
                "creationMode": "Automatic",
                "subscriptionId": SANDBOX,
                "subscriptionName": "Sandbox",
            },
            "projects": ["platform", "team-a"],
        },
        wif(APP_SC, "app-sc", APP, SANDBOX, "Sandbox", ["team-b"]),
    ]
    contoso["pipelinePermissions"] = [
        {"project": "platform", "endpoint": "deploy-sc", "pipelines": [1, 2]},
        {"project": "team-a", "endpoint": "team-a-sc", "pipelines": [3]},
        {"project": "platform", "endpoint": "prod-sc", "allPipelines": True},
        {"project": "platform", "endpoint": "spn-sc", "allPipelines": True},
    ]
    fabrikam["serviceEndpoints"] = [
        wif(LEGACY_SC, "legacy-sc", CLIENT["legacy-mi"], PRODUCTION, "Production", ["legacy-app"]),
    ]
    fabrikam["pipelinePermissions"] = [
        {"project": "legacy-app", "endpoint": "legacy-sc", "pipelines": [1]}
    ]
    return seed


SCOPE = ["--subscription", SANDBOX, PRODUCTION, "--organization", "contoso", "fabrikam"]
API_OPS_EXCLUDED = {"Token", "OpenIdConfiguration", "InstanceDiscovery"}


def _export(
    capsys: pytest.CaptureFixture[str], sim: Simulator, out: Path, *extra: str
) -> tuple[int, str, str]:
    return run(capsys, "export", *SCOPE, "--out", str(out), *target(sim), *extra)


def _files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def _entries(folder: Path, section: str) -> list[dict[str, Any]]:
    found = []
    for text in _files(folder).values():
        found += yaml.safe_load(text).get(section) or []
    return found


def _api_requests(sim: Simulator) -> int:
    return sum(1 for r in sim.request_log() if r["op"] not in API_OPS_EXCLUDED)


@pytest.fixture
def seeded(sim: Simulator) -> Simulator:
    sim.reset(estate(sim.connection["tenant_id"]))
    sim.clear_log()
    return sim


def test_round_trip_export_validate_adopt_apply_converge(
    seeded: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    sim = seeded
    out = tmp_path / "exported"
    code, stdout, err = _export(capsys, sim, out, "--owner", "platform-team")
    assert code == 0, err
    assert "signed in to the simulator" in err
    assert "Exported" in stdout
    files = _files(out)
    assert files, "no file written"
    for name, text in files.items():
        assert text.startswith("# yaml-language-server: $schema="), name
        schema = (out / text.splitlines()[0].split("$schema=", 1)[1]).resolve()
        assert schema.name == "spec.schema.json" and schema.is_file()
        # nothing secret, ever
        assert SECRET not in text and "serviceprincipalkey" not in text.lower(), name
    everything = "\n".join(files.values())
    # the comments as prose, their line breaks undone
    prose = " ".join(line.lstrip("#").strip() for line in everything.splitlines())

    # identities with their credentials and role assignments, role names not GUIDs
    identities = {(i.get("subscription"), i["name"]): i for i in _entries(out, "identities")}
    names = sorted(i["name"] for i in _entries(out, "identities"))
    assert names == [
        "build-mi",
        "deploy-mi",
        "deploy-mi",
        "legacy-mi",
        "shared-build-mi",
        "team-a-mi",
    ]
    assert "data-team-mi" in everything and "owner marker 'data-team'" in prose
    roles = sorted(
        (ra["role"], ra.get("resourceGroup") or ra.get("scope"))
        for i in _entries(out, "identities")
        for ra in i.get("roleAssignments") or []
    )
    assert ("Contributor", "sandbox-rg") in roles  # shortened: the identity's subscription
    assert ("Reader", MG) in roles  # management group scope, in full
    assert ("Identity Auditor", f"/subscriptions/{SANDBOX}") in roles  # a custom role by name
    assert ("Reader", f"/subscriptions/{SANDBOX}") in roles
    assert not any(role == AUDITOR for role, _ in roles)
    creds = {
        c["name"] for i in _entries(out, "identities") for c in i.get("federatedCredentials") or []
    }
    # GitHub credentials written; those a written connection implies are not written twice
    assert creds == {"github-main", "github-pr", "github-env"}
    assert everything.count("deploy-sc-federation") == 0

    # connections with the identity they sign in as, sharedWith and pipeline permissions
    connections = {c["name"]: c for c in _entries(out, "serviceConnections")}
    assert sorted(connections) == ["deploy-sc", "legacy-sc", "prod-sc", "team-a-sc"]
    team_a = connections["team-a-sc"]
    assert (team_a["project"], team_a["sharedWith"]) == ("team-a", ["team-b"])
    assert team_a["resourceGroup"] == "team-a-rg"
    assert team_a["pipelinePermissions"] == ["team-a-deploy"]
    assert connections["prod-sc"]["identity"] == {
        "name": "deploy-mi",
        "resourceGroup": "identities-prod-rg",
        "subscription": PRODUCTION,
    }
    assert connections["prod-sc"]["pipelinePermissions"] == "all"
    assert connections["deploy-sc"]["pipelinePermissions"] == ["app-ci", "infra-deploy"]
    assert "retired" in prose and "1 July 2027" in prose  # the legacy issuer

    # a comment for every object a spec cannot declare, and why
    assert "spn-sc" in everything and "signs in with a secret" in prose
    assert "converts it to workload identity federation in place" in prose
    assert "app-sc" in everything and f"signs in as {APP}" in prose
    assert "spn-sc" not in connections and "app-sc" not in connections
    assert identities  # keys used above

    code, stdout, err = run(capsys, "validate", str(out))
    assert code == 0, err

    plan_file = tmp_path / "plan.json"
    code, stdout, err = run(capsys, "plan", str(out), *target(sim), "--out", str(plan_file))
    assert code == 0, err
    document = json.loads(plan_file.read_text())
    changes = document["changes"]
    assert changes, "adoption expected"
    assert {(c["action"], c["reason"]) for c in changes} == {("update", "adoption")}, [
        (c["address"], c["action"], c["reason"], c["fields"])
        for c in changes
        if (c["action"], c["reason"]) != ("update", "adoption")
    ]
    for change in changes:
        paths = {f["path"] for f in change["fields"]}
        # the owner marker, and the identity's record of its connections' organisations
        assert paths <= {"owner"} | {p for p in paths if p.startswith("organizations.")}, change
    kinds = sorted({c["kind"] for c in changes})
    assert kinds == ["identity", "role_assignment", "service_connection"]

    code, stdout, err = run(capsys, "apply", str(out), *target(sim), "--auto-approve")
    assert code == 0, err + stdout
    code, stdout, err = run(capsys, "plan", str(out), *target(sim), "--detailed-exitcode")
    assert code == 0, stdout + err

    # live state through the simulator's own API: adopted, nothing else moved
    mine = portal.identity("identities-rg", "deploy-mi")
    assert mine["tags"]["reconciler-owner"] == "platform-team"
    assert mine["tags"]["costCenter"] == "1234"
    assert {c["name"] for c in portal.credentials(mine["id"])} == {
        "github-main",
        "deploy-sc-federation",
    }
    assert "reconciler-owner" not in portal.identity("identities-rg", "data-team-mi")["tags"] or (
        portal.identity("identities-rg", "data-team-mi")["tags"]["reconciler-owner"] == "data-team"
    )
    endpoints = {e["name"]: e for e in portal.connections("contoso", "platform")}
    assert endpoints["deploy-sc"]["description"].endswith("[reconciler-owner: platform-team]")
    assert endpoints["deploy-sc"]["id"] == DEPLOY_SC
    assert "reconciler-owner" not in (endpoints["spn-sc"].get("description") or "")
    assert endpoints["spn-sc"]["authorization"]["scheme"] == "ServicePrincipal"
    perms = portal.permissions("contoso", "platform", PROD_SC)
    assert perms["allPipelines"]["authorized"] is True

    # a re-export of the adopted estate is the same text: it diffs cleanly in git
    again = tmp_path / "again"
    code, _, err = _export(capsys, sim, again, "--owner", "platform-team")
    assert code == 0, err
    assert _files(again) == files


def test_export_costs_at_most_1_2_times_a_warm_plan(
    seeded: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sim = seeded
    out = tmp_path / "exported"
    code, _, err = _export(capsys, sim, out, "--owner", "platform-team")
    assert code == 0, err
    code, _, err = run(capsys, "apply", str(out), *target(sim), "--auto-approve")
    assert code == 0, err
    sim.clear_log()
    code, _, err = run(capsys, "plan", str(out), *target(sim), "--detailed-exitcode")
    assert code == 0, err
    plan_requests = _api_requests(sim)
    sim.clear_log()
    code, _, err = _export(capsys, sim, tmp_path / "again", "--owner", "platform-team")
    assert code == 0, err
    export_requests = _api_requests(sim)
    print(f"warm plan: {plan_requests} requests; export: {export_requests}")
    assert export_requests <= 1.2 * plan_requests, (export_requests, plan_requests)


@pytest.mark.parametrize("split", ["project", "none"])
def test_other_splits_validate_and_adopt_only(
    seeded: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, split: str
) -> None:
    out = tmp_path / split
    code, _, err = _export(capsys, seeded, out, "--owner", "platform-team", "--split", split)
    assert code == 0, err
    if split == "none":
        assert list(_files(out)) == ["estate.yaml"]
    else:
        assert {"contoso-platform.yaml", "contoso-team-a.yaml", "fabrikam-legacy-app.yaml"} <= set(
            _files(out)
        )
    code, _, err = run(capsys, "validate", str(out))
    assert code == 0, err
    plan_file = tmp_path / "plan.json"
    code, _, err = run(capsys, "plan", str(out), *target(seeded), "--out", str(plan_file))
    assert code == 0, err
    changes = json.loads(plan_file.read_text())["changes"]
    assert changes and {(c["action"], c["reason"]) for c in changes} == {("update", "adoption")}


def test_resource_group_and_project_narrow_the_scope(
    seeded: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "narrow"
    code, _, err = run(
        capsys, "export", "--subscription", SANDBOX, "--resource-group", "team-a-rg",
        "--organization", "contoso", "--project", "team-a", "--out", str(out),
        "--owner", "team-a", *target(seeded),
    )  # fmt: skip
    assert code == 0, err
    assert [i["name"] for i in _entries(out, "identities")] == ["team-a-mi"]
    # read from team-a only, the secret-based connection shared with it is a comment there
    assert [c["name"] for c in _entries(out, "serviceConnections")] == ["team-a-sc"]
    everything = "\n".join(_files(out).values())
    assert "deploy-mi" not in everything
    code, _, err = run(capsys, "validate", str(out))
    assert code == 0, err


def test_existing_files_are_never_overwritten_silently(
    seeded: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "specs"
    out.mkdir()
    mine = out / "identities-rg.yaml"
    mine.write_text("# mine\n")
    seeded.clear_log()
    code, _, err = _export(capsys, seeded, out, "--owner", "platform-team")
    assert code == 1 and "not empty" in err and "--force" in err
    assert mine.read_text() == "# mine\n"
    assert seeded.request_log() == []  # refused before reading anything
    code, _, err = _export(capsys, seeded, out, "--owner", "platform-team", "--force")
    assert code == 0, err
    assert mine.read_text().startswith("# yaml-language-server")
    assert "replaced: " in err and "identities-rg.yaml" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--subscription", "not-a-guid", "--out", "{out}"], "--subscription 'not-a-guid'"),
        (
            ["--subscription", SANDBOX, "--project", "team-a", "--out", "{out}"],
            "--project needs --organization",
        ),
        (
            [
                "--subscription",
                SANDBOX,
                "--organization",
                "https://dev.azure.com/x",
                "--out",
                "{out}",
            ],
            "--organization",
        ),
        (["--subscription", SANDBOX, "--out", "{out}", "--owner", "bad owner"], "--owner"),
        (["--subscription", SANDBOX, "--out", "{file}"], "is a file"),
        (["--subscription", SANDBOX, "--out", "{missing}/deeper"], "does not exist"),
        (
            ["--subscription", SANDBOX, "--organization", "nosuchorg", "--out", "{out}"],
            "--organization nosuchorg",
        ),
        (
            [
                "--subscription",
                SANDBOX,
                "--organization",
                "contoso",
                "--project",
                "team-c",
                "--out",
                "{out}",
            ],
            "no such project",
        ),
        (["--subscription", SANDBOX, "--out", "{out}"], "--owner NAME is needed"),
        (["--subscription", "33333333-3333-3333-3333-333333333333", "--out", "{out}"], "33333333"),
    ],
)
def test_bad_input_exits_1_with_a_clear_message(
    seeded: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    message: str,
) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("x")
    values = {"out": str(tmp_path / "out"), "file": str(afile), "missing": str(tmp_path / "nope")}
    code, _, err = run(capsys, "export", *[a.format(**values) for a in argv], *target(seeded))
    assert code == 1, err
    assert message in err
    assert not (tmp_path / "out").exists()


def test_generated_estate_round_trip_and_cost(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The bench's generated estate (every object carrying owner ``bench``, as the tool leaves
    it): the export, with the owner found from the markers, plans nothing; it reads no more
    than a warm plan of the bench's own specs."""
    world = BenchWorld(Shape(identities=25))
    specs = world.write_specs(tmp_path / "specs")
    sim.reset(world.seed("warm"))
    sim.clear_log()
    code, _, err = run(capsys, "plan", str(specs), *target(sim), "--detailed-exitcode")
    assert code == 0, err
    plan_requests = _api_requests(sim)
    sim.clear_log()
    out = tmp_path / "exported"
    subscriptions = [sub for sub, _ in world.subscriptions]
    code, _, err = run(
        capsys, "export", "--subscription", *subscriptions, "--organization", "bench",
        "--out", str(out), *target(sim),
    )  # fmt: skip
    assert code == 0, err
    export_requests = _api_requests(sim)
    assert export_requests <= 1.2 * plan_requests, (export_requests, plan_requests)
    assert yaml.safe_load(next(iter(_files(out).values())))["owner"] == "bench"
    identities = _entries(out, "identities")
    assert len(identities) == 25
    assert sum(len(i.get("federatedCredentials") or []) for i in identities) == 25 * 3
    assert sum(len(i.get("roleAssignments") or []) for i in identities) == 25 * 3
    assert len(_entries(out, "serviceConnections")) == 5
    code, stdout, err = run(capsys, "plan", str(out), *target(sim), "--detailed-exitcode")
    assert code == 0, stdout + err


def test_walkthrough_applied_then_exported_plans_nothing(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The example walkthrough, applied by the tool, exported again: the same estate."""
    code, _, err = run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")
    assert code == 0, err
    out = tmp_path / "exported"
    code, _, err = run(
        capsys, "export", "--subscription", SANDBOX, "--resource-group", "identities-rg",
        "--organization", "contoso", "--project", "platform", "--out", str(out),
        "--owner", "platform-team", *target(sim),
    )  # fmt: skip
    assert code == 0, err
    names = sorted(i["name"] for i in _entries(out, "identities"))
    assert "ado-pipeline-mi" in names
    connection = next(
        c for c in _entries(out, "serviceConnections") if c["name"] == "ado-pipeline-mi"
    )
    assert connection["pipelinePermissions"] == ["infra-deploy"]
    code, _, err = run(capsys, "plan", str(out), *target(sim), "--out", str(tmp_path / "p.json"))
    assert code == 0, err
    changes = json.loads((tmp_path / "p.json").read_text())["changes"]
    # the walkthrough's own objects: nothing; the seed's hand-made identity: adoption only
    assert all(c["reason"] == "adoption" for c in changes), changes
    assert not any("ado-pipeline-mi" in c["address"] for c in changes)


def test_a_file_that_cannot_be_written_exits_1_naming_the_folder(
    seeded: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "specs"
    (out / "contoso-platform.yaml").mkdir(parents=True)  # a folder where a file must go
    code, _, err = _export(capsys, seeded, out, "--owner", "platform-team", "--force")
    assert code == 1, err
    assert f"--out {out}: cannot write there" in err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".specs.export-")]
