"""The pull-request comment, as values: which platform, which pull request, the hidden marker
that finds our earlier comment, the footer and the body under the platform's size limit.

Pure: every input (the pipeline's variables, the event payload, the clock's reading) is passed
in; ``reconciler.comment_cli`` reads them and ``reconciler.providers.pullrequests`` posts.

Facts and sources:
- Azure Pipelines predefined variables: ``TF_BUILD``, ``SYSTEM_COLLECTIONURI``,
  ``SYSTEM_TEAMPROJECT``, ``BUILD_REPOSITORY_ID``, ``SYSTEM_PULLREQUEST_PULLREQUESTID``,
  ``SYSTEM_PULLREQUEST_SOURCECOMMITID``, ``BUILD_SOURCEVERSION``, ``BUILD_BUILDID``
  (learn.microsoft.com/azure/devops/pipelines/build/variables).
- GitHub Actions default variables: ``GITHUB_ACTIONS``, ``GITHUB_REPOSITORY``,
  ``GITHUB_EVENT_PATH``, ``GITHUB_API_URL``, ``GITHUB_SERVER_URL``, ``GITHUB_RUN_ID``,
  ``GITHUB_SHA`` (docs.github.com/actions/learn-github-actions/variables).
- Size limits: GitHub rejects a comment body over 65,536 characters ("body is too long");
  Azure DevOps publishes none, Atlantis uses 150,000 (runatlantis/atlantis
  ``server/events/vcs/azuredevops/client.go``).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from reconciler.errors import ConfigError
from reconciler.render.markdown import render_markdown

AZURE_DEVOPS: Final = "azure-devops"
GITHUB: Final = "github"
PROVIDERS: Final = (AZURE_DEVOPS, GITHUB)
# characters per comment body (see the module docstring for the sources)
LIMITS: Final = {GITHUB: 65_536, AZURE_DEVOPS: 150_000}
GITHUB_API: Final = "https://api.github.com"
_MARKER_TAG: Final = "wif-reconciler comment"


def detect_provider(env: Mapping[str, str]) -> str:
    """``azure-devops`` inside Azure Pipelines (``TF_BUILD=True``), ``github`` inside GitHub
    Actions (``GITHUB_ACTIONS=true``); ``ConfigError`` anywhere else."""
    if env.get("TF_BUILD", "").lower() == "true":
        return AZURE_DEVOPS
    if env.get("GITHUB_ACTIONS", "").lower() == "true":
        return GITHUB
    raise ConfigError(
        "cannot tell which pull request to comment on: not inside Azure Pipelines (TF_BUILD) "
        "or GitHub Actions (GITHUB_ACTIONS); pass --provider azure-devops|github and set that "
        "platform's variables"
    )


def _require(env: Mapping[str, str], names: Sequence[str], why: str) -> dict[str, str]:
    missing = [n for n in names if not env.get(n, "").strip()]
    if missing:
        raise ConfigError(f"{why}: set {', '.join(missing)}")
    return {n: env[n].strip() for n in names}


def _https_base(url: str, name: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        # the token goes in a header: only ever over TLS
        raise ConfigError(f"{name} must be an https:// URL, not {url!r}")
    return url.rstrip("/")


@dataclass(frozen=True)
class AzureDevOpsPullRequest:
    """Where an Azure Repos pull request lives, from the pipeline's predefined variables."""

    collection_uri: str  # https://dev.azure.com/{organization} (no trailing slash)
    project: str  # name or id
    repository_id: str
    pull_request_id: int

    @property
    def threads_url(self) -> str:
        from urllib.parse import quote

        return (
            f"{self.collection_uri}/{quote(self.project, safe='')}/_apis/git/repositories/"
            f"{quote(self.repository_id, safe='')}/pullRequests/{self.pull_request_id}/threads"
        )


@dataclass(frozen=True)
class GitHubPullRequest:
    """Where a GitHub pull request lives, from the workflow's variables and event payload."""

    api_url: str  # https://api.github.com, or https://HOST/api/v3 on GitHub Enterprise Server
    repository: str  # owner/name
    number: int


def azure_devops_pull_request(env: Mapping[str, str]) -> AzureDevOpsPullRequest:
    """The pull request a pipeline run builds; ``ConfigError`` naming what is missing."""
    values = _require(
        env,
        ("SYSTEM_COLLECTIONURI", "SYSTEM_TEAMPROJECT", "BUILD_REPOSITORY_ID"),
        "Azure Pipelines variables missing",
    )
    pr = env.get("SYSTEM_PULLREQUEST_PULLREQUESTID", "").strip()
    if not pr:
        raise ConfigError(
            "this run builds no pull request (SYSTEM_PULLREQUEST_PULLREQUESTID is empty): "
            "run `reconciler comment` in a pull-request validation build"
        )
    if not pr.isdigit():
        raise ConfigError(f"SYSTEM_PULLREQUEST_PULLREQUESTID must be a number, not {pr!r}")
    return AzureDevOpsPullRequest(
        _https_base(values["SYSTEM_COLLECTIONURI"], "SYSTEM_COLLECTIONURI"),
        values["SYSTEM_TEAMPROJECT"],
        values["BUILD_REPOSITORY_ID"],
        int(pr),
    )


def github_pull_request(env: Mapping[str, str], event: Mapping[str, Any]) -> GitHubPullRequest:
    """The pull request of a ``pull_request``/``pull_request_target`` (or PR ``issue_comment``)
    event; ``event`` is the parsed ``$GITHUB_EVENT_PATH`` file."""
    repository = _require(env, ("GITHUB_REPOSITORY",), "GitHub Actions variables missing")[
        "GITHUB_REPOSITORY"
    ]
    if repository.count("/") != 1 or not all(repository.split("/")):
        raise ConfigError(f"GITHUB_REPOSITORY must be owner/name, not {repository!r}")
    number: Any = None
    pull = event.get("pull_request")
    issue = event.get("issue")
    if isinstance(pull, Mapping):
        number = pull.get("number")
    elif isinstance(issue, Mapping) and isinstance(issue.get("pull_request"), Mapping):
        number = issue.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise ConfigError(
            "the workflow's event is not a pull request (no pull_request.number in "
            "GITHUB_EVENT_PATH): run `reconciler comment` on: pull_request"
        )
    api = _https_base(env.get("GITHUB_API_URL", "").strip() or GITHUB_API, "GITHUB_API_URL")
    return GitHubPullRequest(api, repository, number)


def run_url(provider: str, env: Mapping[str, str]) -> str | None:
    """The web page of this pipeline run (where the saved plan artifact is), if known."""
    if provider == GITHUB:
        server, repo, run = (
            env.get("GITHUB_SERVER_URL", "").rstrip("/"),
            env.get("GITHUB_REPOSITORY", ""),
            env.get("GITHUB_RUN_ID", ""),
        )
        return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else None
    collection, project, build = (
        env.get("SYSTEM_COLLECTIONURI", "").rstrip("/"),
        env.get("SYSTEM_TEAMPROJECT", ""),
        env.get("BUILD_BUILDID", ""),
    )
    if collection and project and build:
        from urllib.parse import quote

        return f"{collection}/{quote(project, safe='')}/_build/results?buildId={build}"
    return None


def commit_of(provider: str, env: Mapping[str, str], event: Mapping[str, Any]) -> str:
    """The commit under review: the pull request's head, not the merge commit CI builds."""
    if provider == GITHUB:
        pull = event.get("pull_request")
        head = pull.get("head") if isinstance(pull, Mapping) else None
        sha = head.get("sha") if isinstance(head, Mapping) else None
        return str(sha or env.get("GITHUB_SHA", ""))
    return env.get("SYSTEM_PULLREQUEST_SOURCECOMMITID") or env.get("BUILD_SOURCEVERSION", "")


def canonical_spec_path(path: str, root: str | None = None) -> str:
    """One spelling for a spec path: ``./specs/``, ``specs`` and ``specs\\`` are the same, and
    an absolute path under ``root`` (the checkout) is taken relative to it."""
    text = path.strip().replace("\\", "/")
    if root:
        base = posixpath.normpath(root.replace("\\", "/"))
        if posixpath.isabs(text) and (text == base or text.startswith(base.rstrip("/") + "/")):
            text = posixpath.relpath(text, base)
    text = posixpath.normpath(text) if text else "."
    return text


def comment_key(owner: str, spec_paths: Sequence[str], root: str | None = None) -> str:
    """A short digest of the owner and the (canonical, sorted) spec paths: one comment per
    pair, so two shards of one repository keep a comment each."""
    paths = sorted({canonical_spec_path(p, root) for p in spec_paths})
    raw = json.dumps({"owner": owner.strip(), "specs": paths}, sort_keys=True)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:24]


def marker(key: str) -> str:
    """The hidden first line of every comment this tool posts (an HTML comment: not rendered
    by GitHub or Azure DevOps Markdown)."""
    return f"<!-- {_MARKER_TAG} {key} -->"


def is_ours(body: str, key: str) -> bool:
    """Whether a comment body was posted for ``key``: it *starts* with the marker, so a reply
    that quotes our comment is never mistaken for it."""
    return body.lstrip().startswith(marker(key))


def command_of(document: Mapping[str, Any]) -> str:
    """The command that made the document, as far as the document says (mode and paths)."""
    mode = str(document.get("mode") or "plan")
    paths = [str(p) for p in document.get("spec_paths") or []]
    return shlex.join(["reconciler", mode, *paths])


def footer(*, commit: str, command: str, when: str, version: str, run: str | None) -> str:
    """One small line under the comment: commit, command, time and tool version."""
    parts = [f"commit `{commit[:12]}`" if commit else "commit unknown"]
    parts.append(f"`{command.replace('`', '')}`")
    parts.append(when)
    parts.append(f"wif-reconciler {version}")
    if run:
        parts.append(f"[pipeline run]({run})")
    return "<sub>" + " · ".join(parts) + "</sub>"


def compose(
    document: Mapping[str, Any], *, key: str, limit: int, footer_line: str, run: str | None
) -> str:
    """The whole comment body, at most ``limit`` characters: marker, the Markdown rendering
    (shortened by ``render_markdown`` to what is left after the marker and footer) and footer."""
    head = marker(key) + "\n"
    tail = "\n---\n" + footer_line + "\n"
    room = limit - len(head) - len(tail)
    if room < 1000:
        raise ConfigError(f"a comment limit of {limit} characters leaves no room for the plan")
    body = render_markdown(document, max_chars=room, full_plan_at=run)
    return head + body + tail


@dataclass(frozen=True)
class PostedComment:
    """A comment on the platform: its ids, its body and where a person reads it."""

    id: str  # GitHub: the comment id; Azure DevOps: "{threadId}/{commentId}"
    body: str
    url: str = ""


class PullRequestComments(Protocol):
    """What ``upsert`` needs from a platform (``reconciler.providers.pullrequests``)."""

    def list(self) -> list[PostedComment]: ...
    def create(self, body: str) -> PostedComment: ...
    def update(self, comment: PostedComment, body: str) -> PostedComment: ...


def upsert(comments: PullRequestComments, key: str, body: str) -> tuple[str, PostedComment]:
    """Edit the earliest comment posted for ``key`` in place, or create one.

    Returns ``("created" | "updated" | "unchanged", comment)``: an identical body is not
    sent again (no notification, no edit history entry)."""
    for existing in comments.list():
        if is_ours(existing.body, key):
            if existing.body == body:
                return "unchanged", existing
            return "updated", comments.update(existing, body)
    return "created", comments.create(body)
