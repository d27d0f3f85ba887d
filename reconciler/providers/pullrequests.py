"""Pull-request comments over HTTP: Azure Repos pull request threads and GitHub issue comments.

Both satisfy ``reconciler.comment.PullRequestComments``. The token is sent only over TLS and
only to the configured API host: redirects are not followed, and a pagination link that points
anywhere else is refused. It never appears in an error message.

- Azure DevOps, api-version 7.1 (learn.microsoft.com/rest/api/azure/devops/git/pull-request-threads
  and .../pull-request-thread-comments): ``GET {collection}/_apis/connectionData`` says who the
  token is; ``GET .../threads`` lists every thread (not paged);
  ``POST .../threads`` with ``{"comments": [{"parentCommentId": 0, "content", "commentType": 1}],
  "status": 1}`` creates one; ``PATCH .../threads/{threadId}/comments/{commentId}`` with
  ``{"content"}`` edits a comment. A build identity without "Contribute to pull requests"
  gets 403 ``TF401027 ... PullRequestContribute``.
- GitHub REST 2022-11-28 (docs.github.com/rest/issues/comments): ``GET
  /repos/{owner}/{repo}/issues/{n}/comments?per_page=100`` paged by the ``Link`` header;
  ``POST`` the same path with ``{"body"}``; ``PATCH /repos/{owner}/{repo}/issues/comments/{id}``.
  A ``GITHUB_TOKEN`` without ``pull-requests: write`` gets 403 "Resource not accessible by
  integration"; an unknown repository or one the token cannot see gets 404.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

import requests

from reconciler.comment import AzureDevOpsPullRequest, GitHubPullRequest, PostedComment
from reconciler.errors import AuthError, NotFoundError, PermanentError, ProviderError

_TIMEOUT: Final = 30.0
_ADO_VERSION: Final = "7.1"
_GITHUB_VERSION: Final = "2022-11-28"
_MAX_PAGES: Final = 1000


def _server_message(response: requests.Response) -> str:
    """The service's own words, short (Azure DevOps ``message``; GitHub ``message`` and the
    first validation error)."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip().splitlines()[0][:300] if response.text else ""
    if not isinstance(body, dict):
        return ""
    message = str(body.get("message") or "")
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        detail = errors[0].get("message") or errors[0].get("code")
        if detail:
            message = f"{message}: {detail}" if message else str(detail)
    return message[:500]


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return a.scheme == "https" and (a.hostname, a.port) == (b.hostname, b.port)


class _Http:
    """One session; every request goes to ``base``'s host over TLS, redirects refused."""

    def __init__(self, base: str, authorization: str, *, verify: str | bool) -> None:
        self.base = base
        self._session = requests.Session()
        # per request: a session-level CA loses to $REQUESTS_CA_BUNDLE in requests
        self._verify = verify
        self._authorization = authorization

    def send(
        self, method: str, url: str, *, what: str, json: Any = None, params: Any = None
    ) -> requests.Response:
        if not _same_origin(url, self.base):
            raise PermanentError(
                f"refusing to send the token to {urlsplit(url).scheme}://{urlsplit(url).netloc} "
                f"while {what}: only {self.base} is trusted with it"
            )
        try:
            return self._session.request(
                method,
                url,
                json=json,
                params=params,
                headers=self._headers(),
                timeout=_TIMEOUT,
                allow_redirects=False,
                verify=self._verify,
            )
        except requests.exceptions.SSLError as exc:
            raise PermanentError(f"TLS failed while {what} at {self.base}: {exc}") from None
        except requests.exceptions.RequestException as exc:
            raise ProviderError(
                f"cannot reach {self.base} while {what}: {type(exc).__name__}"
            ) from None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._authorization}

    def close(self) -> None:
        self._session.close()


class AzureDevOpsComments:
    """Comments on an Azure Repos pull request, as threads whose first comment we own."""

    def __init__(
        self, pr: AzureDevOpsPullRequest, authorization: str, *, verify: str | bool = True
    ) -> None:
        self.pr = pr
        self._http = _Http(pr.collection_uri, authorization, verify=verify)

    def _check(self, response: requests.Response, what: str) -> Any:
        status = response.status_code
        pr = self.pr
        where = (
            f"pull request {pr.pull_request_id} in repository {pr.repository_id} of project "
            f"{pr.project!r} at {pr.collection_uri}"
        )
        said = _server_message(response)
        if status in (200, 201):
            try:
                return response.json()
            except ValueError:
                raise PermanentError(f"Azure DevOps answered {what} with no JSON") from None
        if status == 203 or status == 401:
            raise AuthError(
                f"Azure DevOps did not accept the token while {what} ({status}): map "
                "SYSTEM_ACCESSTOKEN: $(System.AccessToken) into the step's env, or sign in "
                "with an identity that is a user of the organization",
                status=401,
            )
        if status == 403:
            raise PermanentError(
                f"Azure DevOps refused {what} on {where} (403): the pipeline's identity needs "
                "the repository permission 'Contribute to pull requests' (Project settings > "
                "Repositories > the repository > Security > '<project> Build Service "
                "(<organization>)', or 'Project Collection Build Service (<organization>)' when "
                "'Limit job authorization scope to current project' is off: set it to Allow). "
                f"Azure DevOps said: {said}",
                status=403,
            )
        if status == 404:
            raise NotFoundError(
                f"Azure DevOps found no {where} while {what} (404): check "
                "SYSTEM_COLLECTIONURI, SYSTEM_TEAMPROJECT, BUILD_REPOSITORY_ID and "
                f"SYSTEM_PULLREQUEST_PULLREQUESTID. Azure DevOps said: {said}",
                status=404,
            )
        if 300 <= status < 400:
            raise PermanentError(
                f"Azure DevOps redirected {what} ({status}); not followed, the token stays with "
                f"{pr.collection_uri}"
            )
        raise PermanentError(
            f"Azure DevOps refused {what} on {where} ({status}): {said}", status=status
        )

    def _me(self) -> str:
        """The id of the identity the token belongs to (``authenticatedUser.id`` of
        ``GET {collection}/_apis/connectionData``, a preview-only resource: no api-version)."""
        what = "asking Azure DevOps who the token belongs to"
        data = self._check(
            self._http.send("GET", f"{self.pr.collection_uri}/_apis/connectionData", what=what),
            what,
        )
        user = data.get("authenticatedUser") if isinstance(data, dict) else None
        me = user.get("id") if isinstance(user, dict) else None
        if not me:
            raise PermanentError("Azure DevOps' connectionData names no authenticated user")
        return str(me).lower()

    def list(self) -> list[PostedComment]:
        """The threads whose first comment this identity wrote: a marker in a thread someone
        else started is never ours (they could edit it after the tool writes the plan there)."""
        me = self._me()
        data = self._check(
            self._http.send(
                "GET",
                self.pr.threads_url,
                params={"api-version": _ADO_VERSION},
                what="listing the pull request's threads",
            ),
            "listing the pull request's threads",
        )
        found: list[PostedComment] = []
        for thread in data.get("value") or []:
            if not isinstance(thread, dict) or thread.get("isDeleted"):
                continue
            comments = [c for c in thread.get("comments") or [] if isinstance(c, dict)]
            first = next((c for c in comments if not c.get("parentCommentId")), None)
            if first is None or first.get("isDeleted"):
                continue
            author = first.get("author")
            if not isinstance(author, dict) or str(author.get("id", "")).lower() != me:
                continue
            found.append(
                PostedComment(f"{thread['id']}/{first['id']}", str(first.get("content") or ""))
            )
        found.sort(key=lambda c: tuple(int(x) for x in c.id.split("/")))
        return found

    def create(self, body: str) -> PostedComment:
        payload = {
            "comments": [{"parentCommentId": 0, "content": body, "commentType": 1}],
            "status": 1,
        }
        what = "creating a comment thread"
        data = self._check(
            self._http.send(
                "POST",
                self.pr.threads_url,
                params={"api-version": _ADO_VERSION},
                json=payload,
                what=what,
            ),
            what,
        )
        first = (data.get("comments") or [{}])[0]
        return PostedComment(f"{data['id']}/{first.get('id', 1)}", str(first.get("content", "")))

    def update(self, comment: PostedComment, body: str) -> PostedComment:
        thread, comment_id = comment.id.split("/", 1)
        what = f"editing comment {comment_id} of thread {thread}"
        data = self._check(
            self._http.send(
                "PATCH",
                f"{self.pr.threads_url}/{thread}/comments/{comment_id}",
                params={"api-version": _ADO_VERSION},
                json={"content": body},
                what=what,
            ),
            what,
        )
        return PostedComment(comment.id, str(data.get("content", "")))

    def close(self) -> None:
        self._http.close()


class _GitHubHttp(_Http):
    def _headers(self) -> dict[str, str]:
        headers = super()._headers()
        headers["Accept"] = "application/vnd.github+json"
        headers["X-GitHub-Api-Version"] = _GITHUB_VERSION
        return headers


class GitHubComments:
    """Comments on a GitHub pull request (its issue comments)."""

    def __init__(self, pr: GitHubPullRequest, token: str, *, verify: str | bool = True) -> None:
        self.pr = pr
        self._http = _GitHubHttp(pr.api_url, f"Bearer {token}", verify=verify)
        self._issue = f"{pr.api_url}/repos/{pr.repository}/issues/{pr.number}"

    def _check(self, response: requests.Response, what: str) -> Any:
        status = response.status_code
        said = _server_message(response)
        where = f"pull request #{self.pr.number} of {self.pr.repository} at {self.pr.api_url}"
        if status in (200, 201):
            try:
                return response.json()
            except ValueError:
                raise PermanentError(f"GitHub answered {what} with no JSON") from None
        if status == 401:
            raise AuthError(
                f"GitHub did not accept the token while {what} (401): pass GITHUB_TOKEN "
                f"(env: GITHUB_TOKEN: ${{{{ github.token }}}}). GitHub said: {said}",
                status=401,
            )
        if status == 403:
            raise PermanentError(
                f"GitHub refused {what} on {where} (403): the workflow's GITHUB_TOKEN needs "
                "'permissions: pull-requests: write' (a pull request from a fork only ever "
                f"gets a read-only token). GitHub said: {said}",
                status=403,
            )
        if status == 404:
            raise NotFoundError(
                f"GitHub found no {where} while {what} (404): check GITHUB_REPOSITORY, the "
                "event's pull request number and GITHUB_API_URL (a token that cannot see a "
                f"private repository also gets 404). GitHub said: {said}",
                status=404,
            )
        if 300 <= status < 400:
            raise PermanentError(
                f"GitHub redirected {what} ({status}); not followed, the token stays with "
                f"{self.pr.api_url}"
            )
        raise PermanentError(f"GitHub refused {what} on {where} ({status}): {said}", status=status)

    def list(self) -> list[PostedComment]:
        """The pull request's comments written by a bot (``GITHUB_TOKEN`` posts as
        ``github-actions[bot]``, a GitHub App as ``NAME[bot]``): a person's comment that
        carries the marker is never ours (they could edit it after the tool writes there)."""
        what = "listing the pull request's comments"
        url: str | None = f"{self._issue}/comments"
        params: dict[str, str] | None = {"per_page": "100"}
        found: list[PostedComment] = []
        for _ in range(_MAX_PAGES):
            if url is None:
                break
            response = self._http.send("GET", url, params=params, what=what)
            data = self._check(response, what)
            for item in data if isinstance(data, list) else []:
                user = item.get("user") if isinstance(item, dict) else None
                if isinstance(user, dict) and user.get("type") == "Bot" and "id" in item:
                    found.append(
                        PostedComment(
                            str(item["id"]), str(item.get("body") or ""), item.get("html_url", "")
                        )
                    )
            url = response.links.get("next", {}).get("url")
            params = None  # the next link carries its own query
        return found

    def create(self, body: str) -> PostedComment:
        what = "creating a comment"
        data = self._check(
            self._http.send("POST", f"{self._issue}/comments", json={"body": body}, what=what),
            what,
        )
        return PostedComment(str(data["id"]), str(data.get("body", "")), data.get("html_url", ""))

    def update(self, comment: PostedComment, body: str) -> PostedComment:
        what = f"editing comment {comment.id}"
        url = f"{self.pr.api_url}/repos/{self.pr.repository}/issues/comments/{comment.id}"
        data = self._check(self._http.send("PATCH", url, json={"body": body}, what=what), what)
        return PostedComment(str(data["id"]), str(data.get("body", "")), data.get("html_url", ""))

    def close(self) -> None:
        self._http.close()
