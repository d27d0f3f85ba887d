"""Loading specs into the flattened desired state, and the ``validate`` command."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.errors import ConfigError, SpecError
from reconciler.model import (
    DEFAULT_AUDIENCE,
    UNKNOWN,
    Address,
    DesiredState,
    Kind,
    Source,
    implied_credential_name,
    role_assignment_key,
)
from reconciler.specs import (
    describe,
    find_spec_files,
    load_desired_state,
    read_specs,
    spec_digest,
)

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = "11111111-1111-1111-1111-111111111111"
PRODUCTION = "22222222-2222-2222-2222-222222222222"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
AUDITOR = "9f0c2a8e-5b7d-4c3e-8a1f-6d2e4b8c0a11"
HEAD = f"""version: 1
owner: platform-team
defaults:
  subscription: {SANDBOX}
  resourceGroup: identities-rg
  location: westeurope
"""


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def _load(tmp_path: Path, **files: str) -> DesiredState:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return load_desired_state([str(tmp_path)])


def _problems(tmp_path: Path, **files: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, **files)
    prefix = f"{tmp_path}/"
    return [str(p).removeprefix(prefix) for p in caught.value.problems]


def _attrs(desired: DesiredState, kind: Kind, key: str) -> dict[str, object]:
    return dict(desired.resources[Address(kind, key)].attrs)


# --- the examples -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "specs/walkthrough.yaml",
        "specs/github-actions.yaml",
        "specs/teams",
        "specs/teams/team-a.yaml",
        "specs/teams/team-b.yaml",
    ],
)
def test_each_example_validates_on_its_own(path: str) -> None:
    desired = load_desired_state([path])
    assert desired.owner == "platform-team"
    assert all(isinstance(r.source, Source) for r in desired.resources.values())


def test_all_examples_form_one_desired_state() -> None:
    desired = load_desired_state(["specs"])
    assert desired.files == (
        "specs/github-actions.yaml",
        "specs/teams/team-a.yaml",
        "specs/teams/team-b.yaml",
        "specs/walkthrough.yaml",
    )
    assert describe(desired) == (
        "valid: 4 files, 6 identities, 7 federated credentials (5 implied by service "
        "connections), 9 role assignments, 5 service connections"
    )


def test_walkthrough_is_the_azure_devops_setup() -> None:
    desired = load_desired_state(["specs/walkthrough.yaml"])
    identity = f"{SANDBOX}/identities-rg/ado-pipeline-mi"
    connection = "contoso/platform/ado-pipeline-mi"
    fic = implied_credential_name("contoso", "platform", "ado-pipeline-mi")
    scope = f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg"
    addresses = {
        Address(Kind.IDENTITY, identity),
        Address(Kind.ROLE_ASSIGNMENT, role_assignment_key(identity, scope, CONTRIBUTOR)),
        Address(Kind.SERVICE_CONNECTION, connection),
        Address(Kind.FEDERATED_CREDENTIAL, f"{identity}/{fic}"),
    }
    assert set(desired.resources) == addresses
    ident = desired.resources[Address(Kind.IDENTITY, identity)]
    assert ident.attrs == {
        "subscription": SANDBOX,
        "resourceGroup": "identities-rg",
        "name": "ado-pipeline-mi",
        "location": "westeurope",
        "tags": {"purpose": "azure-devops-deployments"},
    }
    assert ident.source == Source("specs/walkthrough.yaml", 16, 5, "identities[0]")
    assert ident.depends_on == ()
    (role,) = desired.of_kind(Kind.ROLE_ASSIGNMENT)
    assert role.attrs == {
        "identity": identity,
        "role": "Contributor",
        "roleDefinitionId": CONTRIBUTOR,
        "scope": scope,
        "description": "Deploy the sandbox from Azure Pipelines",
        "condition": None,
        "conditionVersion": None,
    }
    assert role.depends_on == (ident.address,)
    assert role.source == Source(
        "specs/walkthrough.yaml", 20, 9, "identities[0].roleAssignments[0]"
    )
    sc = desired.resources[Address(Kind.SERVICE_CONNECTION, connection)]
    assert sc.attrs == {
        "organization": "contoso",
        "project": "platform",
        "name": "ado-pipeline-mi",
        "description": "Sandbox deployments (workload identity federation, no secret)",
        "identity": identity,
        "subscriptionId": SANDBOX,
        "subscriptionName": "Sandbox",
        "scope": None,
        "sharedWith": [],
        "pipelinePermissions": ["infra-deploy"],
    }
    assert sc.depends_on == (ident.address,)
    implied = desired.resources[Address(Kind.FEDERATED_CREDENTIAL, f"{identity}/{fic}")]
    assert implied.attrs == {
        "identity": identity,
        "name": fic,
        "issuer": UNKNOWN,
        "subject": UNKNOWN,
        "audiences": [DEFAULT_AUDIENCE],
        "serviceConnection": connection,
    }
    assert implied.depends_on == (sc.address, ident.address)
    assert implied.source == sc.source


def test_github_actions_credentials_and_resource_group_shorthand() -> None:
    desired = load_desired_state(["specs/github-actions.yaml"])
    identity = f"{PRODUCTION}/identities-prod-rg/github-app-deploy-mi"
    main_fic = _attrs(desired, Kind.FEDERATED_CREDENTIAL, f"{identity}/github-main")
    assert main_fic == {
        "identity": identity,
        "name": "github-main",
        "issuer": "https://token.actions.githubusercontent.com",
        "subject": "repo:contoso/app:ref:refs/heads/main",
        "audiences": [DEFAULT_AUDIENCE],
        "serviceConnection": None,
    }
    (role,) = desired.of_kind(Kind.ROLE_ASSIGNMENT)
    assert role.attrs["scope"] == f"/subscriptions/{PRODUCTION}/resourceGroups/app-prod-rg"


def test_teams_roles_by_name_guid_and_id_and_identity_references() -> None:
    desired = load_desired_state(["specs/teams"])
    team_a = f"{SANDBOX}/team-a-rg/deploy-mi"
    team_b = f"{SANDBOX}/team-b-rg/deploy-mi"
    roles = {
        (r.attrs["identity"], r.attrs["role"]): r for r in desired.of_kind(Kind.ROLE_ASSIGNMENT)
    }
    auditor = roles[(team_a, "Identity Auditor")]
    assert auditor.attrs["roleDefinitionId"] is None
    assert auditor.address.key == f"{team_a}//subscriptions/{SANDBOX}/name:identity auditor"
    by_guid = roles[(team_b, "4633458b-17de-408a-b874-0445c86b69e6")]
    assert by_guid.attrs["roleDefinitionId"] == "4633458b-17de-408a-b874-0445c86b69e6"
    by_id = next(r for (i, role), r in roles.items() if i == team_b and role.startswith("/"))
    assert by_id.attrs["roleDefinitionId"] == AUDITOR
    assert _attrs(desired, Kind.IDENTITY, team_b)["location"] == "northeurope"
    a_deploy = _attrs(desired, Kind.SERVICE_CONNECTION, "contoso/team-a/team-a-deploy")
    assert a_deploy["identity"] == team_a
    assert a_deploy["sharedWith"] == ["team-b"]
    assert a_deploy["scope"] == f"/subscriptions/{SANDBOX}/resourceGroups/team-a-rg"
    b_deploy = _attrs(desired, Kind.SERVICE_CONNECTION, "contoso/team-b/team-b-deploy")
    assert (b_deploy["identity"], b_deploy["pipelinePermissions"]) == (team_b, "all")
    legacy = _attrs(desired, Kind.SERVICE_CONNECTION, "fabrikam/legacy-app/legacy-release")
    assert legacy["pipelinePermissions"] == ["legacy-release"]


# --- semantics ----------------------------------------------------------------------------


def test_defaults_apply_to_their_own_file_only(tmp_path: Path) -> None:
    other = "version: 1\nidentities:\n  - name: other-mi\n"
    assert _problems(tmp_path, **{"a.yaml": HEAD, "b.yaml": other}) == [
        "b.yaml:3:5: identities[0].location: required field missing (set it here or in "
        "defaults.location)",
        "b.yaml:3:5: identities[0].resourceGroup: required field missing (set it here or in "
        "defaults.resourceGroup)",
        "b.yaml:3:5: identities[0].subscription: required field missing (set it here or in "
        "defaults.subscription)",
    ]


def test_owner_stated_in_one_file_covers_the_set(tmp_path: Path) -> None:
    other = HEAD.replace("owner: platform-team\n", "") + "identities:\n  - name: other-mi\n"
    desired = _load(tmp_path, **{"a.yaml": HEAD, "b.yaml": other})
    assert desired.owner == "platform-team"
    assert len(desired.of_kind(Kind.IDENTITY)) == 1


def test_identity_values_override_defaults_and_are_canonical(tmp_path: Path) -> None:
    spec = HEAD + (
        "identities:\n  - name: Build-MI\n    subscription: AAAAAAAA-1111-1111-1111-111111111111\n"
        "    resourceGroup: Other-RG\n    location: West Europe\n"
    )
    desired = _load(tmp_path, **{"a.yaml": spec})
    (identity,) = desired.of_kind(Kind.IDENTITY)
    assert identity.address.key == "aaaaaaaa-1111-1111-1111-111111111111/other-rg/build-mi"
    assert identity.attrs["subscription"] == "aaaaaaaa-1111-1111-1111-111111111111"
    assert identity.attrs["resourceGroup"] == "Other-RG"
    assert identity.attrs["name"] == "Build-MI"
    assert identity.attrs["location"] == "westeurope"
    assert identity.attrs["tags"] == {}


def test_role_assignment_forms(tmp_path: Path) -> None:
    spec = HEAD + (
        "identities:\n  - name: build-mi\n    roleAssignments:\n"
        f"      - role: Reader\n        scope: /subscriptions/{SANDBOX}/\n"
        "      - role: owner\n        scope: /providers/Microsoft.Management/managementGroups/mg1\n"
        f"      - role: /subscriptions/{SANDBOX}/providers/Microsoft.Authorization/roleDefinitions/"
        f"{AUDITOR.upper()}\n        resourceGroup: team-a-rg\n"
        "      - role: Storage Blob Data Reader\n"
        f"        scope: /subscriptions/{SANDBOX}/resourceGroups/data-rg/providers/"
        "Microsoft.Storage/storageAccounts/logs\n"
        "        description: read logs\n"
        "        condition: \"@Resource[x] StringEquals 'y'\"\n"
    )
    desired = _load(tmp_path, **{"a.yaml": spec})
    roles = {r.attrs["role"]: r for r in desired.of_kind(Kind.ROLE_ASSIGNMENT)}
    assert roles["Reader"].attrs["scope"] == f"/subscriptions/{SANDBOX}"
    assert roles["Reader"].attrs["roleDefinitionId"] == "acdd72a7-3385-48ef-bd42-f606fba81ae7"
    assert roles["owner"].attrs["roleDefinitionId"] == "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
    by_id = next(r for name, r in roles.items() if name.startswith("/"))
    assert by_id.attrs["roleDefinitionId"] == AUDITOR
    assert by_id.attrs["scope"] == f"/subscriptions/{SANDBOX}/resourceGroups/team-a-rg"
    data = roles["Storage Blob Data Reader"]  # built-in: resolved offline from the catalogue
    assert data.attrs["roleDefinitionId"] == "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
    assert data.address.key.endswith("/storageaccounts/logs/2a2b9908-6ea1-4ae2-8e65-a410df84e7d1")
    assert (data.attrs["description"], data.attrs["conditionVersion"]) == ("read logs", "2.0")
    assert data.attrs["condition"] == "@Resource[x] StringEquals 'y'"


def test_connection_defaults_and_subscription(tmp_path: Path) -> None:
    spec = HEAD.replace(
        "defaults:\n", "defaults:\n  organization: contoso\n  project: team-a\n"
    ) + (
        "identities:\n  - name: build-mi\n    subscription: 22222222-2222-2222-2222-222222222222\n"
        "serviceConnections:\n"
        "  - {name: one, identity: build-mi, subscriptionName: Production}\n"
        "  - {name: two, identity: {name: build-mi, subscription: 22222222-2222-2222-2222-222222222222},"
        " subscription: 11111111-1111-1111-1111-111111111111, subscriptionName: Sandbox,"
        " resourceGroup: team-a-rg, sharedWith: [team-b, platform], pipelinePermissions: []}\n"
    )
    desired = _load(tmp_path, **{"a.yaml": spec})
    one = _attrs(desired, Kind.SERVICE_CONNECTION, "contoso/team-a/one")
    assert one["subscriptionId"] == PRODUCTION
    assert (one["scope"], one["pipelinePermissions"], one["description"]) == (None, None, None)
    two = _attrs(desired, Kind.SERVICE_CONNECTION, "contoso/team-a/two")
    assert two["subscriptionId"] == SANDBOX
    assert two["scope"] == f"/subscriptions/{SANDBOX}/resourceGroups/team-a-rg"
    assert two["sharedWith"] == ["platform", "team-b"]
    assert two["pipelinePermissions"] == []
    implied = [
        c for c in desired.of_kind(Kind.FEDERATED_CREDENTIAL) if c.attrs["serviceConnection"]
    ]
    assert sorted(c.attrs["name"] for c in implied) == [
        "ado-contoso-team-a-one",
        "ado-contoso-team-a-two",
    ]


def test_a_connection_may_use_an_identity_from_another_file(tmp_path: Path) -> None:
    connection = (
        "version: 1\nserviceConnections:\n  - {name: sc, organization: contoso, project: platform,"
        " identity: build-mi, subscriptionName: Sandbox}\n"
    )
    identities = HEAD + "identities:\n  - name: build-mi\n"
    desired = _load(tmp_path, **{"a.yaml": connection, "b.yaml": identities})
    sc = _attrs(desired, Kind.SERVICE_CONNECTION, "contoso/platform/sc")
    assert sc["identity"] == f"{SANDBOX}/identities-rg/build-mi"


def test_twenty_credentials_including_implied_ones_are_allowed(tmp_path: Path) -> None:
    creds = "".join(
        f"      - {{name: c-{i:02d}, issuer: 'https://i.example', subject: 's{i}'}}\n"
        for i in range(19)
    )
    spec = (
        HEAD
        + "identities:\n  - name: build-mi\n    federatedCredentials:\n"
        + creds
        + (
            "serviceConnections:\n  - {name: sc, organization: contoso, project: platform,"
            " identity: build-mi, subscriptionName: Sandbox}\n"
        )
    )
    assert len(_load(tmp_path, **{"a.yaml": spec}).of_kind(Kind.FEDERATED_CREDENTIAL)) == 20


def test_schema_errors_skip_only_their_entry(tmp_path: Path) -> None:
    spec = HEAD + (
        "identities:\n  - name: good-mi\n    tags: {Reconciler-Owner: x}\n"
        "    federatedCredentials:\n      - {name: bad, issuer: 'http://x', subject: s}\n"
        "serviceConnections:\n  - {name: sc, organization: contoso, project: platform,"
        " identity: nobody-mi, subscriptionName: S}\n"
    )
    assert _problems(tmp_path, **{"a.yaml": spec}) == [
        "a.yaml:9:12: identities[0].tags.Reconciler-Owner: reserved tag: the tool writes it "
        "from `owner` to mark what it owns",
        "a.yaml:11:29: identities[0].federatedCredentials[0].issuer: must be an https:// URL "
        "without spaces (got 'http://x')",
        "a.yaml:13:68: serviceConnections[0].identity: no identity named 'nobody-mi' is "
        "declared in the specs loaded together",
    ]


def test_problems_come_sorted_by_file_and_line(tmp_path: Path) -> None:
    bad = "version: 1\nowner: x\nidentities:\n  - name: a\n  - name: b\n"
    problems = _problems(tmp_path, **{"b.yaml": bad, "a.yaml": bad})
    assert [p.split(": ")[0] for p in problems] == [
        "a.yaml:4:11",
        "a.yaml:5:11",
        "b.yaml:4:11",
        "b.yaml:5:11",
    ]


def test_files_that_are_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"version: 1\nowner: caf\xe9\n")
    with pytest.raises(SpecError) as caught:
        load_desired_state([str(tmp_path / "a.yaml")])
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path}/a.yaml:2:11: not UTF-8 text: save the file as UTF-8"
    ]


# --- files --------------------------------------------------------------------------------


def test_find_spec_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("b.yaml", "a.yml", "sub/c.yaml", ".hidden/d.yaml", ".e.yaml", "notes.txt"):
        (tmp_path / name).write_text("version: 1\n", encoding="utf-8")
    root = str(tmp_path)
    assert find_spec_files([root, f"{root}/b.yaml"]) == [
        f"{root}/a.yml",
        f"{root}/b.yaml",
        f"{root}/sub/c.yaml",
    ]
    with pytest.raises(ConfigError, match="no such file or folder"):
        find_spec_files([f"{root}/missing.yaml"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no spec files"):
        find_spec_files([f"{root}/empty"])


def test_read_specs_keeps_syntax_problems_per_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\na: 2\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("version: 1\n", encoding="utf-8")
    first, second = read_specs([str(tmp_path)])
    assert first.data is None
    assert [str(p) for p in first.problems] == [
        f"{tmp_path}/a.yaml:2:1: duplicate key 'a' (first given on line 1)"
    ]
    assert second.data == {"version": 1} and second.problems == ()


def test_spec_digest_follows_contents_not_argument_order(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(HEAD, encoding="utf-8")
    (tmp_path / "b.yaml").write_text("version: 1\n", encoding="utf-8")
    a, b = str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")
    digest = spec_digest([a, b])
    assert len(digest) == 64
    assert spec_digest([b, a]) == digest == spec_digest([str(tmp_path)])
    (tmp_path / "b.yaml").write_text("version: 1\n# a comment\n", encoding="utf-8")
    assert spec_digest([a, b]) != digest


# --- describe and the command -------------------------------------------------------------


def test_describe_counts_in_singular_and_plural(tmp_path: Path) -> None:
    desired = _load(tmp_path, **{"a.yaml": HEAD})
    assert describe(desired) == (
        "valid: 1 file, 0 identities, 0 federated credentials, 0 role assignments, "
        "0 service connections"
    )
    assert describe(load_desired_state(["specs/walkthrough.yaml"])) == (
        "valid: 1 file, 1 identity, 1 federated credential (1 implied by service "
        "connections), 1 role assignment, 1 service connection"
    )


def test_describe_verbose_lists_the_desired_state_per_identity() -> None:
    text = describe(load_desired_state(["specs/walkthrough.yaml"]), verbose=True)
    fic = implied_credential_name("contoso", "platform", "ado-pipeline-mi")
    assert text.splitlines() == [
        "owner: platform-team",
        "",
        f"identity identities-rg/ado-pipeline-mi  (subscription {SANDBOX}, westeurope)  "
        "[specs/walkthrough.yaml:16:5]",
        "    tags purpose=azure-devops-deployments",
        f"    federated credential {fic}, for service connection "
        "contoso/platform/ado-pipeline-mi (issuer and subject known after apply)",
        f"    role Contributor ({CONTRIBUTOR})",
        f"        on /subscriptions/{SANDBOX}/resourceGroups/sandbox-rg",
        "    service connection contoso/platform/ado-pipeline-mi  [specs/walkthrough.yaml:25:5]",
        f"        subscription Sandbox ({SANDBOX}), scope the whole subscription",
        "        pipelines: infra-deploy",
        "",
        "valid: 1 file, 1 identity, 1 federated credential (1 implied by service "
        "connections), 1 role assignment, 1 service connection",
    ]


def test_cli_validate_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "specs"]) == 0
    out, err = capsys.readouterr()
    assert out == (
        "valid: 4 files, 6 identities, 7 federated credentials (5 implied by service "
        "connections), 9 role assignments, 5 service connections\n"
    )
    assert err == ""
    assert main(["validate", "-v", "specs/teams"]) == 0
    out, _ = capsys.readouterr()
    assert "role Identity Auditor (resolved from the live role catalogue)" in out
    assert "        pipelines: team-a-deploy; shared with team-b" in out


def test_cli_validate_invalid(capsys: pytest.CaptureFixture[str]) -> None:
    case = "tests/specs_invalid/issuer-not-https.yaml"
    assert main(["validate", case, "specs/github-actions.yaml"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{case}:14:17: identities[0].federatedCredentials[0].issuer: must be an https:// URL "
        "without spaces (got 'http://token.actions.githubusercontent.com')",
        f"{case}:17:17: identities[0].federatedCredentials[1].issuer: must be an https:// URL "
        "without spaces (got 'token.actions.githubusercontent.com')",
        "2 problems found",
    ]


def test_cli_validate_syntax_error_is_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "tests/specs_invalid/yaml-tab.yaml"]) == 1
    _, err = capsys.readouterr()
    assert err == (
        "tests/specs_invalid/yaml-tab.yaml:6:1: tab character: YAML indentation must use "
        "spaces, not tabs\n1 problem found\n"
    )


def test_cli_validate_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "specs/nope.yaml"]) == 1
    assert capsys.readouterr().err == "error: specs/nope.yaml: no such file or folder\n"


# --- scale --------------------------------------------------------------------------------


def big_spec(identities: int) -> str:
    """A spec of about 7 resources per identity: 2 declared credentials, 1 implied, 2 role
    assignments, 1 service connection."""
    lines = [HEAD.rstrip("\n"), "  organization: contoso", "  project: platform", "identities:"]
    for i in range(identities):
        lines += [
            f"  - name: app-{i:04d}-mi",
            f"    tags: {{app: app-{i:04d}, costCenter: '1234'}}",
            "    federatedCredentials:",
            "      - name: github-main",
            "        issuer: https://token.actions.githubusercontent.com",
            f"        subject: repo:contoso/app-{i}:ref:refs/heads/main",
            "      - name: github-production",
            "        issuer: https://token.actions.githubusercontent.com",
            f"        subject: repo:contoso/app-{i}:environment:production",
            "    roleAssignments:",
            "      - role: Contributor",
            f"        scope: /subscriptions/{SANDBOX}/resourceGroups/app-{i}-rg",
            "      - role: Reader",
            "        resourceGroup: shared-rg",
        ]
    lines.append("serviceConnections:")
    for i in range(identities):
        lines += [
            f"  - name: app-{i:04d}",
            f"    identity: app-{i:04d}-mi",
            "    subscriptionName: Sandbox",
            "    pipelinePermissions: [deploy]",
        ]
    return "\n".join(lines) + "\n"


def test_a_thousand_identities(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text(big_spec(1000), encoding="utf-8")
    desired = load_desired_state([str(tmp_path / "big.yaml")])
    assert describe(desired) == (
        "valid: 1 file, 1000 identities, 3000 federated credentials (1000 implied by service "
        "connections), 2000 role assignments, 1000 service connections"
    )


def test_spec_digest_does_not_depend_on_how_paths_are_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = tmp_path / "repo" / "specs"
    (specs / "teams").mkdir(parents=True)
    (specs / "a.yaml").write_text(HEAD, encoding="utf-8")
    (specs / "teams" / "b.yaml").write_text("version: 1\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path / "repo")
    digest = spec_digest(["specs"])
    assert spec_digest(["./specs/"]) == digest
    assert spec_digest([str(specs)]) == digest
    assert spec_digest(["specs/teams/b.yaml", "specs"]) == digest
    assert spec_digest(["specs", "./specs/a.yaml"]) == digest
    assert spec_digest(["specs/a.yaml", "specs/teams"]) == digest
    # another checkout of the same files, from another working directory
    other = tmp_path / "agent2" / "s" / "specs"
    shutil.copytree(specs, other)
    monkeypatch.chdir(tmp_path)
    assert spec_digest([str(other)]) == digest
    # but a file's content, its name inside the folder, or the set of files count
    (other / "teams" / "b.yaml").rename(other / "teams" / "c.yaml")
    assert spec_digest([str(other)]) != digest
    (other / "teams" / "c.yaml").rename(other / "teams" / "b.yaml")
    assert spec_digest([str(other)]) == digest
    (other / "teams" / "b.yaml").write_text("version: 1\n\n", encoding="utf-8")
    assert spec_digest([str(other)]) != digest
    assert spec_digest([str(specs / "a.yaml")]) != digest
