"""Azure Resource Graph: ``POST /providers/Microsoft.ResourceGraph/resources`` (2021-03-01).

Only the query shapes below are answered; every other query is refused with the service's
400 ``BadRequest`` / ``InvalidQuery`` body, never with a silent empty result (an empty answer
to a query the simulator does not understand would tell a client that nothing exists).

Request body [doc: learn.microsoft.com/rest/api/azureresourcegraph/resourcegraph/resources]:
``{"subscriptions": [...]?, "managementGroups": [...]?, "query": "...",
"options": {"$top": N, "$skip": N, "$skipToken": "...", "resultFormat": "objectArray"}}``.
Without ``subscriptions`` and ``managementGroups`` the query covers every subscription the
caller can read (here: every subscription of the world; the simulator does not enforce
read permissions). Answer: ``{"totalRecords", "count", "data": [rows], "facets": [],
"resultTruncated": "false", "$skipToken"?}``.

Error body [obs: Azure/aztfexport#485, Azure/azure-powershell#13762,
scautomation/AzureResourceGraph-Examples#2]: ``{"error": {"code": "BadRequest", "message":
"Please provide below info when asking for support: timestamp = ..., correlationId = ...",
"details": [{"code": "InvalidQuery", "message": "Query is invalid. Please refer to the
documentation for the Azure Resource Graph service and fix the error before retrying."},
{"code": "ParserFailure", ...}]}}``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

from reconciler.sim.protocol import ApiError, Request, Response
from reconciler.sim.world import World

GRAPH_VERSIONS: Final = ("2021-03-01", "2022-10-01", "2024-04-01", "2019-04-01")
OWNER_TAG: Final = "reconciler-owner"
_MAX_TOP: Final = 1000
_DEFAULT_TOP: Final = 100
_MG_PREFIX: Final = "/providers/microsoft.management/managementgroups/"

# a KQL single-quoted string literal with backslash escapes
_LITERAL: Final = r"'((?:[^'\\\n]|\\.)*)'"
_IDENTITIES: Final = re.compile(
    r"resources \| where type =~ 'microsoft\.managedidentity/userassignedidentities' "
    rf"\| where tags\['reconciler-owner'\] =~ {_LITERAL} \| project id, subscriptionId, tags"
)
_ASSIGNMENTS: Final = re.compile(
    r"authorizationresources \| where type =~ 'microsoft\.authorization/roleassignments' "
    rf"\| where properties\.description endswith {_LITERAL} "
    r"\| project id, subscriptionId, scope = tostring\(properties\.scope\)"
)


def unescape(text: str) -> str:
    """A KQL string literal's value: ``\\'`` is a quote, ``\\\\`` a backslash."""
    return re.sub(r"\\(.)", r"\1", text)


def _error(message: str, *details: dict[str, Any]) -> ApiError:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
    return ApiError(
        Response(
            400,
            {
                "error": {
                    "code": "BadRequest",
                    "message": "Please provide below info when asking for support: "
                    f"timestamp = {stamp}, correlationId = {uuid.uuid4()}.",
                    "details": [
                        {
                            "code": "InvalidQuery",
                            "message": "Query is invalid. Please refer to the documentation "
                            "for the Azure Resource Graph service and fix the error before "
                            "retrying.",
                        },
                        *details,
                        *([{"code": "ParserFailure", "message": message}] if message else []),
                    ],
                }
            },
        )
    )


class ResourceGraph:
    def __init__(self, world: World) -> None:
        self.world = world

    def resources(self, req: Request) -> Response:
        try:
            body = req.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            raise _error("the request body must be an object with a 'query' string")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise _error("'options' must be an object")
        if options.get("resultFormat", "objectArray") != "objectArray":
            raise _error("the simulator answers resultFormat 'objectArray' only")
        query = " ".join(str(body["query"]).split())
        with self.world.lock:
            subscriptions = self._scope(body)
            rows = self._rows(query, subscriptions)
        try:
            top = min(_MAX_TOP, max(1, int(options.get("$top", _DEFAULT_TOP))))
            start = int(options.get("$skipToken") or options.get("$skip") or 0)
        except (TypeError, ValueError):
            raise _error("'$top', '$skip' and '$skipToken' must be numbers here") from None
        page = rows[start : start + top]
        answer: dict[str, Any] = {
            "totalRecords": len(rows),
            "count": len(page),
            "data": page,
            "facets": [],
            "resultTruncated": "false",
        }
        if start + top < len(rows):
            answer["$skipToken"] = str(start + top)
        return Response(
            200,
            answer,
            {"x-ms-user-quota-remaining": "14", "x-ms-user-quota-resets-after": "00:00:05"},
        )

    def _scope(self, body: dict[str, Any]) -> set[str]:
        """Lower-case subscription ids the query covers."""
        every = set(self.world.subscriptions)
        named = body.get("subscriptions")
        groups = body.get("managementGroups")
        if named is None and groups is None:
            return every
        chosen: set[str] = set()
        for sub in named or []:
            if str(sub).lower() in every:
                chosen.add(str(sub).lower())
        for group in groups or []:
            for key, sub in self.world.subscriptions.items():
                if str(group).lower() in (mg.lower() for mg in sub.management_groups):
                    chosen.add(key)
        return chosen

    def _rows(self, query: str, subscriptions: set[str]) -> list[dict[str, Any]]:
        handlers: tuple[tuple[re.Pattern[str], Callable[[str, set[str]], list[Any]]], ...] = (
            (_IDENTITIES, self._identities),
            (_ASSIGNMENTS, self._assignments),
        )
        for pattern, handler in handlers:
            found = pattern.fullmatch(query)
            if found is not None:
                return handler(unescape(found.group(1)), subscriptions)
        raise _error(
            "",
            {
                "code": "ParserFailure",
                "message": "ParserFailure",
                "line": 1,
                "characterPositionInLine": 0,
                "token": query[:40],
            },
        )

    def _identities(self, owner: str, subscriptions: set[str]) -> list[dict[str, Any]]:
        rows = []
        for ident in sorted(self.world.identities.values(), key=lambda i: i.key):
            if ident.subscription.lower() not in subscriptions:
                continue
            # a tag key is matched exactly; =~ compares the value case-insensitively
            value = ident.tags.get(OWNER_TAG)
            if value is not None and value.lower() == owner.lower():
                rows.append(
                    {
                        "id": ident.arm_id,
                        "subscriptionId": ident.subscription,
                        "tags": dict(ident.tags),
                    }
                )
        return rows

    def _assignments(self, suffix: str, subscriptions: set[str]) -> list[dict[str, Any]]:
        rows = []
        for ra in sorted(self.world.role_assignments.values(), key=lambda r: r.name):
            sub = self.world.subscription_of(ra.scope)
            scope = ra.scope.lower()
            if sub is not None:
                if sub not in subscriptions:
                    continue
            elif scope.startswith(_MG_PREFIX):
                group = scope[len(_MG_PREFIX) :]
                held = {
                    mg.lower()
                    for key in subscriptions
                    for mg in self.world.subscriptions[key].management_groups
                }
                if group not in held:
                    continue
            # endswith is case-insensitive in KQL (endswith_cs is the sensitive one)
            if not (ra.description or "").lower().endswith(suffix.lower()):
                continue
            prefix = "" if ra.scope == "/" else ra.scope
            rows.append(
                {
                    "id": f"{prefix}/providers/Microsoft.Authorization/roleAssignments/{ra.name}",
                    "subscriptionId": sub or "",
                    "scope": ra.scope,
                }
            )
        return rows
