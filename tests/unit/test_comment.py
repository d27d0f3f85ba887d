"""The pure parts of ``reconciler comment`` and of validate's annotation formats."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler import comment
from reconciler.comment import PostedComment
from reconciler.errors import ConfigError, Problem
from reconciler.plan import make_plan
from reconciler.render.document import to_document
from reconciler.render.markdown import render_markdown
from reconciler.render.problems import render_problems

sys.path.insert(0, str(Path(__file__).parents[1] / "cases"))
from caseload import load_case


def _document(name: str) -> dict[str, Any]:
    desired, live, args = load_case(name)
    plan = make_plan(desired, live, force=args.get("force", False))
    return to_document(plan, mode=args.get("mode", "plan"))


# --- the marker ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        ["specs"],
        ["./specs/"],
        ["specs/", "specs"],
        ["specs\\"],
        ["/repo/checkout/specs"],
        ["./specs/../specs"],
    ],
)
def test_comment_key_is_independent_of_path_spelling(spelling: list[str]) -> None:
    assert comment.comment_key("team", spelling, "/repo/checkout") == comment.comment_key(
        "team", ["specs"], "/repo/checkout"
    )


def test_comment_key_order_independent_and_distinct_per_owner_and_paths() -> None:
    a = comment.comment_key("team", ["b.yaml", "a.yaml"])
    assert a == comment.comment_key("team", ["a.yaml", "./b.yaml"])
    assert a != comment.comment_key("other", ["a.yaml", "b.yaml"])
    assert a != comment.comment_key("team", ["a.yaml"])


def test_only_a_body_that_starts_with_the_marker_is_ours() -> None:
    key = comment.comment_key("team", ["specs"])
    assert comment.is_ours(comment.marker(key) + "\n### Plan", key)
    assert not comment.is_ours("> " + comment.marker(key) + "\n> quoted", key)
    assert not comment.is_ours(comment.marker("0" * 24), key)


# --- where the pull request is -----------------------------------------------------------------


def test_provider_detected_from_the_pipeline() -> None:
    assert comment.detect_provider({"TF_BUILD": "True"}) == "azure-devops"
    assert comment.detect_provider({"GITHUB_ACTIONS": "true"}) == "github"
    with pytest.raises(ConfigError, match="--provider"):
        comment.detect_provider({})


def test_azure_devops_pull_request_from_predefined_variables() -> None:
    env = {
        "SYSTEM_COLLECTIONURI": "https://dev.azure.com/contoso/",
        "SYSTEM_TEAMPROJECT": "Platform Team",
        "BUILD_REPOSITORY_ID": "repo-guid",
        "SYSTEM_PULLREQUEST_PULLREQUESTID": "17",
    }
    pr = comment.azure_devops_pull_request(env)
    assert pr.threads_url == (
        "https://dev.azure.com/contoso/Platform%20Team/_apis/git/repositories/repo-guid/"
        "pullRequests/17/threads"
    )
    with pytest.raises(ConfigError, match="BUILD_REPOSITORY_ID"):
        comment.azure_devops_pull_request({**env, "BUILD_REPOSITORY_ID": ""})
    with pytest.raises(ConfigError, match="https://"):
        comment.azure_devops_pull_request({**env, "SYSTEM_COLLECTIONURI": "http://tfs/coll"})


def test_github_pull_request_from_the_event() -> None:
    env = {"GITHUB_REPOSITORY": "contoso/app"}
    assert comment.github_pull_request(env, {"pull_request": {"number": 3}}).number == 3
    pr = comment.github_pull_request(
        {**env, "GITHUB_API_URL": "https://ghe.example/api/v3/"},
        {"issue": {"number": 4, "pull_request": {"url": "x"}}},
    )
    assert (pr.api_url, pr.number) == ("https://ghe.example/api/v3", 4)
    assert comment.github_pull_request(env, {"pull_request": {"number": 3}}).api_url == (
        "https://api.github.com"
    )
    with pytest.raises(ConfigError, match="not a pull request"):
        comment.github_pull_request(env, {"issue": {"number": 4}})  # a plain issue
    with pytest.raises(ConfigError, match="owner/name"):
        comment.github_pull_request({"GITHUB_REPOSITORY": "app"}, {"pull_request": {"number": 3}})


def test_run_url_and_commit() -> None:
    gh = {
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_RUN_ID": "9",
    }
    assert comment.run_url("github", gh) == "https://github.com/o/r/actions/runs/9"
    assert (
        comment.commit_of(
            "github", {"GITHUB_SHA": "merge"}, {"pull_request": {"head": {"sha": "head"}}}
        )
        == "head"
    )
    ado = {
        "SYSTEM_COLLECTIONURI": "https://dev.azure.com/contoso/",
        "SYSTEM_TEAMPROJECT": "platform",
        "BUILD_BUILDID": "5",
    }
    assert comment.run_url("azure-devops", ado) == (
        "https://dev.azure.com/contoso/platform/_build/results?buildId=5"
    )
    assert comment.run_url("azure-devops", {}) is None


# --- the body ----------------------------------------------------------------------------------


def test_compose_stays_under_the_limit_with_marker_and_footer() -> None:
    document = _document("waves_two_identities_in_parallel")
    document["spec_paths"] = ["specs"]
    key = comment.comment_key("platform-team", ["specs"])
    footer = comment.footer(
        commit="0123456789abcdef",
        command=comment.command_of(document),
        when="2026-01-01 00:00 UTC",
        version="1.2.3",
        run="https://example/run/1",
    )
    assert footer == (
        "<sub>commit `0123456789ab` · `reconciler plan specs` · 2026-01-01 00:00 UTC · "
        "wif-reconciler 1.2.3 · [pipeline run](https://example/run/1)</sub>"
    )
    full = comment.compose(document, key=key, limit=100_000, footer_line=footer, run=None)
    assert "left out" not in full
    body = comment.compose(
        document, key=key, limit=2_500, footer_line=footer, run="https://example/run/1"
    )
    assert len(body) <= 2_500
    assert body.startswith(comment.marker(key) + "\n### Plan:")
    assert body.endswith(footer + "\n")
    assert "The full plan: https://example/run/1" in body


class FakeComments:
    def __init__(self, bodies: list[str]) -> None:
        self.items = [PostedComment(str(i), b) for i, b in enumerate(bodies)]
        self.calls: list[str] = []

    def list(self) -> list[PostedComment]:
        self.calls.append("list")
        return list(self.items)

    def create(self, body: str) -> PostedComment:
        self.calls.append("create")
        self.items.append(PostedComment(str(len(self.items)), body))
        return self.items[-1]

    def update(self, existing: PostedComment, body: str) -> PostedComment:
        self.calls.append(f"update {existing.id}")
        return PostedComment(existing.id, body)


def test_upsert_edits_the_earliest_of_ours_else_creates() -> None:
    key = comment.comment_key("team", ["specs"])
    other = comment.comment_key("team", ["other"])
    fake = FakeComments(["hello", comment.marker(other) + "\nx", comment.marker(key) + "\nold"])
    outcome, posted = comment.upsert(fake, key, comment.marker(key) + "\nnew")
    assert (outcome, posted.id, fake.calls) == ("updated", "2", ["list", "update 2"])
    fake = FakeComments(["hello"])
    assert comment.upsert(fake, key, comment.marker(key) + "\nnew")[0] == "created"
    fake = FakeComments([comment.marker(key) + "\nsame"])
    assert comment.upsert(fake, key, comment.marker(key) + "\nsame")[0] == "unchanged"


# --- Markdown under a cap ----------------------------------------------------------------------


def _many(destructive: int, identities: int) -> dict[str, Any]:
    document = _document("waves_two_identities_in_parallel")
    changes = []
    for i in range(identities):
        for change in document["changes"]:
            clone = {**change, "key": change["key"].replace("-mi", f"-{i}-mi")}
            if clone.get("after") and clone["after"].get("identity"):
                clone["after"] = {**clone["after"], "identity": clone["after"]["identity"] + str(i)}
            changes.append(clone)
    for i in range(destructive):
        changes.append(
            {
                "kind": "identity",
                "key": f"s/rg/gone-{i}-mi",
                "address": f"identity:s/rg/gone-{i}-mi",
                "action": "delete",
                "reason": "not-in-spec",
                "detail": "",
                "before": {"name": f"gone-{i}-mi"},
                "after": None,
                "fields": [],
                "destructive": True,
            }
        )
    document["changes"] = changes
    document["notices"] = [
        {"level": "info", "message": f"note {i}", "address": None} for i in range(5)
    ]
    return document


def test_cap_drops_context_before_sections_and_never_destructive_changes() -> None:
    document = _many(destructive=3, identities=20)
    full = render_markdown(document, max_chars=10**7)
    assert "#   new in spec" in full and "note 0" in full
    text = render_markdown(document, max_chars=len(full) - 200)
    assert "#   new in spec" not in text and "note 0" not in text  # context went first
    assert "5 informational notices" in text
    assert all(f"identity gone-{i}-mi" in text for i in range(3))
    small = render_markdown(document, max_chars=3_000)
    assert len(small) <= 3_000
    assert all(f"identity gone-{i}-mi" in small for i in range(3))
    assert "identity sections" in small


def test_cap_shortens_the_destructive_list_only_when_it_alone_does_not_fit() -> None:
    document = _many(destructive=400, identities=1)
    text = render_markdown(document, max_chars=8_000)
    assert len(text) <= 8_000
    assert "400 destructive changes" in text
    assert "more destructive changes in the full plan" in text
    assert "destructive changes from the list above" in text


def test_drift_sections_use_the_table_words() -> None:
    text = render_markdown(_document("drift_out_of_band_edits"))
    assert "`+` missing in live" in text and "1 missing in live" in text
    assert "to create" not in text and "to update" not in text


# --- annotations -------------------------------------------------------------------------------

_NASTY = Problem("dir,x/a:b.yaml", 3, 5, "identities[0].name", "100% bad\r\nsecond: line, too")


def test_github_workflow_command_escaping() -> None:
    assert render_problems([_NASTY], "github") == (
        "::error file=dir%2Cx/a%3Ab.yaml,line=3,col=5,title=identities[0].name::"
        "identities[0].name: 100%25 bad%0D%0Asecond: line, too\n"
    )


def test_azure_pipelines_logging_command_escaping() -> None:
    nasty = Problem("a;b].yaml", 3, 5, "", "100% bad\r\nx;y]")
    assert render_problems([nasty], "azure-devops") == (
        "##vso[task.logissue type=error;sourcepath=a%3Bb%5D.yaml;linenumber=3;columnnumber=5]"
        "100%AZP25 bad%0D%0Ax;y]\n"
    )


def test_problems_as_json() -> None:
    import json

    data = json.loads(render_problems([_NASTY], "json"))
    assert data["valid"] is False and data["count"] == 1
    assert data["problems"][0] == {
        "file": "dir,x/a:b.yaml",
        "line": 3,
        "column": 5,
        "path": "identities[0].name",
        "message": "100% bad\r\nsecond: line, too",
    }


def test_validate_json_on_valid_specs(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from reconciler.cli import main

    specs = Path(__file__).parents[2] / "specs" / "walkthrough.yaml"
    assert main(["validate", str(specs), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is True and data["problems"] == [] and data["summary"].startswith("valid:")


@pytest.mark.parametrize(
    "url",
    [
        "https://elsewhere.example/repos/o/r",
        "http://api.github.com/repos",
        "https://api.github.com:8443/x",
    ],
)
def test_the_token_never_leaves_the_api_host(url: str) -> None:
    from reconciler.errors import PermanentError
    from reconciler.providers.pullrequests import _Http

    http = _Http("https://api.github.com", "Bearer secret-value", verify=True)
    with pytest.raises(PermanentError, match="refusing to send the token") as caught:
        http.send("GET", url, what="listing comments")
    assert "secret-value" not in str(caught.value)


def test_validate_annotates_role_name_warnings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from reconciler.cli import main

    source = Path(__file__).parents[2] / "specs" / "walkthrough.yaml"
    spec = tmp_path / "walkthrough.yaml"
    spec.write_text(source.read_text().replace("role: Contributor", "role: Contributer"))
    assert main(["validate", str(spec), "--format", "github"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"::warning file={spec},line=")
    assert "Contributer" in first and "warning: " not in first
    assert main(["validate", str(spec), "--format", "azure-devops"]) == 0
    assert capsys.readouterr().out.startswith("##vso[task.logissue type=warning;sourcepath=")
