"""``reconciler comment`` end to end against the simulator's HTTPS stand-ins of the Azure Repos
pull request threads API (7.1) and GitHub's issue comments API: create, edit in place on the
next run, the size cap, and the 403 and 404 messages. Live state is read through the
simulator's admin API (``/_sim/pullrequests``), never through the tool."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from reconciler.comment import comment_key, marker
from reconciler.sim.server import Simulator

from .conftest import REPO, WALKTHROUGH, run, target

ORG, PROJECT, REPO_ID, PR = "contoso", "platform", "6f2b3e0a-1c4d-4e5f-8a9b-0c1d2e3f4a5b", 7
GH_REPO, GH_PR = "contoso/app", 12


def _admin(sim: Simulator, method: str, path: str, body: Any = None) -> Any:
    r = requests.request(
        method,
        f"{sim.arm_url}/_sim/pullrequests{path}",
        json=body,
        verify=sim.connection["ca_bundle"],
    )
    r.raise_for_status()
    return r.json()


def _threads(sim: Simulator) -> list[dict[str, Any]]:
    state = _admin(sim, "GET", "")
    return [t for pr in state["azure_devops"] for t in pr["threads"]]


def _gh_comments(sim: Simulator) -> list[dict[str, Any]]:
    return list(_admin(sim, "GET", "")["github"])


def _plan(capsys: pytest.CaptureFixture[str], sim: Simulator, out: Path, *paths: str) -> Path:
    code, _, err = run(capsys, "plan", *paths, *target(sim), "--out", str(out))
    assert code == 0, err
    return out


@pytest.fixture
def ado_env(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> str:
    _admin(
        sim,
        "POST",
        "",
        {
            "platform": "azure-devops",
            "organization": ORG,
            "project": PROJECT,
            "repository": REPO_ID,
            "pullRequest": PR,
        },
    )
    token = str(
        _admin(sim, "POST", "/tokens", {"platform": "azure-devops", "write": True})["token"]
    )
    for name in ("GITHUB_ACTIONS", "GITHUB_TOKEN", "GITHUB_EVENT_PATH"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "TF_BUILD": "True",
        "SYSTEM_COLLECTIONURI": f"{sim.devops_url}/{ORG}/",
        "SYSTEM_TEAMPROJECT": PROJECT,
        "BUILD_REPOSITORY_ID": REPO_ID,
        "SYSTEM_PULLREQUEST_PULLREQUESTID": str(PR),
        "SYSTEM_PULLREQUEST_SOURCECOMMITID": "0123456789abcdef0123456789abcdef01234567",
        "BUILD_BUILDID": "4242",
        "BUILD_SOURCESDIRECTORY": str(REPO),
        "SYSTEM_ACCESSTOKEN": token,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(REPO)
    return token


@pytest.fixture
def gh_env(sim: Simulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    _admin(sim, "POST", "", {"platform": "github", "repository": GH_REPO, "pullRequest": GH_PR})
    token = str(
        _admin(sim, "POST", "/tokens", {"platform": "github", "repository": GH_REPO})["token"]
    )
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps({"pull_request": {"number": GH_PR, "head": {"sha": "feedface" * 5}}})
    )
    for name in ("TF_BUILD", "SYSTEM_ACCESSTOKEN", "SYSTEM_COLLECTIONURI"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": GH_REPO,
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_API_URL": f"{sim.arm_url}/github",
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_RUN_ID": "9001",
        "GITHUB_WORKSPACE": str(REPO),
        "GITHUB_TOKEN": token,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(REPO)
    return token


def _big_document(source: Path, identities: int, destructive: int) -> dict[str, Any]:
    """A saved plan for many identities: the walkthrough's changes, repeated per identity,
    plus ``destructive`` identity deletions."""
    document: dict[str, Any] = json.loads(source.read_text())
    template = json.dumps(document["changes"])
    changes: list[Any] = []
    for i in range(identities):
        changes += json.loads(template.replace("ado-pipeline-mi", f"mi-{i:05d}"))
    for i in range(destructive):
        gone = copy.deepcopy(changes[0])
        gone.update(
            action="delete",
            reason="not-in-spec",
            destructive=True,
            before={"name": f"old-{i:04d}-mi", "location": "westeurope"},
            after=None,
            key=f"11111111-1111-1111-1111-111111111111/identities-rg/old-{i:04d}-mi",
        )
        changes.append(gone)
    document["changes"] = changes
    document["summary"] = dict(
        document["summary"], create=len(changes) - destructive, delete=destructive
    )
    document["summary"]["destructive"] = destructive
    document["summary"]["total"] = len(changes)
    return document


# --- Azure Repos -----------------------------------------------------------------------------


def test_azure_devops_creates_then_edits_the_same_thread(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, ado_env: str
) -> None:
    plan = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    code, out, err = run(capsys, "comment", str(plan), *target(sim))
    assert code == 0, err
    assert out.startswith("created the plan comment on pull request 7")
    (thread,) = _threads(sim)
    first = thread["comments"][0]["content"]
    assert first.startswith("<!-- wif-reconciler comment ")
    assert "### Plan: 4 to create" in first
    assert "commit `0123456789ab`" in first and "`reconciler plan specs/walkthrough.yaml`" in first
    assert f"{ORG}/{PROJECT}/_build/results?buildId=4242" in first
    assert ado_env not in out + err + first

    # apply, plan again with the paths spelled differently: the same comment is edited
    assert run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")[0] == 0
    plan = _plan(capsys, sim, tmp_path / "again.json", str(WALKTHROUGH))
    sim.clear_log()
    code, out, err = run(capsys, "comment", str(plan), "--provider", "azure-devops", *target(sim))
    assert code == 0, err
    assert out.startswith("updated the plan comment on pull request 7 (comment 1/1)")
    (thread,) = _threads(sim)
    assert len(thread["comments"]) == 1
    assert "No changes. Live state matches the specs." in thread["comments"][0]["content"]
    ops = [r["op"] for r in sim.request_log()]
    assert ops == ["ConnectionData", "PullRequestThreads_List", "PullRequestThreadComments_Update"]


def test_azure_devops_other_spec_paths_get_their_own_thread(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, ado_env: str
) -> None:
    first = _plan(capsys, sim, tmp_path / "a.json", "specs/walkthrough.yaml")
    second = _plan(capsys, sim, tmp_path / "b.json", "specs/teams")
    assert run(capsys, "comment", str(first), *target(sim))[0] == 0
    assert run(capsys, "comment", str(second), *target(sim))[0] == 0
    assert run(capsys, "comment", str(first), *target(sim))[0] == 0
    threads = _threads(sim)
    assert len(threads) == 2
    assert all(len(t["comments"]) == 1 for t in threads)


def test_azure_devops_a_marker_in_someone_elses_thread_is_not_ours(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, ado_env: str
) -> None:
    """Another author on the pull request starts a thread with the tool's marker (it derives
    from public names) before the tool's first run: the tool never writes the plan into it,
    where that author could later edit it."""
    plan = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    document = json.loads(plan.read_text())
    key = comment_key(document["owner"], document["spec_paths"], str(REPO))
    mallory = _admin(sim, "POST", "/tokens", {"platform": "azure-devops", "user": "mallory"})
    forged = marker(key) + "\nNo changes."
    requests.post(
        f"{sim.devops_url}/{ORG}/{PROJECT}/_apis/git/repositories/{REPO_ID}/pullRequests/{PR}"
        "/threads",
        params={"api-version": "7.1"},
        json={"comments": [{"parentCommentId": 0, "content": forged, "commentType": 1}]},
        headers={"Authorization": f"Bearer {mallory['token']}"},
        verify=sim.connection["ca_bundle"],
    ).raise_for_status()
    code, out, err = run(capsys, "comment", str(plan), *target(sim))
    assert code == 0, err
    assert out.startswith("created the plan comment")
    code, out, err = run(capsys, "comment", str(plan), *target(sim))
    assert code == 0, err
    # the same plan within the same minute: the body is identical, nothing is sent
    assert out.startswith("the plan comment on pull request 7 (comment 2/1) is up to date")
    first, ours = _threads(sim)
    assert first["comments"][0]["content"] == forged  # untouched
    assert first["comments"][0]["author"]["displayName"] == "mallory"
    assert "### Plan: 4 to create" in ours["comments"][0]["content"]


def test_github_a_marker_in_a_persons_comment_is_not_ours(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, gh_env: str
) -> None:
    plan = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    document = json.loads(plan.read_text())
    key = comment_key(document["owner"], document["spec_paths"], str(REPO))
    mallory = _admin(
        sim, "POST", "/tokens", {"platform": "github", "repository": GH_REPO, "user": "mallory"}
    )
    forged = marker(key) + "\nNo changes."
    requests.post(
        f"{sim.arm_url}/github/repos/{GH_REPO}/issues/{GH_PR}/comments",
        json={"body": forged},
        headers={"Authorization": f"Bearer {mallory['token']}"},
        verify=sim.connection["ca_bundle"],
    ).raise_for_status()
    for _ in range(2):
        code, _, err = run(capsys, "comment", str(plan), *target(sim))
        assert code == 0, err
    first, ours = _gh_comments(sim)
    assert first["body"] == forged and first["user"]["login"] == "mallory"
    assert ours["user"]["login"] == "github-actions[bot]" and "### Plan:" in ours["body"]


def test_azure_devops_without_job_token_uses_an_entra_token(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    ado_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SYSTEM_ACCESSTOKEN")
    plan = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    code, _, err = run(capsys, "comment", str(plan), *target(sim))
    assert code == 0, err
    assert len(_threads(sim)) == 1


@pytest.mark.parametrize(
    "collection", ["https://dev.azure.com/contoso/", "https://127.0.0.2:{port}/devops/contoso/"]
)
def test_azure_devops_entra_token_only_for_the_targets_devops_host(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    ado_env: str,
    monkeypatch: pytest.MonkeyPatch,
    collection: str,
) -> None:
    """Without a job token the comment uses the tool's own credential, whose token goes only
    to the target's Azure DevOps: a collection URI elsewhere is refused before any token."""
    monkeypatch.delenv("SYSTEM_ACCESSTOKEN")
    plan = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    port = sim.devops_url.split(":")[2].split("/")[0]
    monkeypatch.setenv("SYSTEM_COLLECTIONURI", collection.format(port=port))
    sim.clear_log()
    code, _, err = run(capsys, "comment", str(plan), *target(sim))
    assert code == 1
    assert "refusing to send a connection file token for Azure DevOps" in err
    assert sim.request_log() == []  # not even a token request
    assert _threads(sim) == []


def test_azure_devops_size_cap_keeps_summary_and_destructive_changes(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, ado_env: str
) -> None:
    source = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    big = tmp_path / "big.json"
    big.write_text(json.dumps(_big_document(source, 600, destructive=30)))
    code, _, err = run(capsys, "comment", str(big), *target(sim))
    assert code == 0, err
    (thread,) = _threads(sim)
    content = thread["comments"][0]["content"]
    assert len(content) <= 150_000
    assert "#### ⚠️ 30 destructive changes" in content
    assert all(f"identity old-{i:04d}-mi" in content for i in range(30))
    assert "Detail left out" in content and "identity sections" in content
    assert "_build/results?buildId=4242" in content  # where the full plan is
    assert content.rstrip().endswith("</sub>")  # the footer survives the cut


def test_azure_devops_403_names_the_missing_permission(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    ado_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    reader = str(
        _admin(sim, "POST", "/tokens", {"platform": "azure-devops", "write": False})["token"]
    )
    monkeypatch.setenv("SYSTEM_ACCESSTOKEN", reader)
    code, out, err = run(capsys, "comment", str(plan), *target(sim))
    assert code == 1
    assert "Contribute to pull requests" in err and "(403)" in err and "TF401027" in err
    assert reader not in out + err
    assert _threads(sim) == []


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("BUILD_REPOSITORY_ID", "no-such-repo", "TF401019"),
        ("SYSTEM_PULLREQUEST_PULLREQUESTID", "99", "TF401180"),
        ("SYSTEM_TEAMPROJECT", "nowhere", "TF200016"),
    ],
)
def test_azure_devops_404_says_what_was_not_found(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    ado_env: str,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    said: str,
) -> None:
    plan = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    monkeypatch.setenv(variable, value)
    code, out, err = run(capsys, "comment", str(plan), *target(sim))
    assert code == 1
    assert "(404)" in err and said in err and value in err
    assert ado_env not in out + err


def test_azure_devops_outside_a_pull_request_build(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    ado_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    monkeypatch.delenv("SYSTEM_PULLREQUEST_PULLREQUESTID")
    code, _, err = run(capsys, "comment", str(plan), *target(sim))
    assert code == 1 and "builds no pull request" in err


# --- GitHub ----------------------------------------------------------------------------------


def test_github_creates_then_edits_the_same_comment_past_the_first_page(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, gh_env: str
) -> None:
    plan = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    # a busy pull request: 120 comments by others first, so ours is on the second page
    for i in range(120):
        requests.post(
            f"{sim.arm_url}/github/repos/{GH_REPO}/issues/{GH_PR}/comments",
            json={"body": f"looks good {i}"},
            headers={"Authorization": f"Bearer {gh_env}"},
            verify=sim.connection["ca_bundle"],
        ).raise_for_status()
    code, out, err = run(capsys, "comment", str(plan), *target(sim))
    assert code == 0, err
    assert out.startswith(f"created the plan comment on {GH_REPO}#{GH_PR}")
    ours = [c for c in _gh_comments(sim) if c["body"].startswith("<!-- wif-reconciler")]
    assert len(ours) == 1
    body = ours[0]["body"]
    assert "### Plan: 4 to create" in body and "commit `feedfacefeed`" in body
    assert "https://github.example/contoso/app/actions/runs/9001" in body

    assert run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")[0] == 0
    plan = _plan(capsys, sim, tmp_path / "again.json", "./specs/walkthrough.yaml")
    sim.clear_log()
    code, out, err = run(capsys, "comment", str(plan), *target(sim))
    assert code == 0, err
    assert out.startswith("updated the plan comment")
    comments = _gh_comments(sim)
    assert len(comments) == 121
    ours = [c for c in comments if c["body"].startswith("<!-- wif-reconciler")]
    assert len(ours) == 1 and "No changes." in ours[0]["body"]
    ops = [r["op"] for r in sim.request_log()]
    assert ops == ["IssueComments_List", "IssueComments_List", "IssueComments_Update"]
    assert gh_env not in out + err


def test_github_size_cap(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, gh_env: str
) -> None:
    source = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    big = tmp_path / "big.json"
    big.write_text(json.dumps(_big_document(source, 300, destructive=5)))
    code, _, err = run(capsys, "comment", str(big), *target(sim))
    assert code == 0, err
    (comment,) = _gh_comments(sim)
    assert 60_000 < len(comment["body"]) <= 65_536
    assert "#### ⚠️ 5 destructive changes" in comment["body"]
    assert "Detail left out" in comment["body"]


def test_github_403_names_the_missing_permission(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    gh_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    reader = _admin(
        sim, "POST", "/tokens", {"platform": "github", "repository": GH_REPO, "write": False}
    )
    monkeypatch.setenv("GITHUB_TOKEN", reader["token"])
    code, out, err = run(capsys, "comment", str(plan), *target(sim))
    assert code == 1
    assert "pull-requests: write" in err and "(403)" in err
    assert "Resource not accessible by integration" in err
    assert reader["token"] not in out + err
    assert _gh_comments(sim) == []


def test_github_404_names_the_repository(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    gh_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    monkeypatch.setenv("GITHUB_REPOSITORY", "contoso/elsewhere")
    code, out, err = run(capsys, "comment", str(plan), *target(sim))
    assert code == 1
    assert "(404)" in err and "contoso/elsewhere" in err and "Not Found" in err
    assert gh_env not in out + err


def test_github_token_only_over_tls(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    gh_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = _plan(capsys, sim, tmp_path / "plan.json", "specs/walkthrough.yaml")
    monkeypatch.setenv("GITHUB_API_URL", sim.arm_url.replace("https://", "http://") + "/github")
    sim.clear_log()
    code, _, err = run(capsys, "comment", str(plan), *target(sim))
    assert code == 1 and "GITHUB_API_URL must be an https:// URL" in err
    assert sim.request_log() == []
