"""Azure DevOps' organisation-independent host ``app.vssps.visualstudio.com``, under
``/vssps/...``: the caller's profile and the organisations it is a member of.

- ``GET /_apis/profile/profiles/me?api-version=7.1-preview.3`` [doc: rest/api/azure/devops/
  profile/profiles/get] -> ``{"displayName", "publicAlias", "emailAddress", "timeStamp",
  "id", "coreRevision", "revision"}``; ``id`` is the member id the accounts list takes.
- ``GET /_apis/accounts?memberId={id}&api-version=7.1`` [spec: apispecs/devops/account/7.1
  and its example] -> ``{"count", "value": [{"accountId", "accountUri", "accountName",
  "properties"}]}``; one of ``memberId`` or ``ownerId`` is required.

Assumptions (README "Azure DevOps organisations"): every client of the world is a member of
every organisation (the simulator's organisations accept any authenticated caller), and a
``memberId`` other than the caller's own id lists nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.sim.devops import Route
from reconciler.sim.protocol import Request, Response, ado_error
from reconciler.sim.world import World, iso, stable_uuid


@dataclass
class _Caller:
    id: str
    name: str


class Vssps:
    def __init__(self, world: World) -> None:
        self.world = world

    def route(self, req: Request) -> Route:
        low = [s.lower() for s in req.segments[1:]]  # drop "vssps"
        if req.method == "GET" and low[:3] == ["_apis", "profile", "profiles"] and len(low) == 4:
            return Route("Profiles_Get", self.profile, preview_required=True)
        if req.method == "GET" and low == ["_apis", "accounts"]:
            return Route("Accounts_List", self.accounts)
        raise ado_error(
            404,
            f"The resource cannot be found: {req.raw_path}",
            "NotFoundException",
            event_id=0,
        )

    def _caller(self, req: Request) -> _Caller:
        name = req.client.display_name if req.client else req.caller
        return _Caller(req.caller_object_id or stable_uuid("user", req.caller), name)

    def profile(self, req: Request) -> Response:
        who = req.segments[-1]
        caller = self._caller(req)
        if who.lower() not in ("me", caller.id.lower()):
            raise ado_error(404, f"VS10107: The profile {who} does not exist.", "NotFoundException")
        return Response(
            200,
            {
                "displayName": caller.name,
                "publicAlias": caller.id,
                "emailAddress": "",
                "timeStamp": iso(self.world.clock()),
                "id": caller.id,
                "coreRevision": 1,
                "revision": 1,
            },
        )

    def accounts(self, req: Request) -> Response:
        member = req.query.get("memberid")
        owner = req.query.get("ownerid")
        if not member and not owner:
            raise ado_error(
                400,
                "One of the following parameters is required: ownerId, memberId.",
                "ArgumentException",
            )
        caller = self._caller(req)
        value: list[dict[str, Any]] = []
        if member and member.lower() == caller.id.lower():
            with self.world.lock:
                for org in sorted(self.world.organizations.values(), key=lambda o: o.name):
                    value.append(
                        {
                            "accountId": org.id,
                            "accountUri": f"https://vssps.dev.azure.com/{org.name}/",
                            "accountName": org.name,
                            "properties": {},
                        }
                    )
        return Response(200, {"count": len(value), "value": value})
