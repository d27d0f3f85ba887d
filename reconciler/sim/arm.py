"""Azure Resource Manager: Microsoft.ManagedIdentity 2024-11-30, Microsoft.Authorization
2022-04-01, and the few Microsoft.Resources reads a client may make (subscriptions, groups).

``route(req)`` maps a request to a ``Route`` (operationId, handler, throttle facts) without
touching state, so the server can log, authenticate and throttle before the handler runs.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from reconciler.sim.activitylog import ACTIVITY_LOG_VERSIONS, ActivityLog
from reconciler.sim.faults import Faults
from reconciler.sim.graph import GRAPH_VERSIONS, ResourceGraph
from reconciler.sim.protocol import ApiError, Request, Response, arm_error
from reconciler.sim.world import (
    FIC_TYPE,
    MSI_TYPE,
    Fic,
    Identity,
    Principal,
    RoleAssignment,
    World,
    identity_key,
    iso,
    norm_scope,
)

MSI_VERSIONS = (
    "2024-11-30",
    "2023-01-31",
    "2023-07-31-preview",
    "2022-01-31-preview",
    "2021-09-30-preview",
    "2018-11-30",
    "2015-08-31-preview",
    "2025-01-31-preview",
)
MSI_FIC_VERSIONS = frozenset(
    v for v in MSI_VERSIONS if v not in ("2018-11-30", "2015-08-31-preview")
)
AUTHZ_VERSIONS = (
    "2022-04-01",
    "2022-05-01-preview",
    "2020-10-01-preview",
    "2020-08-01-preview",
    "2020-04-01-preview",
    "2018-09-01-preview",
    "2018-07-01",
    "2018-01-01-preview",
    "2015-07-01",
)
RESOURCES_VERSIONS = (
    "2022-12-01",
    "2022-09-01",
    "2021-04-01",
    "2021-01-01",
    "2020-06-01",
    "2020-01-01",
    "2019-10-01",
    "2019-06-01",
    "2016-06-01",
)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_IDENTITY_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,127}$")
_FIC_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$")
_RG_NAME = re.compile(r"^[-\w._()]{1,90}$")
MAX_FICS = 20
FIC_CONFLICT = "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"


@dataclass
class Route:
    op: str
    handler: Callable[[Request], Response]
    versions: tuple[str, ...]
    op_class: str  # reads | writes | deletes (ARM throttle)
    subscription: str | None
    msi: tuple[str, str] | None = None  # (Managed Identity throttle op, resource key)
    fic_write: str | None = None  # identity key whose credential writes must not overlap


def _op_class(method: str) -> str:
    return {"GET": "reads", "HEAD": "reads", "DELETE": "deletes"}.get(method, "writes")


def _not_found_type(req: Request) -> ApiError:
    return arm_error(
        404,
        "InvalidResourceType",
        f"The resource type could not be found for path '{req.raw_path}'.",
    )


class Arm:
    def __init__(self, world: World, faults: Callable[[], Faults]) -> None:
        self.world = world
        self.faults = faults
        # identity keys with a federated credential write in progress
        self._fic_writers: set[str] = set()
        self._fic_lock = threading.Lock()
        self.graph = ResourceGraph(world)
        self.activity = ActivityLog(lambda: world.tenant_id)

    # --- routing ---------------------------------------------------------------------------

    def route(self, req: Request) -> Route:
        seg = req.segments
        low = [s.lower() for s in seg]
        m = req.method
        cls = _op_class(m)
        sub = seg[1] if len(seg) > 1 and low[0] == "subscriptions" else None

        if low == ["providers", "microsoft.resourcegraph", "resources"] and m == "POST":
            # a query, not a write: ARM counts it as a read
            return Route("Resources", self.graph.resources, GRAPH_VERSIONS, "reads", None)

        # Microsoft.Authorization at any scope: the last provider segment decides.
        for i in range(len(low) - 2, -1, -1):
            if low[i] == "providers" and low[i + 1] == "microsoft.authorization":
                return self._route_authz(
                    req, "/" + "/".join(seg[:i]), low[i + 2 :], seg[i + 2 :], cls, sub
                )

        if low[:1] == ["subscriptions"]:
            if (
                low[2:] == ["providers", "microsoft.insights", "eventtypes", "management", "values"]
                and m == "GET"
            ):
                return Route(
                    "ActivityLogs_List", self.list_activity_log, ACTIVITY_LOG_VERSIONS, cls, sub
                )
            if len(low) == 1 and m == "GET":
                return Route(
                    "Subscriptions_List", self.list_subscriptions, RESOURCES_VERSIONS, cls, None
                )
            if len(low) == 2 and m == "GET":
                return Route(
                    "Subscriptions_Get", self.get_subscription, RESOURCES_VERSIONS, cls, sub
                )
            if len(low) == 3 and low[2] == "resourcegroups" and m == "GET":
                return Route("ResourceGroups_List", self.list_groups, RESOURCES_VERSIONS, cls, sub)
            if len(low) == 4 and low[2] == "resourcegroups" and m == "GET":
                return Route("ResourceGroups_Get", self.get_group, RESOURCES_VERSIONS, cls, sub)
            assert sub is not None
            msi = ["providers", "microsoft.managedidentity", "userassignedidentities"]
            if low[2:5] == msi and len(low) == 5 and m == "GET":
                return Route(
                    "UserAssignedIdentities_ListBySubscription",
                    self.list_identities,
                    MSI_VERSIONS,
                    cls,
                    sub,
                    ("list", sub),
                )
            if len(low) >= 7 and low[2] == "resourcegroups" and low[4:7] == msi:
                rg = seg[3]
                if len(low) == 7 and m == "GET":
                    return Route(
                        "UserAssignedIdentities_ListByResourceGroup",
                        self.list_identities,
                        MSI_VERSIONS,
                        cls,
                        sub,
                        ("list", f"{sub}/{rg}"),
                    )
                key = identity_key(sub, rg, seg[7]) if len(seg) > 7 else ""
                if len(low) == 8:
                    ops = {
                        "GET": ("UserAssignedIdentities_Get", self.get_identity, "get"),
                        "PUT": (
                            "UserAssignedIdentities_CreateOrUpdate",
                            self.put_identity,
                            "write",
                        ),
                        "PATCH": ("UserAssignedIdentities_Update", self.patch_identity, "write"),
                        "DELETE": ("UserAssignedIdentities_Delete", self.delete_identity, "delete"),
                    }
                    if m in ops:
                        op, fn, kind = ops[m]
                        return Route(op, fn, MSI_VERSIONS, cls, sub, (kind, key))
                elif len(low) in (9, 10) and low[8] == "federatedidentitycredentials":
                    versions = tuple(v for v in MSI_VERSIONS if v in MSI_FIC_VERSIONS)
                    if len(low) == 9 and m == "GET":
                        return Route(
                            "FederatedIdentityCredentials_List",
                            self.list_fics,
                            versions,
                            cls,
                            sub,
                            ("list", key),
                        )
                    ops = {
                        "GET": ("FederatedIdentityCredentials_Get", self.get_fic, "get"),
                        "PUT": (
                            "FederatedIdentityCredentials_CreateOrUpdate",
                            self.put_fic,
                            "write",
                        ),
                        "DELETE": (
                            "FederatedIdentityCredentials_Delete",
                            self.delete_fic,
                            "delete",
                        ),
                    }
                    if len(low) == 10 and m in ops:
                        op, fn, kind = ops[m]
                        write = key if m in ("PUT", "DELETE") else None
                        return Route(op, fn, versions, cls, sub, (kind, key), write)
        raise _not_found_type(req)

    def _route_authz(
        self, req: Request, scope: str, rest: list[str], orig: list[str], cls: str, sub: str | None
    ) -> Route:
        m = req.method
        if rest == ["roleassignments"] and m == "GET":
            parts = [p.lower() for p in scope.strip("/").split("/")]
            if len(parts) == 2 and parts[0] == "subscriptions":
                op = "RoleAssignments_ListForSubscription"
            elif len(parts) == 4 and parts[0] == "subscriptions" and parts[2] == "resourcegroups":
                op = "RoleAssignments_ListForResourceGroup"
            elif len(parts) > 4 and parts[0] == "subscriptions":
                op = "RoleAssignments_ListForResource"
            else:
                op = "RoleAssignments_ListForScope"
            return Route(op, lambda r: self.list_assignments(r, scope), AUTHZ_VERSIONS, cls, sub)
        if len(rest) == 2 and rest[0] == "roleassignments":
            name = orig[1]
            ops = {
                "GET": ("RoleAssignments_Get", self.get_assignment),
                "PUT": ("RoleAssignments_Create", self.put_assignment),
                "DELETE": ("RoleAssignments_Delete", self.delete_assignment),
            }
            if m in ops:
                op, fn = ops[m]
                return Route(op, lambda r: fn(r, scope, name), AUTHZ_VERSIONS, cls, sub)
        if rest == ["roledefinitions"] and m == "GET":
            return Route(
                "RoleDefinitions_List",
                lambda r: self.list_definitions(r, scope),
                AUTHZ_VERSIONS,
                cls,
                sub,
            )
        if len(rest) == 2 and rest[0] == "roledefinitions" and m == "GET":
            op = "RoleDefinitions_Get" if scope != "/" else "RoleDefinitions_GetById"
            return Route(
                op, lambda r: self.get_definition(r, scope, orig[1]), AUTHZ_VERSIONS, cls, sub
            )
        raise _not_found_type(req)

    @staticmethod
    def check_api_version(req: Request, route: Route) -> None:
        version = req.query.get("api-version")
        if version is None or version == "":
            raise arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if version not in route.versions:
            raise arm_error(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{version}' is invalid. The supported versions are '{','.join(route.versions)}'.",
            )

    # --- helpers -----------------------------------------------------------------------------

    def _lagging(self, created: float, req: Request) -> bool:
        lag = self.faults().lag_ms
        return lag > 0 and (req.now - created) * 1000 < lag

    def _subscription(self, sub: str) -> None:
        if sub.lower() not in self.world.subscriptions:
            raise arm_error(
                404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found."
            )

    def _group(self, sub: str, rg: str) -> None:
        self._subscription(sub)
        if self.world.resource_group(sub, rg) is None:
            raise arm_error(
                404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found."
            )

    def _body(self, req: Request) -> dict[str, Any]:
        try:
            body = req.json()
        except ValueError as exc:
            raise arm_error(
                400,
                "InvalidRequestContent",
                f"The request content was invalid and could not be deserialized: '{exc}'.",
            ) from exc
        if not isinstance(body, dict):
            raise arm_error(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: 'the body must be a JSON object'.",
            )
        return body

    def _page(self, req: Request, items: list[Any], size: int, token: str) -> dict[str, Any]:
        """One page of ``items`` from the offset in the skip token, with an absolute nextLink."""
        raw = req.query.get(token.lower(), "0")
        try:
            start = max(0, int(raw.strip("X'")))
        except ValueError:
            raise arm_error(
                400, "InvalidSkipToken", f"The skip token '{raw}' is not valid."
            ) from None
        top = req.query.get("$top")
        if top is not None:
            try:
                size = min(size, max(1, int(top)))
            except ValueError:
                raise arm_error(
                    400, "InvalidParameter", f"The value '{top}' of $top is not valid."
                ) from None
        page: dict[str, Any] = {"value": items[start : start + size]}
        if start + size < len(items):
            params = {k: v for k, v in req.query.items() if k != token.lower()}
            params["api-version"] = req.query.get("api-version", "")
            params[token] = str(start + size)
            path = quote(req.raw_path)
            page["nextLink"] = (
                f"{req.base_url}{path}?{urlencode(params, safe=chr(36) + chr(39) + '(),/: ')}".replace(
                    " ", "%20"
                )
            )
        return page

    # --- the Activity Log ----------------------------------------------------------------------

    def list_activity_log(self, req: Request) -> Response:
        sub = req.segments[1]
        self._subscription(sub)
        return self.activity.list(req, sub, max(1, self.faults().activity_log_page_size))

    # --- subscriptions and resource groups --------------------------------------------------------

    def _sub_json(self, sub_id: str) -> dict[str, Any]:
        s = self.world.subscriptions[sub_id.lower()]
        return {
            "id": f"/subscriptions/{s.id}",
            "subscriptionId": s.id,
            "tenantId": self.world.tenant_id,
            "displayName": s.display_name,
            "state": "Enabled",
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "PayAsYouGo_2014-09-01",
                "spendingLimit": "Off",
            },
            "authorizationSource": "RoleBased",
        }

    def list_subscriptions(self, req: Request) -> Response:
        with self.world.lock:
            return Response(
                200,
                {
                    "value": [self._sub_json(s) for s in self.world.subscriptions],
                    "count": {"type": "Total", "value": len(self.world.subscriptions)},
                },
            )

    def get_subscription(self, req: Request) -> Response:
        sub = req.segments[1]
        with self.world.lock:
            self._subscription(sub)
            return Response(200, self._sub_json(sub))

    def _group_json(self, sub: str, rg: str) -> dict[str, Any]:
        g = self.world.resource_group(sub, rg)
        assert g is not None
        return {
            "id": f"/subscriptions/{g.subscription}/resourceGroups/{g.name}",
            "name": g.name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": g.location,
            "properties": {"provisioningState": "Succeeded"},
        }

    def list_groups(self, req: Request) -> Response:
        sub = req.segments[1]
        with self.world.lock:
            self._subscription(sub)
            groups = [
                self._group_json(s, g) for (s, g) in self.world.resource_groups if s == sub.lower()
            ]
        return Response(200, {"value": groups})

    def get_group(self, req: Request) -> Response:
        sub, rg = req.segments[1], req.segments[3]
        with self.world.lock:
            self._group(sub, rg)
            return Response(200, self._group_json(sub, rg))

    # --- identities --------------------------------------------------------------------------

    @staticmethod
    def identity_json(i: Identity) -> dict[str, Any]:
        return {
            "id": i.arm_id,
            "name": i.name,
            "type": MSI_TYPE,
            "location": i.location,
            "tags": dict(i.tags),
            "properties": {
                "tenantId": i.tenant_id,
                "principalId": i.principal_id,
                "clientId": i.client_id,
                "isolationScope": i.isolation_scope,
            },
        }

    def _identity(self, req: Request, *, for_read: bool = True) -> Identity:
        seg = req.segments
        sub, rg, name = seg[1], seg[3], seg[7]
        self._group(sub, rg)
        ident = self.world.identity(sub, rg, name)
        if ident is None or (for_read and self._lagging(ident.created, req)):
            raise arm_error(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/{name}' under resource group "
                f"'{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            )
        return ident

    def list_identities(self, req: Request) -> Response:
        seg = req.segments
        sub = seg[1]
        rg = seg[3] if len(seg) > 5 else None
        with self.world.lock:
            if rg is None:
                self._subscription(sub)
                prefix = f"{sub}/".lower()
            else:
                self._group(sub, rg)
                prefix = f"{sub}/{rg}/".lower()
            items = [
                self.identity_json(i)
                for k, i in self.world.identities.items()
                if k.startswith(prefix)
            ]
        return Response(200, self._page(req, items, self.faults().identity_page_size, "$skiptoken"))

    def get_identity(self, req: Request) -> Response:
        with self.world.lock:
            return Response(200, self.identity_json(self._identity(req)))

    def put_identity(self, req: Request) -> Response:
        seg = req.segments
        sub, rg, name = seg[1], seg[3], seg[7]
        body = self._body(req)
        with self.world.lock:
            self._group(sub, rg)
            if not _IDENTITY_NAME.match(name):
                raise arm_error(
                    400,
                    "InvalidResourceName",
                    f"Resource name {name} is invalid. The name can be between 3 and 128 characters long, "
                    "can contain only letters, numbers, hyphens and underscores, and must start with a letter or number.",
                )
            location = body.get("location")
            if not isinstance(location, str) or not location:
                raise arm_error(
                    400,
                    "LocationRequired",
                    "The location property is required for this definition.",
                )
            location = location.replace(" ", "").lower()
            tags = body.get("tags") or {}
            if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
                raise arm_error(400, "InvalidTag", "Tag values must be strings.")
            if len(tags) > 50:
                raise arm_error(
                    400, "InvalidTagCount", "The number of tags exceeds the limit of 50."
                )
            props = body.get("properties") or {}
            scope = props.get("isolationScope") if isinstance(props, dict) else None
            existing = self.world.identity(sub, rg, name)
            group = self.world.resource_group(sub, rg)
            assert group is not None
            if existing is not None:
                if existing.location != location:
                    raise arm_error(
                        409,
                        "InvalidResourceLocation",
                        f"The resource '{existing.name}' already exists in location '{existing.location}' in resource "
                        f"group '{group.name}'. A resource with the same name cannot be created in location "
                        f"'{location}'. Please select a new resource name.",
                    )
                existing.tags = dict(tags)
                if scope:
                    existing.isolation_scope = str(scope)
                self.world.touch()
                return Response(200, self.identity_json(existing))
            sub_obj = self.world.subscriptions[sub.lower()]
            ident = Identity(
                subscription=sub_obj.id,
                resource_group=group.name,
                name=name,
                location=location,
                tags=dict(tags),
                principal_id=str(uuid.uuid4()),
                client_id=str(uuid.uuid4()),
                tenant_id=self.world.tenant_id,
                created=req.now,
                isolation_scope=str(scope or "None"),
            )
            self.world.identities[ident.key] = ident
            self.world.principals[ident.principal_id.lower()] = Principal(
                ident.principal_id, "ServicePrincipal", ident.name, req.now, ident.key
            )
            self.world.touch()
            return Response(201, self.identity_json(ident))

    def patch_identity(self, req: Request) -> Response:
        body = self._body(req)
        with self.world.lock:
            ident = self._identity(req, for_read=False)
            location = body.get("location")
            if isinstance(location, str) and location.replace(" ", "").lower() != ident.location:
                raise arm_error(
                    409,
                    "InvalidResourceLocation",
                    f"The resource '{ident.name}' already exists in location '{ident.location}' in resource group "
                    f"'{ident.resource_group}'. A resource with the same name cannot be created in location "
                    f"'{location}'. Please select a new resource name.",
                )
            if isinstance(body.get("tags"), dict):
                ident.tags = {str(k): str(v) for k, v in body["tags"].items()}
            props = body.get("properties")
            if isinstance(props, dict) and props.get("isolationScope"):
                ident.isolation_scope = str(props["isolationScope"])
            self.world.touch()
            return Response(200, self.identity_json(ident))

    def delete_identity(self, req: Request) -> Response:
        seg = req.segments
        with self.world.lock:
            self._group(seg[1], seg[3])
            ident = self.world.identities.pop(identity_key(seg[1], seg[3], seg[7]), None)
            if ident is None:
                return Response(204)
            for fic in ident.fics.values():
                self.world.deleted_fics.append((fic.issuer, fic.subject, req.now))
            # the service principal goes with it; role assignments stay behind as orphans
            self.world.principals.pop(ident.principal_id.lower(), None)
            self.world.touch()
        return Response(200)

    # --- federated identity credentials ------------------------------------------------------

    @staticmethod
    def fic_json(i: Identity, f: Fic) -> dict[str, Any]:
        return {
            "id": f"{i.arm_id}/federatedIdentityCredentials/{f.name}",
            "name": f.name,
            "type": FIC_TYPE,
            "properties": {
                "issuer": f.issuer,
                "subject": f.subject,
                "audiences": list(f.audiences),
            },
        }

    def _parent(self, req: Request, action: str) -> Identity:
        seg = req.segments
        self._group(seg[1], seg[3])
        ident = self.world.identity(seg[1], seg[3], seg[7])
        if ident is None:
            parent = "/".join(["", *seg[:8]])
            raise arm_error(
                404,
                "ParentResourceNotFound",
                f"Failed to perform '{action}' on resource(s) of type 'userAssignedIdentities/federatedIdentityCredentials', "
                f"because the parent resource '{parent}' could not be found.",
            )
        return ident

    def list_fics(self, req: Request) -> Response:
        with self.world.lock:
            ident = self._parent(req, "read")
            items = [self.fic_json(ident, f) for f in ident.fics.values()]
        return Response(
            200, self._page(req, items, self.faults().credential_page_size, "$skipToken")
        )

    def get_fic(self, req: Request) -> Response:
        name = req.segments[9]
        with self.world.lock:
            ident = self._parent(req, "read")
            fic = ident.fics.get(name.lower())
            if fic is None or self._lagging(fic.created, req):
                raise arm_error(
                    404,
                    "ResourceNotFound",
                    f"The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/{ident.name}/federatedIdentityCredentials/{name}' "
                    f"under resource group '{ident.resource_group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                )
            return Response(200, self.fic_json(ident, fic))

    def fic_write(self, req: Request, route: Route, delay_s: float) -> Response:
        """Run a credential PUT or DELETE inside the identity's write window.

        The window spans the request's latency plus ``fic_write_ms``; a second write under the
        same identity arriving meanwhile gets 409, as Azure answers overlapping writes."""
        key = route.fic_write or ""
        with self.world.lock:
            self._parent(req, "write" if req.method == "PUT" else "delete")
        with self._fic_lock:
            if key in self._fic_writers:
                raise arm_error(
                    409,
                    FIC_CONFLICT,
                    "Too many Federated Identity Credentials are written concurrently for the managed identity "
                    f"'{'/'.join(['', *req.segments[:8]])}'. Concurrent Federated Identity Credentials writes "
                    "under the same managed identity are not supported.",
                )
            self._fic_writers.add(key)
        try:
            hold = delay_s + self.faults().fic_write_ms / 1000
            if hold > 0:
                time.sleep(hold)
            return self.put_fic(req) if req.method == "PUT" else self.delete_fic(req)
        finally:
            with self._fic_lock:
                self._fic_writers.discard(key)

    def put_fic(self, req: Request) -> Response:
        name = req.segments[9]
        body = self._body(req)
        with self.world.lock:
            ident = self._parent(req, "write")
            if not _FIC_NAME.match(name):
                raise arm_error(
                    400,
                    "BadRequest",
                    f"The federated identity credential name '{name}' is invalid. It must be 3 to 120 characters "
                    "long, start with a letter or number and contain only letters, numbers, hyphens and underscores.",
                )
            props = body.get("properties")
            if not isinstance(props, dict):
                raise arm_error(
                    400,
                    "BadRequest",
                    "The 'properties' of the federated identity credential are required.",
                )
            issuer, subject, audiences = (
                props.get("issuer"),
                props.get("subject"),
                props.get("audiences"),
            )
            for field_name, value in (("issuer", issuer), ("subject", subject)):
                if not isinstance(value, str) or not value.strip():
                    raise arm_error(
                        400,
                        "BadRequest",
                        f"The '{field_name}' property of the federated identity credential is required.",
                    )
                if len(value) > 600:
                    raise arm_error(
                        400,
                        "BadRequest",
                        f"The '{field_name}' property must not be longer than 600 characters.",
                    )
            assert isinstance(issuer, str) and isinstance(subject, str)
            if not issuer.startswith("https://"):
                raise arm_error(
                    400,
                    "BadRequest",
                    f"The issuer '{issuer}' is not a valid URL. The issuer must use https.",
                )
            if (
                not isinstance(audiences, list)
                or len(audiences) != 1
                or not isinstance(audiences[0], str)
                or not audiences[0]
            ):
                raise arm_error(
                    400,
                    "BadRequest",
                    "Exactly one audience must be provided for a federated identity credential.",
                )
            if len(audiences[0]) > 600:
                raise arm_error(
                    400, "BadRequest", "The audience must not be longer than 600 characters."
                )
            for other in ident.fics.values():
                if (
                    other.name.lower() != name.lower()
                    and other.issuer == issuer
                    and other.subject == subject
                ):
                    raise arm_error(
                        400,
                        "BadRequest",
                        "Issuer and subject combination already exists for this Managed Identity.",
                    )
            existing = ident.fics.get(name.lower())
            if existing is not None:
                existing.issuer, existing.subject, existing.audiences = (
                    issuer,
                    subject,
                    list(audiences),
                )
                existing.written = req.now
                self.world.touch()
                return Response(200, self.fic_json(ident, existing))
            if len(ident.fics) >= MAX_FICS:
                raise arm_error(
                    400,
                    "FederatedIdentityCredentialLimitExceeded",
                    f"The managed identity '{ident.name}' already has the maximum of {MAX_FICS} federated identity credentials.",
                )
            fic = Fic(name, issuer, subject, list(audiences), req.now, req.now)
            ident.fics[name.lower()] = fic
            self.world.touch()
            return Response(201, self.fic_json(ident, fic))

    def delete_fic(self, req: Request) -> Response:
        name = req.segments[9]
        with self.world.lock:
            ident = self._parent(req, "delete")
            fic = ident.fics.pop(name.lower(), None)
            if fic is None:
                return Response(204)
            self.world.deleted_fics.append((fic.issuer, fic.subject, req.now))
            self.world.touch()
        return Response(200)

    # --- role assignments --------------------------------------------------------------------

    def assignment_json(self, ra: RoleAssignment) -> dict[str, Any]:
        props: dict[str, Any] = {
            "roleDefinitionId": self.world.role_definition_id(ra.role_guid, ra.scope),
            "principalId": ra.principal_id,
            "principalType": ra.principal_type,
            "scope": ra.scope,
            "createdOn": iso(ra.created),
            "updatedOn": iso(ra.updated),
            "createdBy": ra.created_by,
            "updatedBy": ra.updated_by,
        }
        for key, value in (
            ("description", ra.description),
            ("condition", ra.condition),
            ("conditionVersion", ra.condition_version),
            ("delegatedManagedIdentityResourceId", ra.delegated_identity),
        ):
            if value is not None:  # the spec types these as plain strings: omit rather than null
                props[key] = value
        prefix = "" if ra.scope == "/" else ra.scope
        return {
            "properties": props,
            "id": f"{prefix}/providers/Microsoft.Authorization/roleAssignments/{ra.name}",
            "type": "Microsoft.Authorization/roleAssignments",
            "name": ra.name,
        }

    def _check_scope(self, scope: str) -> None:
        parts = norm_scope(scope).split("/")
        if len(parts) > 2 and parts[1].lower() == "subscriptions":
            self._subscription(parts[2])
            if len(parts) > 4 and parts[3].lower() == "resourcegroups":
                self._group(parts[2], parts[4])

    def list_assignments(self, req: Request, scope: str) -> Response:
        flt = req.query.get("$filter", "").strip()
        at_scope = False
        principal: str | None = None
        if flt:
            for clause in re.split(r"\s+and\s+", flt, flags=re.IGNORECASE):
                clause = clause.strip()
                if clause.lower() == "atscope()":
                    at_scope = True
                    continue
                found = re.fullmatch(
                    r"(?:principalId\s+eq\s+'([^']*)'|assignedTo\('([^']*)'\))",
                    clause,
                    re.IGNORECASE,
                )
                if found is None:
                    raise arm_error(
                        400, "UnsupportedQuery", f"The filter '{flt}' is not supported."
                    )
                principal = (found.group(1) or found.group(2) or "").lower()
        with self.world.lock:
            self._check_scope(scope)
            s = norm_scope(scope).lower()
            ancestors = set(self.world.scope_ancestors(s))
            items = []
            for ra in self.world.role_assignments.values():
                rs = ra.scope.lower()
                if principal is not None and ra.principal_id.lower() != principal:
                    continue
                above = rs in ancestors
                below = s == "/" or rs.startswith(s + "/")
                if above or (below and not at_scope):
                    items.append(self.assignment_json(ra))
        return Response(
            200, self._page(req, items, self.faults().role_assignment_page_size, "$skipToken")
        )

    def _assignment(self, scope: str, name: str) -> RoleAssignment | None:
        ra = self.world.role_assignments.get(name.lower())
        if ra is None or ra.scope.lower() != norm_scope(scope).lower():
            return None
        return ra

    def get_assignment(self, req: Request, scope: str, name: str) -> Response:
        with self.world.lock:
            ra = self._assignment(scope, name)
            if ra is None or self._lagging(ra.created, req):
                raise arm_error(
                    404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found."
                )
            return Response(200, self.assignment_json(ra))

    def delete_assignment(self, req: Request, scope: str, name: str) -> Response:
        with self.world.lock:
            ra = self._assignment(scope, name)
            if ra is None:
                return Response(204)
            body = self.assignment_json(ra)
            del self.world.role_assignments[name.lower()]
            self.world.touch()
        return Response(200, body)

    def put_assignment(self, req: Request, scope: str, name: str) -> Response:
        if not _GUID.match(name):
            raise arm_error(
                400,
                "InvalidRoleAssignmentId",
                f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
            )
        body = self._body(req)
        props = body.get("properties")
        if not isinstance(props, dict):
            raise arm_error(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: 'Required property 'properties' not found in JSON.'",
            )
        for required in ("roleDefinitionId", "principalId"):
            if not isinstance(props.get(required), str) or not props.get(required):
                raise arm_error(
                    400,
                    "InvalidRequestContent",
                    f"The request content was invalid and could not be deserialized: 'Required property '{required}' not found in JSON.'",
                )
        principal_id: str = props["principalId"]
        role_ref: str = props["roleDefinitionId"]
        if not _GUID.match(principal_id):
            raise arm_error(
                400,
                "InvalidPrincipalId",
                f"The Principal ID '{principal_id}' is not valid. Principal ID must be a GUID.",
            )
        role_guid = role_ref.rstrip("/").rsplit("/", 1)[-1].lower()
        if not _GUID.match(role_guid) or (
            "/" in role_ref and "/roledefinitions/" not in role_ref.lower()
        ):
            raise arm_error(
                400, "InvalidRoleDefinitionId", f"The role definition ID '{role_ref}' is not valid."
            )
        condition = props.get("condition")
        version = props.get("conditionVersion")
        if version is not None and not condition:
            raise arm_error(
                400,
                "InvalidRoleAssignmentRequest",
                "The conditionVersion property cannot be set without a condition.",
            )
        if condition and (version or "2.0") != "2.0":
            raise arm_error(
                400,
                "InvalidConditionVersion",
                f"The condition version '{version}' is not supported. Supported version is '2.0'.",
            )
        if condition and version is None:
            version = "2.0"
        principal_type = props.get("principalType")
        faults = self.faults()
        with self.world.lock:
            self._check_scope(scope)
            s = norm_scope(scope)
            definition = self.world.role_definitions.get(role_guid)
            ancestors = set(self.world.scope_ancestors(s))
            if definition is None or not any(
                a.lower() in ancestors for a in definition.assignable_scopes
            ):
                raise arm_error(
                    400,
                    "RoleDefinitionDoesNotExist",
                    f"The specified role definition with ID '{role_guid}' does not exist.",
                )
            existing = self.world.role_assignments.get(name.lower())
            if existing is not None:
                same = (
                    existing.principal_id.lower() == principal_id.lower()
                    and existing.scope.lower() == s.lower()
                    and existing.role_guid == role_guid
                )
                if not same:
                    raise arm_error(
                        400,
                        "RoleAssignmentUpdateNotPermitted",
                        "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                    )
                existing.description = props.get("description")
                existing.condition = condition
                existing.condition_version = version
                existing.updated = req.now
                existing.updated_by = req.caller_object_id
                self.world.touch()
                return Response(200, self.assignment_json(existing))
            other = self.world.assignment_for(principal_id, role_guid, s)
            if other is not None:
                raise arm_error(
                    409,
                    "RoleAssignmentExists",
                    f"The role assignment already exists. The ID of the existing role assignment is {other.name.replace('-', '').lower()}.",
                )
            known = self.world.principals.get(principal_id.lower())
            if not self._principal_visible(known, principal_type, req.now, faults):
                raise arm_error(
                    400,
                    "PrincipalNotFound",
                    f"Principal {principal_id.replace('-', '')} does not exist in the directory {self.world.tenant_id}. "
                    "Check that you have the correct principal ID. If you are creating this principal and then "
                    "immediately assigning a role, this error might be related to a replication delay. In this case, "
                    "set the role assignment principalType property to a value, such as ServicePrincipal, User, or "
                    "Group.  See https://aka.ms/docs-principaltype",
                )
            ra = RoleAssignment(
                name=name,
                scope=s,
                role_guid=role_guid,
                principal_id=principal_id,
                principal_type=str(principal_type or (known.type if known else "Unknown")),
                description=props.get("description"),
                condition=condition,
                condition_version=version,
                created=req.now,
                updated=req.now,
                created_by=req.caller_object_id,
                updated_by=req.caller_object_id,
                delegated_identity=props.get("delegatedManagedIdentityResourceId"),
            )
            self.world.role_assignments[name.lower()] = ra
            self.world.touch()
            return Response(201, self.assignment_json(ra))

    @staticmethod
    def _principal_visible(
        p: Principal | None, principal_type: Any, now: float, faults: Faults
    ) -> bool:
        if p is None:
            # With principalType ARM skips the directory lookup (the documented cure for
            # replication delay), so it cannot tell "not replicated yet" from "never existed":
            # the assignment is created and lists as "Identity not found" (README, assumption
            # A-principal-type; tests/live/test_live_arm.py confirms it against a tenant).
            return bool(principal_type)
        age = now - p.created
        if (
            p.identity is not None
            and faults.principal_window_s > 0
            and age < faults.principal_window_s
        ):
            return False  # the injected replication fault: not even principalType helps
        if p.identity is None or age * 1000 >= faults.replication_ms:
            return True
        # still replicating: ARM skips the directory lookup when told the principal type
        return str(principal_type or "").lower() == "serviceprincipal"

    # --- role definitions --------------------------------------------------------------------

    def definition_json(self, guid: str, scope: str) -> dict[str, Any]:
        d = self.world.role_definitions[guid]
        return {
            "id": self.world.role_definition_id(guid, scope),
            "name": guid,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {
                "roleName": d.role_name,
                "type": d.role_type,
                "description": d.description,
                "assignableScopes": list(d.assignable_scopes),
                "permissions": [dict(p) for p in d.permissions],
                "createdOn": "2015-02-02T21:55:09.8806423Z",
                "updatedOn": "2024-01-01T00:00:00.0000000Z",
            },
        }

    def list_definitions(self, req: Request, scope: str) -> Response:
        flt = req.query.get("$filter", "").strip()
        name: str | None = None
        role_type: str | None = None
        for clause in re.split(r"\s+and\s+", flt, flags=re.IGNORECASE) if flt else []:
            found = re.fullmatch(r"(roleName|type)\s+eq\s+'([^']*)'", clause.strip(), re.IGNORECASE)
            if found is None and clause.strip().lower() == "atscopeandbelow()":
                continue
            if found is None:
                raise arm_error(400, "UnsupportedQuery", f"The filter '{flt}' is not supported.")
            if found.group(1).lower() == "rolename":
                name = found.group(2).lower()
            else:
                role_type = found.group(2).lower()
        with self.world.lock:
            self._check_scope(scope)
            ancestors = set(self.world.scope_ancestors(scope))
            items = [
                self.definition_json(d.guid, scope)
                for d in self.world.role_definitions.values()
                if any(a.lower() in ancestors for a in d.assignable_scopes)
                and (name is None or d.role_name.lower() == name)
                and (role_type is None or d.role_type.lower() == role_type)
            ]
        return Response(
            200, self._page(req, items, self.faults().role_definition_page_size, "$skipToken")
        )

    def get_definition(self, req: Request, scope: str, guid: str) -> Response:
        with self.world.lock:
            if scope != "/":
                self._check_scope(scope)
            if guid.lower() not in self.world.role_definitions:
                raise arm_error(
                    404,
                    "RoleDefinitionDoesNotExist",
                    f"The specified role definition with ID '{guid}' does not exist.",
                )
            return Response(200, self.definition_json(guid.lower(), scope))
