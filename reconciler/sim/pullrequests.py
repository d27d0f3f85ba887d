"""Stand-ins for the two pull-request comment APIs ``reconciler comment`` talks to.

- Azure Repos pull request threads, api-version 7.1, under the simulator's Azure DevOps prefix:
  ``/devops/{org}/{project}/_apis/git/repositories/{repo}/pullRequests/{id}/threads`` (GET list,
  POST create) and ``.../threads/{threadId}/comments/{commentId}`` (PATCH edit, GET read)
  (learn.microsoft.com/rest/api/azure/devops/git/pull-request-threads,
  .../pull-request-thread-comments). Callers: a job access token made by the admin API (the
  build service identity, with or without "Contribute to pull requests"), or any identity the
  rest of the simulated Azure DevOps accepts (treated as a project contributor).
- GitHub REST issue comments (2022-11-28) under ``/github`` (use it as ``GITHUB_API_URL``, the
  way GitHub Enterprise Server serves ``https://HOST/api/v3``): ``GET|POST
  /repos/{owner}/{repo}/issues/{n}/comments`` (paged: ``per_page`` up to 100, ``page``, ``Link``
  header) and ``GET|PATCH /repos/{owner}/{repo}/issues/comments/{id}``
  (docs.github.com/rest/issues/comments). Callers: a ``GITHUB_TOKEN`` made by the admin API for
  one repository, with or without ``pull-requests: write``.

Assumptions where the services do not document behaviour are listed in ``README.md``
(the Azure DevOps size limit, the exact 403/404 messages).
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable
from typing import Any

from reconciler.sim.auth import bearer
from reconciler.sim.protocol import ApiError, Request, Response, ado_error
from reconciler.sim.world import iso

# GitHub: "body is too long (maximum is 65536 characters)" [doc + issue reports]
GITHUB_MAX_BODY = 65_536
# Azure DevOps: undocumented; Atlantis splits comments at 150,000 characters [assumption]
ADO_MAX_CONTENT = 150_000
_GITHUB_DOCS = "https://docs.github.com/rest/issues/comments"
_BUILD_SERVICE = {
    "displayName": "platform Build Service (contoso)",
    "id": "0d1a6f1e-5b0e-4d8e-9c52-7b1f0c6f8a11",
    "uniqueName": "Build\\0d1a6f1e-5b0e-4d8e-9c52-7b1f0c6f8a11",
}
_BOT = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}


def _github_error(status: int, message: str, **extra: Any) -> ApiError:
    body = {"message": message, "documentation_url": _GITHUB_DOCS, "status": str(status), **extra}
    return ApiError(Response(status, body))


class PullRequests:
    """Pull requests, their comment threads (Azure Repos) and comments (GitHub), and the job
    tokens that may touch them. Cleared by the simulator's reset."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            # (org, project, repository) lower-cased -> set of pull request ids
            self.ado_repos: dict[tuple[str, str, str], set[int]] = {}
            self.threads: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
            self.next_thread = 1
            # owner/name lower-cased -> set of pull request numbers
            self.github_repos: dict[str, set[int]] = {}
            self.github_comments: dict[int, dict[str, Any]] = {}
            self.next_comment = 1_000_001
            # token -> {"platform", "write", "repository"}
            self.job_tokens: dict[str, dict[str, Any]] = {}

    # --- admin -------------------------------------------------------------------------------

    def add_pull_request(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``{"platform": "azure-devops", "organization", "project", "repository",
        "pullRequest"}`` or ``{"platform": "github", "repository": "owner/name",
        "pullRequest"}``."""
        number = int(spec["pullRequest"])
        with self.lock:
            if spec.get("platform") == "github":
                self.github_repos.setdefault(str(spec["repository"]).lower(), set()).add(number)
            else:
                key = (
                    str(spec["organization"]).lower(),
                    str(spec["project"]).lower(),
                    str(spec["repository"]).lower(),
                )
                self.ado_repos.setdefault(key, set()).add(number)
        return dict(spec)

    def issue_token(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A token: ``{"platform", "write": bool, "repository"?, "user"?}`` -> ``{"token"}``.
        ``write`` is "Contribute to pull requests" (Azure DevOps) or ``pull-requests: write``
        (GitHub); a GitHub token is good for its one repository only. Without ``user`` it is
        the job's own token (the build service; ``github-actions[bot]``); with one, a person's
        (another author on the same pull request)."""
        token = "simjob_" + secrets.token_urlsafe(24)
        user = str(spec.get("user") or "")
        if user:
            ado = {
                "displayName": user,
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sim-user:{user}")),
                "uniqueName": f"{user}@contoso.example",
            }
            github = {"login": user, "id": 1000 + sum(map(ord, user)), "type": "User"}
        else:
            ado, github = dict(_BUILD_SERVICE), dict(_BOT)
        with self.lock:
            self.job_tokens[token] = {
                "platform": str(spec.get("platform", "azure-devops")),
                "write": bool(spec.get("write", True)),
                "repository": str(spec.get("repository", "")).lower(),
                "author": ado if spec.get("platform", "azure-devops") != "github" else github,
            }
        return {"token": token}

    def is_job_token(self, req: Request) -> bool:
        with self.lock:
            job = self.job_tokens.get(bearer(req) or "")
        return job is not None and job["platform"] == "azure-devops"

    def connection_data(self, req: Request) -> Response:
        """``GET {org}/_apis/connectionData`` for a job token: who the caller is (the shape the
        rest of the simulated Azure DevOps answers for Entra callers)."""
        req.op = "ConnectionData"
        with self.lock:
            job = self.job_tokens[bearer(req) or ""]
        author = job["author"]
        req.caller = author["uniqueName"]
        identity = {
            "id": author["id"],
            "providerDisplayName": author["displayName"],
            "isActive": True,
            "properties": {},
        }
        return Response(200, {"authenticatedUser": identity, "authorizedUser": identity})

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "azure_devops": [
                    {
                        "organization": k[0],
                        "project": k[1],
                        "repository": k[2],
                        "pullRequest": k[3],
                        "threads": [dict(t) for t in v],
                    }
                    for k, v in self.threads.items()
                ],
                "github": [dict(c) for c in self.github_comments.values()],
            }

    def admin(self, parts: list[str], method: str, body: Any) -> Response:
        try:
            if parts == [] and method == "GET":
                return Response(200, self.snapshot())
            if parts == [] and method == "POST" and isinstance(body, dict):
                return Response(201, self.add_pull_request(body))
            if parts == ["tokens"] and method == "POST" and isinstance(body, dict):
                return Response(201, self.issue_token(body))
        except (KeyError, ValueError, TypeError) as exc:
            return Response(400, {"error": f"bad pull request spec: {exc}"})
        return Response(404, {"error": f"no admin route {method} /_sim/pullrequests"})

    # --- Azure Repos -------------------------------------------------------------------------

    def serve_devops(self, req: Request, authenticate: Callable[[Request], None]) -> Response:
        try:
            return self._serve_devops(req, authenticate)
        except ApiError as exc:
            return exc.response

    def _serve_devops(self, req: Request, authenticate: Callable[[Request], None]) -> Response:
        seg = req.segments[1:]  # drop "devops"
        low = [s.lower() for s in seg]
        # org, project, _apis, git, repositories, repo, pullRequests, id, threads, [tid, comments, cid]
        if len(low) < 9 or low[4] != "repositories" or low[6] != "pullrequests":
            raise ado_error(404, "The resource cannot be found.", "NotFoundException")
        if low[8] != "threads":
            raise ado_error(404, "The resource cannot be found.", "NotFoundException")
        write = req.method in ("POST", "PATCH")
        if len(low) == 9:
            req.op = (
                "PullRequestThreads_Create" if req.method == "POST" else "PullRequestThreads_List"
            )
        elif len(low) == 12 and low[10] == "comments":
            req.op = (
                "PullRequestThreadComments_Update" if write else "PullRequestThreadComments_Get"
            )
        else:
            req.op = "PullRequestThreads_Unknown"
        can_write, author = self._devops_caller(req, authenticate)
        self._check_version(req)
        org, project, repo = low[0], low[1], low[5]
        with self.lock:
            if not any(k[:2] == (org, project) for k in self.ado_repos):
                raise ado_error(
                    404,
                    f"TF200016: The following project does not exist: {seg[1]}. Verify that the "
                    "name of the project is correct and that the project exists on the specified "
                    "Azure DevOps Server.",
                    "ProjectDoesNotExistWithNameException",
                )
            prs = self.ado_repos.get((org, project, repo))
            if prs is None:
                raise ado_error(
                    404,
                    f"TF401019: The Git repository with name or identifier {seg[5]} does not exist "
                    "or you do not have permissions for the operation you are attempting.",
                    "GitRepositoryNotFoundException",
                )
            try:
                number = int(seg[7])
            except ValueError:
                number = -1
            if number not in prs:
                raise ado_error(
                    404,
                    "TF401180: The requested pull request was not found.",
                    "GitPullRequestNotFoundException",
                )
            if write and not can_write:
                raise ado_error(
                    403,
                    "TF401027: You need the Git 'PullRequestContribute' permission to perform "
                    f"this action. Details: identity '{_BUILD_SERVICE['uniqueName']}', scope "
                    "'repository'.",
                    "GitNeedsPermissionException",
                )
            threads = self.threads.setdefault((org, project, repo, number), [])
            base = f"{req.base_url}/devops/{'/'.join(seg[:9])}"
            if len(low) == 9 and req.method == "GET":
                return Response(200, {"value": threads, "count": len(threads)})
            if len(low) == 9 and req.method == "POST":
                return Response(200, self._create_thread(req, threads, base, author))
            if len(low) == 12 and low[10] == "comments":
                return self._comment(req, threads, seg[9], seg[11])
        raise ado_error(404, "The resource cannot be found.", "NotFoundException")

    def _devops_caller(
        self, req: Request, authenticate: Callable[[Request], None]
    ) -> tuple[bool, dict[str, Any]]:
        """Whether the caller may contribute, and who it is (a comment's ``author``); raises
        Azure DevOps' 401/203 when unknown."""
        token = bearer(req)
        with self.lock:
            job = self.job_tokens.get(token or "")
        if job is not None and job["platform"] == "azure-devops":
            req.caller = job["author"]["uniqueName"]
            return bool(job["write"]), dict(job["author"])
        authenticate(req)  # an Entra token or PAT the rest of Azure DevOps accepts
        # the same id connectionData reports for this caller (sim/devops.py ``_user``)
        name = req.client.display_name if req.client else req.caller
        oid = req.caller_object_id or req.caller
        return True, {"displayName": name, "id": oid, "uniqueName": req.caller}

    @staticmethod
    def _check_version(req: Request) -> None:
        version = req.query.get("api-version")
        if version is None:
            if req.method == "GET":
                return
            raise ado_error(
                400,
                f"No api-version was supplied for the {req.method} request. The version must be "
                'supplied either as part of the Accept header (e.g. "application/json; '
                'api-version=1.0") or as a query parameter (e.g. "?api-version=1.0").',
                "VssVersionNotSpecifiedException",
            )
        number = version.split("-", 1)[0]
        try:
            major, minor = (int(x) for x in number.split("."))
        except ValueError:
            raise ado_error(
                400, f"The specified API version {version} is not valid.", "ArgumentException"
            ) from None
        if (major, minor) > (7, 1):
            raise ado_error(
                400,
                f"The requested REST API version of {version} is out of range for this server. "
                "The latest REST API version this server supports is 7.1.",
                "VssVersionOutOfRangeException",
            )

    @staticmethod
    def _content(value: Any) -> str:
        if not isinstance(value, str):
            raise ado_error(400, "Comment content must be a string.", "ArgumentException")
        if len(value) > ADO_MAX_CONTENT:
            raise ado_error(
                400,
                f"The comment content is {len(value)} characters long; the maximum is "
                f"{ADO_MAX_CONTENT}.",
                "ArgumentException",
            )
        return value

    def _create_thread(
        self, req: Request, threads: list[dict[str, Any]], base: str, author: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            body = req.json()
        except ValueError:
            body = None
        comments = body.get("comments") if isinstance(body, dict) else None
        if not isinstance(comments, list) or not comments or not isinstance(comments[0], dict):
            raise ado_error(
                400, "Value cannot be null.\r\nParameter name: thread", "ArgumentNullException"
            )
        now = iso(req.now)
        thread_id = self.next_thread
        self.next_thread += 1
        made = []
        for index, comment in enumerate(comments, start=1):
            made.append(
                {
                    "id": index,
                    "parentCommentId": int(comment.get("parentCommentId") or 0),
                    "author": dict(author),
                    "content": self._content(comment.get("content")),
                    "publishedDate": now,
                    "lastUpdatedDate": now,
                    "lastContentUpdatedDate": now,
                    "isDeleted": False,
                    "commentType": "text",
                    "usersLiked": [],
                    "_links": {"self": {"href": f"{base}/{thread_id}/comments/{index}"}},
                }
            )
        status = body.get("status", 1) if isinstance(body, dict) else 1
        statuses = {1: "active", 2: "fixed", 3: "wontFix", 4: "closed", 5: "byDesign", 6: "pending"}
        thread = {
            "id": thread_id,
            "publishedDate": now,
            "lastUpdatedDate": now,
            "comments": made,
            "status": statuses.get(status, status) if isinstance(status, int) else status,
            "threadContext": None,
            "properties": body.get("properties") or {},
            "identities": None,
            "isDeleted": False,
            "_links": {"self": {"href": f"{base}/{thread_id}"}},
        }
        threads.append(thread)
        return thread

    def _comment(
        self, req: Request, threads: list[dict[str, Any]], thread_id: str, comment_id: str
    ) -> Response:
        thread = next((t for t in threads if str(t["id"]) == thread_id), None)
        comment = (
            next((c for c in thread["comments"] if str(c["id"]) == comment_id), None)
            if thread
            else None
        )
        if thread is None or comment is None:
            raise ado_error(
                404,
                f"TF401181: The requested pull request comment thread {thread_id} or comment "
                f"{comment_id} was not found.",
                "GitPullRequestCommentNotFoundException",
            )
        if req.method == "GET":
            return Response(200, comment)
        if req.method != "PATCH":
            raise ado_error(
                405, "The requested resource does not support the method.", "NotFoundException"
            )
        try:
            body = req.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ado_error(
                400, "Value cannot be null.\r\nParameter name: comment", "ArgumentNullException"
            )
        comment["content"] = self._content(body.get("content"))
        comment["lastUpdatedDate"] = comment["lastContentUpdatedDate"] = iso(req.now)
        thread["lastUpdatedDate"] = comment["lastUpdatedDate"]
        return Response(200, comment)

    # --- GitHub ------------------------------------------------------------------------------

    def serve_github(self, req: Request) -> Response:
        try:
            return self._serve_github(req)
        except ApiError as exc:
            return exc.response

    def _serve_github(self, req: Request) -> Response:
        seg = req.segments[1:]  # drop "github"
        low = [s.lower() for s in seg]
        if len(low) < 4 or low[0] != "repos" or low[3] != "issues":
            raise _github_error(404, "Not Found")
        repo = f"{low[1]}/{low[2]}"
        rest = low[4:]
        if len(rest) == 2 and rest[1] == "comments":
            req.op = "IssueComments_Create" if req.method == "POST" else "IssueComments_List"
        elif len(rest) == 2 and rest[0] == "comments":
            req.op = "IssueComments_Update" if req.method == "PATCH" else "IssueComments_Get"
        else:
            req.op = "GitHub_Unknown"
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        with self.lock:
            job = (
                self.job_tokens.get(token.strip())
                if scheme.lower() in ("bearer", "token")
                else None
            )
            if job is None or job["platform"] != "github":
                raise _github_error(401, "Bad credentials")
            req.caller = str(job["author"]["login"])
            numbers = self.github_repos.get(repo)
            if numbers is None or job["repository"] != repo:
                raise _github_error(404, "Not Found")
            write = req.method in ("POST", "PATCH")
            if len(rest) == 2 and rest[1] == "comments" and req.method in ("GET", "POST"):
                try:
                    number = int(rest[0])
                except ValueError:
                    number = -1
                if number not in numbers:
                    raise _github_error(404, "Not Found")
                if write and not job["write"]:
                    raise _github_error(403, "Resource not accessible by integration")
                if req.method == "POST":
                    return Response(201, self._github_create(req, repo, number, seg, job["author"]))
                return self._github_list(req, repo, number, seg)
            if len(rest) == 2 and rest[0] == "comments" and req.method in ("GET", "PATCH"):
                try:
                    comment_id = int(rest[1])
                except ValueError:
                    comment_id = -1
                comment = self.github_comments.get(comment_id)
                if comment is None or comment["_repository"] != repo:
                    raise _github_error(404, "Not Found")
                if req.method == "GET":
                    return Response(200, self._public(comment))
                if not job["write"]:
                    raise _github_error(403, "Resource not accessible by integration")
                comment["body"] = self._github_body(req)
                comment["updated_at"] = iso(req.now)[:19] + "Z"
                return Response(200, self._public(comment))
        raise _github_error(404, "Not Found")

    @staticmethod
    def _public(comment: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in comment.items() if not k.startswith("_")}

    @staticmethod
    def _github_body(req: Request) -> str:
        try:
            data = req.json()
        except ValueError:
            raise _github_error(400, "Problems parsing JSON") from None
        body = data.get("body") if isinstance(data, dict) else None
        if not isinstance(body, str):
            raise _github_error(
                422,
                'Invalid request.\n\nNo subschema in "anyOf" matched.\n"body" wasn\'t supplied.',
            )
        if len(body) > GITHUB_MAX_BODY:
            raise _github_error(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "IssueComment",
                        "code": "custom",
                        "field": "body",
                        "message": f"body is too long (maximum is {GITHUB_MAX_BODY} characters)",
                    }
                ],
            )
        return body

    def _github_create(
        self, req: Request, repo: str, number: int, seg: list[str], user: dict[str, Any]
    ) -> dict[str, Any]:
        body = self._github_body(req)
        comment_id = self.next_comment
        self.next_comment += 1
        now = iso(req.now)[:19] + "Z"
        owner_repo = f"{seg[1]}/{seg[2]}"
        comment = {
            "id": comment_id,
            "node_id": f"IC_sim{comment_id}",
            "url": f"{req.base_url}/github/repos/{owner_repo}/issues/comments/{comment_id}",
            "html_url": f"https://github.example/{owner_repo}/pull/{number}#issuecomment-{comment_id}",
            "issue_url": f"{req.base_url}/github/repos/{owner_repo}/issues/{number}",
            "body": body,
            "user": dict(user),
            "created_at": now,
            "updated_at": now,
            "author_association": "NONE",
            "_repository": repo,
            "_issue": number,
        }
        self.github_comments[comment_id] = comment
        return self._public(comment)

    def _github_list(self, req: Request, repo: str, number: int, seg: list[str]) -> Response:
        try:
            per_page = min(max(int(req.query.get("per_page", "30")), 1), 100)
            page = max(int(req.query.get("page", "1")), 1)
        except ValueError:
            raise _github_error(422, "Validation Failed") from None
        items = [
            self._public(c)
            for c in sorted(self.github_comments.values(), key=lambda c: c["id"])
            if c["_repository"] == repo and c["_issue"] == number
        ]
        pages = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        url = f"{req.base_url}/github/repos/{seg[1]}/{seg[2]}/issues/{number}/comments"
        links = []
        if page < pages:
            links.append(f'<{url}?per_page={per_page}&page={page + 1}>; rel="next"')
            links.append(f'<{url}?per_page={per_page}&page={pages}>; rel="last"')
        if page > 1:
            links.append(f'<{url}?per_page={per_page}&page={page - 1}>; rel="prev"')
            links.append(f'<{url}?per_page={per_page}&page=1>; rel="first"')
        headers = {"Link": ", ".join(links)} if links else {}
        return Response(200, chunk, headers)
