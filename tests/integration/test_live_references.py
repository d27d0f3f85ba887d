"""Plan refuses, before anything is written, what only live state can tell is wrong: a
misspelt organisation, project (owning or shared), pipeline, role, resource group or
subscription. Every problem at once, at the field that names it, with the closest name."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.sim.seed import default_seed
from reconciler.sim.server import Simulator

from .conftest import WALKTHROUGH, Portal, run, target, writes

GONE = "33333333-3333-3333-3333-333333333333"

TYPOS = f"""\
version: 1
owner: platform-team
defaults:
  subscription: 11111111-1111-1111-1111-111111111111
  resourceGroup: identities-rg
  location: westeurope
identities:
  - name: search-mi
    resourceGroup: identites-rg
    roleAssignments:
      - role: Contributer
        resourceGroup: sandbox-rg
      - role: Reader
        scope: /subscriptions/{GONE}
      - role: Reader
        scope: /subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/sandbx-rg
serviceConnections:
  - name: search-deploy
    organization: contoso
    project: Serach
    identity: search-mi
    subscriptionName: Sandbox
    sharedWith: [platfrom]
    pipelinePermissions: [search-deploy]
  - name: search-ci
    organization: contoso
    project: Search
    identity: search-mi
    subscriptionName: Sandbox
    pipelinePermissions:
      - search-deplyo
      - nightly
  - name: legacy
    organization: fabrikm
    project: legacy-app
    identity: search-mi
    subscriptionName: Sandbox
"""


def _at(text: str, needle: str, after: str = "") -> str:
    """``line:column`` of the first ``needle`` (after the first ``after``), 1-based."""
    start = text.index(after) if after else 0
    index = text.index(needle, start)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"{line}:{column}"


def _expected(path: Path) -> set[str]:
    t = TYPOS
    f = str(path)
    return {
        f"{f}:{_at(t, 'identites-rg')}: identities[0].resourceGroup: resource group "
        "'identites-rg' does not exist in subscription 11111111-1111-1111-1111-111111111111, or "
        "the signed-in caller cannot read it (did you mean 'identities-rg'?)",
        f"{f}:{_at(t, 'Contributer')}: identities[0].roleAssignments[0].role: unknown role "
        "'Contributer': no role definition with that name is assignable at "
        "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/sandbox-rg "
        "(did you mean 'Contributor'?)",
        f"{f}:{_at(t, f'/subscriptions/{GONE}')}: identities[0].roleAssignments[1].scope: "
        f"subscription {GONE} does not exist (SubscriptionNotFound)",
        f"{f}:{_at(t, '/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/sandbx-rg')}"
        ": identities[0].roleAssignments[2].scope: resource group 'sandbx-rg' does not exist in "
        "subscription 11111111-1111-1111-1111-111111111111, or the signed-in caller cannot read "
        "it (did you mean 'sandbox-rg'?)",
        f"{f}:{_at(t, 'Serach')}: serviceConnections[0].project: project 'Serach' does not exist "
        "in Azure DevOps organization 'contoso' (did you mean 'Search'?)",
        f"{f}:{_at(t, 'platfrom')}: serviceConnections[0].sharedWith[0]: project 'platfrom' (to "
        "share the connection with) does not exist in Azure DevOps organization 'contoso' "
        "(did you mean 'platform'?)",
        f"{f}:{_at(t, 'search-deplyo')}: serviceConnections[1].pipelinePermissions[0]: pipeline "
        "'search-deplyo' does not exist in project 'Search' of 'contoso' (did you mean "
        "'search-deploy'?)",
        f"{f}:{_at(t, 'nightly')}: serviceConnections[1].pipelinePermissions[1]: pipeline "
        "'nightly' does not exist in project 'Search' of 'contoso'",
        f"{f}:{_at(t, 'fabrikm')}: serviceConnections[2].organization: Azure DevOps "
        "organization 'fabrikm' does not exist or the signed-in caller cannot read it "
        "(VS800075: The organization 'fabrikm' does not exist.)",
        # no suggestion: the organisations known are those the specs name (listing the caller's
        # organisations takes another service), and 'contoso' is not close
    }


@pytest.fixture
def searchable(sim: Simulator) -> Simulator:
    """The default world with a project named as in the issue ('Search', capitalised)."""
    seed = default_seed()
    contoso = next(o for o in seed["devops"]["organizations"] if o["name"] == "contoso")
    contoso["projects"].append(
        {"name": "Search", "pipelines": [{"id": 7, "name": "search-deploy"}]}
    )
    sim.reset(seed)
    sim.clear_log()
    return sim


@pytest.mark.parametrize("command", ["plan", "drift", "apply"])
def test_every_misspelt_live_name_is_reported_at_once_and_nothing_is_written(
    searchable: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    spec = tmp_path / "typos.yaml"
    spec.write_text(TYPOS)
    extra = ["--auto-approve"] if command == "apply" else []
    code, out, err = run(capsys, command, str(spec), *target(searchable), *extra)
    assert code == 1, out + err
    # the run first says whom it signed in as; then the problems
    lines = [line for line in err.strip().splitlines() if not line.startswith("signed in to ")]
    expected = _expected(spec)
    assert set(lines[:-1]) == expected
    assert lines[-1] == f"{len(expected)} problems found"
    assert "Traceback" not in out + err
    assert writes(searchable) == []


def test_no_suggestion_when_nothing_is_close(
    searchable: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "far.yaml"
    spec.write_text(
        WALKTHROUGH.read_text()
        .replace("project: platform", "project: zzzz-unrelated")
        .replace("role: Contributor", "role: Bucket Wrangler")
    )
    code, _, err = run(capsys, "plan", str(spec), *target(searchable))
    assert code == 1
    assert "project 'zzzz-unrelated' does not exist in Azure DevOps organization 'contoso'\n" in err
    assert "unknown role 'Bucket Wrangler'" in err
    assert "did you mean" not in err


def test_misspelt_project_never_deletes_the_real_connection(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, portal: Portal
) -> None:
    # the measured fault: plan proposed a new connection in 'Serach' and deleting the real one
    assert run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")[0] == 0
    before = [c["id"] for c in portal.connections("contoso", "platform")]
    typo = tmp_path / "walkthrough.yaml"
    typo.write_text(WALKTHROUGH.read_text().replace("project: platform", "project: platfrom"))
    sim.clear_log()
    code, _, err = run(
        capsys, "apply", str(typo), *target(sim), "--auto-approve", "--allow-destroy"
    )
    assert code == 1
    assert f"{typo}:{_at(typo.read_text(), 'platfrom')}: serviceConnections[0].project:" in err
    assert "(did you mean 'platform'?)" in err
    assert writes(sim) == []
    assert [c["id"] for c in portal.connections("contoso", "platform")] == before


def test_custom_role_name_is_checked_against_the_live_catalogue(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "custom.yaml"
    spec.write_text(WALKTHROUGH.read_text().replace("role: Contributor", "role: Identity Auditr"))
    code, _, err = run(capsys, "plan", str(spec), *target(sim))
    assert code == 1
    assert "unknown role 'Identity Auditr'" in err
    assert "(did you mean 'Identity Auditor'?)" in err
    spec.write_text(WALKTHROUGH.read_text().replace("role: Contributor", "role: Identity Auditor"))
    assert run(capsys, "plan", str(spec), *target(sim))[0] == 0


def test_the_checks_cost_one_resource_group_list_per_subscription_and_nothing_else(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = Path(WALKTHROUGH).parent
    assert run(capsys, "plan", str(specs), *target(sim))[0] == 0
    ops: dict[str, int] = {}
    for request in sim.request_log():
        ops[request["op"]] = ops.get(request["op"], 0) + 1
    # the specs name two subscriptions; projects, pipelines and role definitions were already
    # read by the plan and are not read again
    assert ops["ResourceGroups_List"] == 2
    assert "Subscriptions_Get" not in ops
    assert ops["Projects_List"] == 2  # contoso, fabrikam
    assert ops["RoleDefinitions_List"] == 2
    assert "ResourceGroups_Get" not in ops
