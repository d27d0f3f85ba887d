"""Azure DevOps: connection data, projects, pipelines, service endpoints 7.1 and pipeline
permissions 7.1-preview.1, under ``/devops/{organization}/...``.

Choices where the service's behaviour is not documented (azure-contracts.md §3): deleting an
unknown endpoint id answers 204; a duplicate name is 409; pipeline permission PATCHes check
that the endpoint and the pipelines exist in the project (400/404), GETs do not.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.sim.faults import Faults
from reconciler.sim.protocol import Request, Response, ado_error
from reconciler.sim.seed import federation
from reconciler.sim.world import (
    SECRET_PARAMETERS,
    SECRET_SET,
    Endpoint,
    Fic,
    Organization,
    PermissionSet,
    Project,
    World,
    iso,
    stable_uuid,
)

# Parameters the service generates for workload identity federation; clients cannot set them.
SERVER_PARAMETERS = (
    "workloadIdentityFederationIssuer",
    "workloadIdentityFederationSubject",
    "workloadIdentityFederationIssuerType",
)
# Top-level fields the service generates; with ``strict_update`` an update carrying one is refused.
SERVER_FIELDS = ("createdBy", "isReady", "isShared", "operationStatus")
# ?operation= values an azurerm update accepts (the service's SpnOperation enum, parsed with
# case; docs/research/convert-authentication-scheme.md, S1)
CONVERT = "ConvertAuthenticationScheme"
SPN_OPERATIONS = ("Create", "Update", "Delete", "AssignPermissions", "None", CONVERT)
# parameters a WorkloadIdentityFederation azurerm connection keeps; an upgrade drops the rest
# (the secret, authenticationType) and keeps them for a revert
WIF_KEEP = frozenset(
    {"serviceprincipalid", "tenantid", "scope"} | {k.lower() for k in SERVER_PARAMETERS}
)
# the service's default CleanUpOldSecretsAfterUpgradeDelayInMinutes: 10080 (7 days) (S1)
REVERT_WINDOW_S = 10080 * 60
CONVERTING = {"state": "InProgress", "statusMessage": "converting_scheme"}
AUDIENCE = "api://AzureADTokenExchange"
LATEST_VERSION = (7, 2)
_VERSION = re.compile(r"^(\d+)\.(\d+)(-preview(\.\d+)?)?$")


@dataclass
class Route:
    op: str
    handler: Callable[[Request], Response]
    preview_required: bool = False


class DevOps:
    def __init__(self, world: World, faults: Callable[[], Faults]) -> None:
        self.world = world
        self.faults = faults
        # records an audit log entry (sim/auditlog.py; set by the server): (request,
        # organisation, actionId, data, project or None)
        self.audit: Callable[[Request, Organization, str, dict[str, Any], Project | None], None]
        self.audit = lambda req, org, action, data, project: None

    # --- routing -----------------------------------------------------------------------------

    def route(self, req: Request) -> Route:
        seg = req.segments[1:]  # drop "devops"
        low = [s.lower() for s in seg]
        m = req.method
        if not seg:
            raise ado_error(404, "The organization could not be found.", "NotFoundException")
        org = seg[0]
        rest, lrest = seg[1:], low[1:]
        if lrest[:1] == ["_apis"]:
            api = lrest[1:]
            if api == ["connectiondata"] and m == "GET":
                # a preview-only resource: a plain "7.1" is refused, no version means the latest
                return Route("ConnectionData", lambda r: self.connection_data(r, org), True)
            if api == ["projects"] and m == "GET":
                return Route("Projects_List", lambda r: self.list_projects(r, org))
            if len(api) == 2 and api[0] == "projects" and m == "GET":
                return Route("Projects_Get", lambda r: self.get_project(r, org, rest[2]))
            if api[:2] == ["serviceendpoint", "endpoints"]:
                if len(api) == 2 and m == "POST":
                    return Route("ServiceEndpoints_Create", lambda r: self.create_endpoint(r, org))
                if len(api) == 2 and m == "PUT":
                    return Route("ServiceEndpoints_UpdateMany", lambda r: self.update_many(r, org))
                if len(api) == 3:
                    eid = rest[3]
                    if m == "PUT":
                        return Route(
                            "ServiceEndpoints_Update", lambda r: self.update_endpoint(r, org, eid)
                        )
                    if m == "DELETE":
                        return Route(
                            "ServiceEndpoints_Delete",
                            lambda r: self.delete_endpoint(r, org, eid, None),
                        )
                    if m == "PATCH":
                        return Route(
                            "ServiceEndpoints_Share", lambda r: self.share_endpoint(r, org, eid)
                        )
        elif len(lrest) >= 2 and lrest[1] == "_apis":
            project = rest[0]
            api, orig = lrest[2:], rest[2:]
            if api[:2] == ["serviceendpoint", "endpoints"]:
                if len(api) == 2 and m == "GET":
                    return Route(
                        "ServiceEndpoints_List", lambda r: self.list_endpoints(r, org, project)
                    )
                if len(api) == 2 and m == "POST" and "endpointids" in req.query:
                    return Route(
                        "ServiceEndpoints_GetWithRefreshedAuthentication",
                        lambda r: self.list_endpoints(r, org, project),
                    )
                if len(api) == 2 and m == "POST":
                    # the pre-7.0 form: create inside the project named in the path
                    return Route(
                        "ServiceEndpoints_Create", lambda r: self.create_endpoint(r, org, project)
                    )
                if len(api) == 2 and m == "PUT":
                    return Route("ServiceEndpoints_UpdateMany", lambda r: self.update_many(r, org))
                if len(api) == 3:
                    eid = orig[2]
                    if m == "GET":
                        return Route(
                            "ServiceEndpoints_Get",
                            lambda r: self.get_endpoint(r, org, project, eid),
                        )
                    if m == "PUT":
                        return Route(
                            "ServiceEndpoints_Update",
                            lambda r: self.update_endpoint(r, org, eid, project),
                        )
                    if m == "DELETE":
                        # the older project-scoped form deletes the project's reference
                        return Route(
                            "ServiceEndpoints_Delete",
                            lambda r: self.delete_endpoint(r, org, eid, project),
                        )
            if api == ["pipelines"] and m == "GET":
                return Route("Pipelines_List", lambda r: self.list_pipelines(r, org, project))
            if api[:2] == ["pipelines", "pipelinepermissions"]:
                if len(api) == 2 and m == "PATCH":
                    return Route(
                        "PipelinePermissions_UpdateMany",
                        lambda r: self.patch_many(r, org, project),
                        True,
                    )
                if len(api) == 4:
                    rtype, rid = orig[2], orig[3]
                    if m == "GET":
                        return Route(
                            "PipelinePermissions_Get",
                            lambda r: self.get_permissions(r, org, project, rtype, rid),
                            True,
                        )
                    if m == "PATCH":
                        return Route(
                            "PipelinePermissions_Update",
                            lambda r: self.patch_permissions(r, org, project, rtype, rid),
                            True,
                        )
        raise ado_error(
            404,
            f"The controller for path '/{'/'.join(req.segments)}' was not found or does not implement IController.",
            "NotFoundException",
            event_id=0,
        )

    @staticmethod
    def check_api_version(req: Request, route: Route) -> None:
        version = req.query.get("api-version")
        if version is None:
            found = re.search(r"api-version=([^;,\s]+)", req.headers.get("accept", ""))
            version = found.group(1) if found else None
        if version is None:
            if req.method == "GET":
                return  # GETs default to the latest released version
            raise ado_error(
                400,
                f"No api-version was supplied for the {req.method} request. The version must be supplied either as part "
                'of the Accept header (e.g. "application/json; api-version=1.0") or as a query parameter '
                '(e.g. "?api-version=1.0").',
                "VssVersionNotSpecifiedException",
            )
        found = _VERSION.match(version)
        if found is None:
            raise ado_error(
                400,
                f"The 'api-version' parameter value '{version}' is not valid.",
                "VssInvalidApiVersionException",
            )
        if (int(found.group(1)), int(found.group(2))) > LATEST_VERSION:
            raise ado_error(
                400,
                f"The requested REST API version of {version} is out of range for this server. The latest REST API "
                f"version for this server is {LATEST_VERSION[0]}.{LATEST_VERSION[1]}.",
                "VssVersionOutOfRangeException",
            )
        if route.preview_required and not found.group(3):
            raise ado_error(
                400,
                f'The requested version "{version}" of the resource is under preview. The -preview flag must be '
                f'supplied in the api-version for such requests. For example: "{version}-preview"',
                "VssInvalidPreviewVersionException",
            )

    # --- helpers -----------------------------------------------------------------------------

    def _org(self, name: str) -> Organization:
        org = self.world.organizations.get(name.lower())
        if org is None:
            raise ado_error(
                404,
                f"VS800075: The organization '{name}' does not exist.",
                "NotFoundException",
                event_id=0,
            )
        return org

    def _project(self, org: Organization, ref: str) -> Project:
        project = org.project(ref)
        if project is None:
            raise ado_error(
                404,
                f"TF200016: The following project does not exist: {ref}. Verify that the name of the project is "
                "correct and that the project exists on the specified Azure DevOps Server.",
                "ProjectDoesNotExistWithNameException",
            )
        return project

    def _body(self, req: Request) -> Any:
        try:
            return req.json()
        except ValueError as exc:
            raise ado_error(
                400, f"The request body could not be parsed: {exc}", "InvalidRequestException"
            ) from exc

    def _user(self, req: Request) -> dict[str, Any]:
        name = req.client.display_name if req.client else req.caller
        oid = req.caller_object_id or stable_uuid("user", req.caller)
        return {
            "displayName": name,
            "id": oid,
            "uniqueName": req.caller,
            "descriptor": f"aadsp.{oid.replace('-', '')}",
        }

    def _audit(
        self,
        req: Request,
        org: Organization,
        action: str,
        data: dict[str, Any],
        project: Project | None = None,
    ) -> None:
        """An audit log entry for a change the caller made (kept only while auditing is on)."""
        self.audit(req, org, action, data, project)

    def _audit_projects(
        self,
        req: Request,
        org: Organization,
        action: str,
        many: str,
        data: dict[str, Any],
        projects: list[Project],
    ) -> None:
        """One entry for a change in one project (``action``, with ``ProjectId``), or one
        ``many`` entry with ``ProjectIds`` for several; nothing for none."""
        if len(projects) == 1:
            self._audit(req, org, action, {**data, "ProjectId": projects[0].id}, projects[0])
        elif projects:
            self._audit(req, org, many, {**data, "ProjectIds": [p.id for p in projects]})

    @staticmethod
    def connection_data_fields(e: Endpoint) -> dict[str, Any]:
        """The ``data`` of a service connection's audit entries [doc: auditing-events.md names
        ConnectionName and ConnectionType; ConnectionId is an assumption]."""
        return {"ConnectionId": e.id, "ConnectionName": e.name, "ConnectionType": e.type}

    def _ready(self, e: Endpoint, now: float) -> bool:
        return (now - e.created) * 1000 >= self.faults().ready_after_ms

    def _ref(self, e: Endpoint, project: Project) -> dict[str, Any] | None:
        for ref in e.project_refs:
            pid = str((ref.get("projectReference") or {}).get("id", "")).lower()
            if pid == project.id.lower():
                return ref
        return None

    def _name_in(self, e: Endpoint, project: Project) -> str:
        ref = self._ref(e, project)
        return str(ref.get("name") or e.name) if ref else e.name

    @staticmethod
    def masked(parameters: dict[str, str | None]) -> dict[str, str | None]:
        """The parameters as the service returns them: secrets are kept but read as null."""
        return {k: None if k.lower() in SECRET_PARAMETERS else v for k, v in parameters.items()}

    def endpoint_json(self, e: Endpoint, project: Project | None, now: float) -> dict[str, Any]:
        ready = self._ready(e, now)
        refs = copy.deepcopy(e.project_refs)
        if self.faults().reverse_references:
            refs.reverse()
        return {
            "data": copy.deepcopy(e.data),
            "id": e.id,
            "name": self._name_in(e, project) if project else e.name,
            "type": e.type,
            "url": e.url,
            "createdBy": dict(e.created_by),
            "description": e.description,
            "authorization": {"parameters": self.masked(e.parameters), "scheme": e.scheme},
            "isShared": len(e.project_refs) > 1,
            "isReady": ready,
            "owner": e.owner,
            "serviceEndpointProjectReferences": refs,
            "operationStatus": (
                dict(e.operation_status)
                if ready and e.operation_status
                else {"state": "Ready", "statusMessage": ""}
                if ready
                else {
                    "state": "InProgress",
                    "statusMessage": "Service connection is being created.",
                }
            ),
        }

    # --- asynchronous delete ---------------------------------------------------------------

    def _lagging(self, org: Organization, now: float) -> list[tuple[Endpoint, float]]:
        """Deleted connections of ``org`` still visible (``delete_lag_s``), with their age;
        those past the window are forgotten."""
        lag = self.faults().delete_lag_s
        out = []
        for key, (e, deleted) in list(self.world.deleted_endpoints.items()):
            if now - deleted >= lag:
                del self.world.deleted_endpoints[key]
            elif e.organization == org.name.lower():
                out.append((e, now - deleted))
        return out

    def _deleted_json(
        self, e: Endpoint, project: Project, now: float, age: float
    ) -> dict[str, Any]:
        """A connection being deleted: as it was for the first half of the window, then the
        partial object the service is reported to return (``authorization`` null)."""
        whole = self.endpoint_json(e, project, now)
        faults = self.faults()
        whole_for = faults.delete_whole_s
        if age < (faults.delete_lag_s / 2 if whole_for is None else whole_for):
            return whole
        return {
            "id": e.id,
            "name": whole["name"],
            "type": e.type,
            "authorization": None,
            "data": None,
            "isReady": False,
            "isShared": False,
            "serviceEndpointProjectReferences": whole["serviceEndpointProjectReferences"],
        }

    def _duplicate(
        self, org: Organization, project: Project, name: str, exclude: str | None
    ) -> None:
        for e in self.world.endpoints_of(org.name):
            if (
                e.id.lower() != (exclude or "").lower()
                and self._ref(e, project) is not None
                and self._name_in(e, project).lower() == name.lower()
            ):
                raise ado_error(
                    409,
                    f"Service connection with name {name} already exists. Only a user having Administrator/User role "
                    f"permissions on service connection {name} can see it.",
                    "DuplicateServiceConnectionException",
                )

    @staticmethod
    def _parameters(raw: Any) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        if isinstance(raw, dict):
            for k, v in raw.items():
                if k in SERVER_PARAMETERS:
                    continue
                # a secret is remembered as set, never kept (nothing secret reaches a state
                # file); a conversion drops it, a revert restores it; it is read as null
                secret = str(k).lower() in SECRET_PARAMETERS
                out[str(k)] = None if v is None else SECRET_SET if secret else str(v)
        return out

    def _references(
        self, org: Organization, refs: Any, default_name: str
    ) -> list[tuple[Project, dict[str, Any]]]:
        out: list[tuple[Project, dict[str, Any]]] = []
        for ref in refs if isinstance(refs, list) else []:
            pref = (ref or {}).get("projectReference") or {}
            project = self._project(org, str(pref.get("id") or pref.get("name") or ""))
            out.append(
                (
                    project,
                    {
                        "projectReference": {"id": project.id, "name": project.name},
                        "name": str(ref.get("name") or default_name),
                        "description": str(ref.get("description") or ""),
                    },
                )
            )
        return out

    # --- organisation, projects, pipelines ------------------------------------------------------

    def connection_data(self, req: Request, org_name: str) -> Response:
        with self.world.lock:
            org = self._org(org_name)
            user = self._user(req)
            identity = {
                "id": user["id"],
                "descriptor": f"Microsoft.TeamFoundation.ServiceIdentity;{self.world.tenant_id}\\{req.caller}",
                "subjectDescriptor": user["descriptor"],
                "providerDisplayName": user["displayName"],
                "isActive": True,
                "properties": {},
                "resourceVersion": 2,
                "metaTypeId": 255,
            }
            return Response(
                200,
                {
                    "authenticatedUser": identity,
                    "authorizedUser": identity,
                    "instanceId": org.id,
                    "deploymentId": stable_uuid("deployment", org.id),
                    "deploymentType": "hosted",
                    "locationServiceData": {
                        "serviceOwner": "00025394-6065-48ca-87d9-7f5672854ef7",
                        "defaultAccessMappingMoniker": "PublicAccessMapping",
                        "lastChangeId": 1,
                        "lastChangeId64": 1,
                    },
                },
            )

    def _project_json(self, req: Request, org: Organization, p: Project) -> dict[str, Any]:
        return {
            "id": p.id,
            "name": p.name,
            "description": p.description,
            "url": f"{req.base_url}/devops/{org.name}/_apis/projects/{p.id}",
            "state": "wellFormed",
            "revision": 1,
            "visibility": "private",
            "lastUpdateTime": "2024-01-01T00:00:00.000Z",
        }

    def _page(self, req: Request, items: list[dict[str, Any]]) -> Response:
        """``{count, value}`` with ``x-ms-continuationtoken`` when more remain (projects and
        pipelines page like this; ``$top`` or ``devops_page_size`` sets the page)."""
        size = self.faults().devops_page_size
        top = req.query.get("$top")
        if top is not None and top.isdigit() and int(top) > 0:
            size = int(top)
        raw = req.query.get("continuationtoken", "0")
        start = int(raw) if raw.isdigit() else 0
        page = items[start : start + size]
        headers = {}
        if start + size < len(items):
            headers["x-ms-continuationtoken"] = str(start + size)
        return Response(200, {"count": len(page), "value": page}, headers)

    def list_projects(self, req: Request, org_name: str) -> Response:
        with self.world.lock:
            org = self._org(org_name)
            items = [self._project_json(req, org, p) for p in org.projects.values()]
        return self._page(req, items)

    def get_project(self, req: Request, org_name: str, ref: str) -> Response:
        with self.world.lock:
            org = self._org(org_name)
            return Response(200, self._project_json(req, org, self._project(org, ref)))

    def list_pipelines(self, req: Request, org_name: str, project_ref: str) -> Response:
        with self.world.lock:
            org = self._org(org_name)
            project = self._project(org, project_ref)
            base = f"{req.base_url}/devops/{org.name}/{project.id}/_apis/pipelines"
            items = [
                {
                    "_links": {"self": {"href": f"{base}/{p.id}?revision=1"}},
                    "url": f"{base}/{p.id}?revision=1",
                    "id": p.id,
                    "revision": 1,
                    "name": p.name,
                    "folder": p.folder,
                }
                for p in sorted(project.pipelines.values(), key=lambda p: p.id)
            ]
        return self._page(req, items)

    # --- service endpoints -------------------------------------------------------------------

    def create_endpoint(
        self, req: Request, org_name: str, in_project: str | None = None
    ) -> Response:
        body = self._body(req)
        with self.world.lock:
            org = self._org(org_name)
            legacy = in_project is not None and isinstance(body, dict)
            if legacy and not body.get("serviceEndpointProjectReferences"):
                project = self._project(org, str(in_project))
                body["serviceEndpointProjectReferences"] = [
                    {"projectReference": {"id": project.id}, "name": body.get("name")}
                ]
            if not isinstance(body, dict):
                raise ado_error(
                    400,
                    "Value cannot be null.\r\nParameter name: endpoint",
                    "ArgumentNullException",
                    event_id=0,
                )
            name = str(body.get("name") or "").strip()
            if not name:
                raise ado_error(
                    400,
                    "Value cannot be null.\r\nParameter name: endpoint.Name",
                    "ArgumentNullException",
                    event_id=0,
                )
            etype = str(body.get("type") or "")
            if not etype:
                raise ado_error(
                    400,
                    "Value cannot be null.\r\nParameter name: endpoint.Type",
                    "ArgumentNullException",
                    event_id=0,
                )
            refs = self._references(org, body.get("serviceEndpointProjectReferences"), name)
            if not refs:
                raise ado_error(
                    400,
                    "At least one project reference required to create an endpoint.",
                    "ArgumentException",
                    event_id=0,
                )
            for project, ref in refs:
                self._duplicate(org, project, ref["name"], None)
            auth = body.get("authorization") or {}
            scheme = str(auth.get("scheme") or "None")
            asked = (auth.get("parameters") or {}).get("workloadIdentityFederationIssuerType")
            params = self._parameters(auth.get("parameters"))
            eid = str(uuid.uuid4())
            if scheme.lower() == "workloadidentityfederation":
                if not params.get("serviceprincipalid"):
                    raise ado_error(
                        400,
                        "The authorization parameter 'serviceprincipalid' is required for a workload identity federation service connection in manual mode.",
                        "ArgumentException",
                        event_id=0,
                    )
                # a client may ask for the Entra issuer where the organisation's default is
                # still the Azure DevOps one (Microsoft's samples send it; README assumption)
                entra = "EntraID" if str(asked or "").lower() == "entraid" else None
                issuer, subject, kind = self._federation(org, refs[0][0].name, name, eid, entra)
                params.update(
                    workloadIdentityFederationIssuer=issuer,
                    workloadIdentityFederationSubject=subject,
                    workloadIdentityFederationIssuerType=kind,
                )
            endpoint = Endpoint(
                id=eid,
                organization=org.name.lower(),
                name=name,
                type=etype,
                url=str(body.get("url") or "https://management.azure.com/"),
                description=str(body.get("description") or ""),
                owner=str(body.get("owner") or "library"),
                scheme=scheme,
                parameters=params,
                data={str(k): v for k, v in (body.get("data") or {}).items()},
                project_refs=[ref for _, ref in refs],
                created=req.now,
                created_by=self._user(req),
            )
            self.world.endpoints[eid] = endpoint
            self.world.touch()
            data = self.connection_data_fields(endpoint)
            self._audit_projects(
                req,
                org,
                "Library.ServiceConnectionCreated",
                "Library.ServiceConnectionCreatedForMultipleProjects",
                data,
                [p for p, _ in refs],
            )
            return Response(200, self.endpoint_json(endpoint, refs[0][0], req.now))

    def get_endpoint(self, req: Request, org_name: str, project_ref: str, eid: str) -> Response:
        with self.world.lock:
            org = self._org(org_name)
            project = self._project(org, project_ref)
            e = self.world.endpoints.get(eid.lower())
            if e is None:
                for gone, age in self._lagging(org, req.now):
                    if gone.id.lower() == eid.lower() and self._ref(gone, project) is not None:
                        return Response(200, self._deleted_json(gone, project, req.now, age))
            lag = self.faults().lag_ms
            if (
                e is None
                or e.organization != org.name.lower()
                or self._ref(e, project) is None
                or (lag > 0 and (req.now - e.created) * 1000 < lag)
            ):
                return Response(200, None, null_body=True)
            return Response(200, self.endpoint_json(e, project, req.now))

    def list_endpoints(self, req: Request, org_name: str, project_ref: str) -> Response:
        q = req.query

        def csv(name: str) -> set[str] | None:
            raw = q.get(name.lower())
            return {v.strip().lower() for v in raw.split(",") if v.strip()} if raw else None

        types, schemes, ids, names = (
            csv("type"),
            csv("authSchemes"),
            csv("endpointIds"),
            csv("endpointNames"),
        )
        owner = q.get("owner", "").lower() or None
        include_failed = q.get("includefailed", "").lower() == "true"
        with self.world.lock:
            org = self._org(org_name)
            project = self._project(org, project_ref)
            items = []
            for e in self.world.endpoints_of(org.name):
                if self._ref(e, project) is None:
                    continue
                if types is not None and e.type.lower() not in types:
                    continue
                if schemes is not None and e.scheme.lower() not in schemes:
                    continue
                if ids is not None and e.id.lower() not in ids:
                    continue
                if names is not None and self._name_in(e, project).lower() not in names:
                    continue
                if owner is not None and e.owner.lower() != owner:
                    continue
                if not include_failed and not self._ready(e, req.now):
                    continue
                items.append(self.endpoint_json(e, project, req.now))
            for gone, age in self._lagging(org, req.now):
                if self._ref(gone, project) is None:
                    continue
                if ids is not None and gone.id.lower() not in ids:
                    continue
                if names is not None and self._name_in(gone, project).lower() not in names:
                    continue
                items.append(self._deleted_json(gone, project, req.now, age))
        return Response(200, {"count": len(items), "value": items})

    def _endpoint(self, org: Organization, eid: str) -> Endpoint:
        e = self.world.endpoints.get(eid.lower())
        if e is None or e.organization != org.name.lower():
            raise ado_error(
                404,
                f"Service connection with id '{eid}' could not be found.",
                "ServiceEndpointNotFoundException",
            )
        return e

    def update_endpoint(
        self, req: Request, org_name: str, eid: str, project_ref: str | None = None
    ) -> Response:
        body = self._body(req)
        operation = req.query.get("operation", "")
        if operation.lower() == CONVERT.lower():  # the service compares it ignoring case
            return self.convert_endpoint(req, org_name, eid, project_ref, body)
        with self.world.lock:
            org = self._org(org_name)
            e = self._endpoint(org, eid)
            if not isinstance(body, dict):
                raise ado_error(
                    400,
                    "Value cannot be null.\r\nParameter name: endpoint",
                    "ArgumentNullException",
                    event_id=0,
                )
            self._check_operation(operation, str(body.get("type") or e.type))
            if self.faults().strict_update:
                self._refuse_server_fields(body)
            auth = body.get("authorization") or {}
            scheme = str(auth.get("scheme") or e.scheme)
            converting = scheme.lower() != e.scheme.lower()
            if converting:
                raise ado_error(
                    400,
                    "The authorization scheme of a service connection can only be changed with operation=ConvertAuthenticationScheme.",
                    "ArgumentException",
                    event_id=0,
                )
            name = str(body.get("name") or e.name).strip()
            body_refs = {
                str((r.get("projectReference") or {}).get("id", "")).lower(): r
                for r in (body.get("serviceEndpointProjectReferences") or [])
                if isinstance(r, dict)
            }
            new_refs = []
            for ref in e.project_refs:
                pid = str(ref["projectReference"]["id"]).lower()
                project = org.project(pid)
                updated = dict(ref)
                given = body_refs.get(pid, {})
                ref_name = str(given.get("name") or ref.get("name") or name)
                # a rename sent with the references read back unchanged renames them too
                updated["name"] = name if ref_name == e.name else ref_name
                if "description" in given:
                    updated["description"] = str(given.get("description") or "")
                if project is not None:
                    self._duplicate(org, project, str(updated["name"]), e.id)
                new_refs.append(updated)
            params = (
                self._parameters(auth.get("parameters"))
                if "parameters" in auth
                else dict(e.parameters)
            )
            for key in SERVER_PARAMETERS:  # generated by the service, never by the client
                if key in e.parameters:
                    params[key] = e.parameters[key]
            for key, value in e.parameters.items():
                # a secret read back as null and sent again is kept, as the service merges it
                if key.lower() in SECRET_PARAMETERS and params.get(key, "") is None and value:
                    params[key] = value
            renamed = name != e.name
            e.name = name
            e.scheme = scheme
            e.parameters = params
            e.project_refs = new_refs
            if renamed:
                self.regenerate_legacy_subject(org, e)
            if "description" in body:
                e.description = str(body.get("description") or "")
            if body.get("url"):
                e.url = str(body["url"])
            if isinstance(body.get("data"), dict):
                e.data = dict(body["data"])
            if body.get("owner"):
                e.owner = str(body["owner"])
            self.world.touch()
            first_project = (
                org.project(str(e.project_refs[0]["projectReference"]["id"]))
                if e.project_refs
                else None
            )
            self._audit(
                req, org, "Library.ServiceConnectionModified", self.connection_data_fields(e)
            )
            return Response(200, self.endpoint_json(e, first_project, req.now))

    @staticmethod
    def _refuse_server_fields(body: dict[str, Any]) -> None:
        """``strict_update``: a body carrying what the service generates is refused."""
        found = [k for k in SERVER_FIELDS if k in body]
        params = (body.get("authorization") or {}).get("parameters") or {}
        found += [k for k in SERVER_PARAMETERS if isinstance(params, dict) and k in params]
        if found:
            raise ado_error(
                400,
                f"The service connection contains read-only properties: {', '.join(found)}.",
                "ArgumentException",
                event_id=0,
            )

    @staticmethod
    def _check_operation(operation: str, etype: str) -> None:
        """``?operation=`` on a plain update: only azurerm takes one, and only a value of the
        service's ``SpnOperation`` enum (S1: ``EnsureOperationSupportedForEndpoint``)."""
        if not operation:
            return
        if etype.lower() != "azurerm":
            raise ado_error(
                400,
                f"Operation '{operation}' is not supported for service connection type '{etype}'.",
                "ServiceEndpointException",
            )
        if operation not in SPN_OPERATIONS:
            raise ado_error(
                400,
                f"Operation '{operation}' is invalid. Allowed operation values are Create, Update, "
                "Delete and AssignPermissions.",
                "ServiceEndpointException",
            )

    def convert_endpoint(
        self, req: Request, org_name: str, eid: str, project_ref: str | None, body: Any
    ) -> Response:
        """``PUT .../endpoints/{id}?operation=ConvertAuthenticationScheme``: the three forms
        the simulator accepts (README, "Converting a connection in place"):

        - ``ServicePrincipal`` -> ``WorkloadIdentityFederation`` (upgrade): the secret and
          ``authenticationType`` are dropped (kept for a revert until
          ``data.revertSchemeDeadline``, now + 7 days), the issuer and subject generated;
        - ``WorkloadIdentityFederation`` -> ``ServicePrincipal`` before that deadline (revert);
        - ``WorkloadIdentityFederation`` on the Azure DevOps issuer, with
          ``authorization.parameters.workloadIdentityFederationIssuerType: EntraID`` (the issuer
          switch; a hypothesis).

        The id, project references and pipeline permissions are kept. The body may carry only
        what the connection already has (any other value: 400 ``UpgradeCannotChangeProperties``).
        An upgrade or switch whose identity cannot sign in with the new issuer and subject yet
        (a managed identity without the matching federated credential) answers 202 with the
        connection unchanged and ``operationStatus`` ``InProgress``/``converting_scheme``; the
        same request once the credential exists completes it (200)."""
        with self.world.lock:
            org = self._org(org_name)
            if not isinstance(body, dict):
                raise ado_error(
                    400,
                    "Value cannot be null.\r\nParameter name: endpoint",
                    "ArgumentNullException",
                    event_id=0,
                )
            auth = body.get("authorization")
            if not isinstance(auth, dict):
                raise ado_error(
                    400,
                    "Value cannot be null.\r\nParameter name: endpoint.Authorization",
                    "ArgumentNullException",
                    event_id=0,
                )
            shapes = (
                ("authorization.parameters", auth.get("parameters"), dict),
                ("data", body.get("data"), dict),
                ("createdBy", body.get("createdBy"), dict),
                (
                    "serviceEndpointProjectReferences",
                    body.get("serviceEndpointProjectReferences"),
                    list,
                ),
            )
            for where, value, kind_of in shapes:
                if value is not None and not isinstance(value, kind_of):
                    raise ado_error(
                        400,
                        f"The request body could not be parsed: {where} is not a JSON "
                        f"{'object' if kind_of is dict else 'array'}.",
                        "InvalidRequestException",
                    )
            if any(
                not isinstance(r, dict) for r in body.get("serviceEndpointProjectReferences") or []
            ):
                raise ado_error(
                    400,
                    "The request body could not be parsed: a project reference is not a JSON object.",
                    "InvalidRequestException",
                )
            target = str(auth.get("scheme") or "")
            if not target:
                raise ado_error(
                    400,
                    "Value cannot be null.\r\nParameter name: targetAuthenticationScheme",
                    "ArgumentNullException",
                    event_id=0,
                )
            refs = body.get("serviceEndpointProjectReferences")
            first = refs[0] if isinstance(refs, list) and refs else None
            first_id = str(((first or {}).get("projectReference") or {}).get("id") or "")
            if not first_id:
                raise ado_error(
                    400,
                    "Project reference must be set in the updated endpoint.",
                    "ArgumentException",
                    event_id=0,
                )
            e = self.world.endpoints.get(eid.lower())
            if e is None or e.organization != org.name.lower():
                raise ado_error(
                    404,
                    f"No service connection found with identifier {eid}.",
                    "ServiceEndpointNotFoundException",
                )
            home = org.project(str(e.project_refs[0]["projectReference"]["id"]))
            asked = [first_id]
            if project_ref is not None:
                asked.append(self._project(org, project_ref).id)
            for pid in asked:
                scope = org.project(pid)
                if scope is None or self._ref(e, scope) is None:
                    raise ado_error(
                        404,
                        f"No service connection found with identifier {eid}.",
                        "ServiceEndpointNotFoundException",
                    )
                if home is not None and scope.id != home.id:
                    raise ado_error(
                        400,
                        f"Service connection '{e.name}' is shared from project '{home.name}'; "
                        "its authentication scheme can be converted only from that project.",
                        "ArgumentException",
                        event_id=0,
                    )
            kind = self._conversion(e, target, auth.get("parameters"))
            self._assert_not_modified(e, body, allow_issuer_type=kind == "issuer")
            if kind == "revert":
                reverted = self._revert(e, req, home)
                self._audit(
                    req, org, "Library.ServiceConnectionModified", self.connection_data_fields(e)
                )
                return Response(200, reverted)
            forced = "EntraID" if kind == "issuer" else None
            issuer, subject, issuer_type = self._federation(
                org, home.name if home else "", e.name, e.id, forced
            )
            if not self._can_sign_in(
                e.parameters.get("serviceprincipalid"), issuer, subject, req.now
            ):
                e.operation_status = dict(CONVERTING)
                self.world.touch()
                answer = self.endpoint_json(e, home, req.now)
                if self.faults().subject_drift:
                    # the fault's second half: the answer shows the pair the service waits for
                    # (README, ``subject-drift``), as the portal shows it to add by hand
                    answer["authorization"]["parameters"].update(
                        workloadIdentityFederationIssuer=issuer,
                        workloadIdentityFederationSubject=subject,
                    )
                return Response(202, answer)
            if kind == "upgrade":
                e.recovery = {k: v for k, v in e.parameters.items() if k.lower() not in WIF_KEEP}
                e.parameters = {k: v for k, v in e.parameters.items() if k.lower() in WIF_KEEP}
                e.scheme = "WorkloadIdentityFederation"
                e.data["revertSchemeDeadline"] = _dotnet_round_trip(req.now + REVERT_WINDOW_S)
            e.parameters.update(
                workloadIdentityFederationIssuer=issuer,
                workloadIdentityFederationSubject=subject,
                workloadIdentityFederationIssuerType=issuer_type,
            )
            e.operation_status = None
            self.world.touch()
            # a scheme conversion is a modification in the audit log (no action of its own is
            # documented)
            self._audit(
                req, org, "Library.ServiceConnectionModified", self.connection_data_fields(e)
            )
            return Response(200, self.endpoint_json(e, home, req.now))

    @staticmethod
    def _conversion(e: Endpoint, target: str, raw: Any) -> str:
        """Which of the accepted conversions ``target`` asks for: upgrade, revert or issuer;
        400 ``ConversionBetweenAuthSchemesNotSupported`` for anything else."""
        current = e.scheme.lower()
        wanted = target.lower()
        asked_type = ""
        if isinstance(raw, dict):
            for k, v in raw.items():
                if str(k).lower() == "workloadidentityfederationissuertype":
                    asked_type = str(v or "").lower()
        now_type = str(e.parameters.get("workloadIdentityFederationIssuerType") or "").lower()
        if e.type.lower() == "azurerm":
            if current == "serviceprincipal" and wanted == "workloadidentityfederation":
                return "upgrade"
            if current == "workloadidentityfederation" and wanted == "serviceprincipal":
                return "revert"
            if (
                current == wanted == "workloadidentityfederation"
                and asked_type == "entraid"
                and now_type != "entraid"
            ):
                return "issuer"
        raise ado_error(
            400,
            f"Converting endpoint type {e.type} scheme from {e.scheme} to {target} is neither an "
            "upgrade or a downgrade and is not supported.",
            "ArgumentException",
            event_id=0,
        )

    def _assert_not_modified(
        self, e: Endpoint, body: dict[str, Any], *, allow_issuer_type: bool
    ) -> None:
        """A conversion changes the scheme and nothing else: every property the body carries
        must equal the connection's (S1: ``ServiceEndpointValidator.AssertEndpointNotModified``).
        Absent properties are fine; secrets compare as read (null)."""

        def refuse(prop: str) -> None:
            raise ado_error(
                400,
                "Properties cannot be changed during service connection upgrade. Property "
                f"{prop.lower()} does not match current endpoint value. Set it to the original "
                "value or do not provide at all.",
                "ArgumentException",
                event_id=0,
            )

        created_by = body.get("createdBy")
        for prop, sent, have in (
            ("Name", body.get("name"), e.name),
            ("Description", body.get("description"), e.description),
            ("Owner", body.get("owner"), e.owner),
            (
                "CreatedById",
                created_by.get("id") if isinstance(created_by, dict) else None,
                e.created_by.get("id"),
            ),
        ):
            if sent is not None and str(sent) != str(have):
                refuse(prop)
        url = body.get("url")
        if url is not None and str(url).rstrip("/").lower() != e.url.rstrip("/").lower():
            refuse("Url")
        stored_refs = {str(r["projectReference"]["id"]).lower(): r for r in e.project_refs}
        for ref in body.get("serviceEndpointProjectReferences") or []:
            pref = (ref or {}).get("projectReference") or {}
            have_ref = stored_refs.get(str(pref.get("id") or "").lower())
            if have_ref is None:
                refuse("ServiceEndpointProjectReferences")
                return
            for sent_value, stored in (
                (ref.get("name"), have_ref.get("name")),
                (ref.get("description"), have_ref.get("description")),
                (pref.get("name"), have_ref["projectReference"].get("name")),
            ):
                if sent_value and str(sent_value) != str(stored or ""):
                    refuse("ServiceEndpointProjectReferences")
        view = {k.lower(): v for k, v in self.masked(e.parameters).items()}
        for key, value in ((body.get("authorization") or {}).get("parameters") or {}).items():
            lowered = str(key).lower()
            if allow_issuer_type and lowered == "workloadidentityfederationissuertype":
                continue
            sent = None if value is None else str(value)
            if lowered not in view or view[lowered] != sent:
                refuse(f"Authorization.Parameters['{key}']")
        data = {str(k).lower(): v for k, v in e.data.items()}
        for key, value in (body.get("data") or {}).items():
            lowered = str(key).lower()
            if lowered not in data or str(data[lowered]) != str(value):
                refuse(f"Data['{key}']")

    def _revert(self, e: Endpoint, req: Request, home: Project | None) -> dict[str, Any]:
        """WorkloadIdentityFederation back to ServicePrincipal while the recovery data lasts
        (S1: ``DowngradeAuthenticationScheme``; the deadline is when the service deletes it)."""
        deadline = _parse_round_trip(str(e.data.get("revertSchemeDeadline") or ""))
        if e.recovery is None or deadline is None or req.now > deadline:
            raise ado_error(
                400,
                f"Endpoint scheme could not be downgraded from {e.scheme} to ServicePrincipal as "
                "no recovery data exist for this endpoint.",
                "InvalidServiceEndpointRequestException",
            )
        kept = {
            k: v
            for k, v in e.parameters.items()
            if k.lower() in WIF_KEEP and k not in SERVER_PARAMETERS
        }
        e.parameters = {**kept, **e.recovery}
        e.scheme = "ServicePrincipal"
        e.recovery = None
        e.operation_status = None
        self.world.touch()
        return self.endpoint_json(e, home, req.now)

    def _federation(
        self, org: Organization, project: str, name: str, eid: str, issuer_type: str | None
    ) -> tuple[str, str, str]:
        """(issuer, subject, issuer type) generated for a connection now (``seed.federation``);
        under the ``subject-drift`` fault an Entra subject gets the fault's text before the
        ``/sc/`` tail that names the connection."""
        issuer, subject, kind = federation(self.world, org, project, name, eid, issuer_type)
        drift = self.faults().subject_drift
        if drift and kind == "EntraID":
            head, sep, tail = subject.rpartition("/sc/")
            subject = f"{head}{drift}{sep}{tail}" if sep else subject + drift
        return issuer, subject, kind

    def _can_sign_in(self, client_id: str | None, issuer: str, subject: str, now: float) -> bool:
        """Whether the identity the connection names would accept a token with this issuer
        and subject: a managed identity needs a federated credential matching exactly, written
        at least ``fic_propagation_ms`` ago. An identity the simulator does not hold (an app
        registration) is assumed to accept it."""
        wanted = str(client_id or "").lower()
        for ident in self.world.identities.values():
            if ident.client_id.lower() == wanted:
                return self._honoured(ident.fics.values(), issuer, subject, now)
        return True

    def _honoured(
        self, fics: Iterable[Fic], issuer: str | None, subject: str | None, now: float
    ) -> bool:
        settle = self.faults().fic_propagation_ms / 1000
        return any(
            f.issuer == issuer
            and f.subject == subject
            and AUDIENCE in f.audiences
            and now - (f.written or f.created) >= settle
            for f in fics
        )

    def sign_in(self, org_name: str, eid: str) -> dict[str, Any]:
        """What Microsoft Entra would do with the token a pipeline presents for this connection
        now (issue 11 §5): a workload identity connection presents its current issuer and
        subject with audience ``api://AzureADTokenExchange``; a managed identity the simulator
        holds must have a federated credential matching all three exactly (else Entra's
        AADSTS70021) and hold a role assignment somewhere. A secret-based connection signs in
        while its secret is set. An identity the simulator does not hold (an app registration)
        is assumed to accept (README C2).

        Returns ``{"ok", "reason", "scheme", "issuer", "subject", "identity"}``; call under no
        lock (it takes the world's)."""
        with self.world.lock:
            org = self.world.organizations.get(org_name.lower())
            e = self.world.endpoints.get(eid.lower())
            if org is None or e is None or e.organization != org.name.lower():
                return {
                    "ok": False,
                    "scheme": e.scheme if e else None,
                    "issuer": None,
                    "subject": None,
                    "identity": None,
                    "reason": f"no service connection {eid} in {org_name}",
                }
            return self._sign_in(e, *self._sign_in_indexes())

    def sign_ins(self) -> list[dict[str, Any]]:
        """``sign_in`` for every service connection held, in one pass under one lock (what a
        probe polling a large estate needs): each answer gains ``organization`` (its name as
        held) and ``id``. Ordered by organisation, then id."""
        with self.world.lock:
            indexes = self._sign_in_indexes()
            out = []
            for e in sorted(self.world.endpoints.values(), key=lambda x: (x.organization, x.id)):
                org = self.world.organizations.get(e.organization)
                name = org.name if org else e.organization
                out.append({"organization": name, "id": e.id, **self._sign_in(e, *indexes)})
            return out

    def _sign_in_indexes(self) -> tuple[dict[str, Any], set[str]]:
        """Identities by client id, and the principal ids holding a role assignment."""
        by_client = {i.client_id.lower(): i for i in self.world.identities.values()}
        holders = {ra.principal_id.lower() for ra in self.world.role_assignments.values()}
        return by_client, holders

    def _sign_in(self, e: Endpoint, by_client: dict[str, Any], holders: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": False,
            "scheme": e.scheme,
            "issuer": None,
            "subject": None,
            "identity": None,
        }
        ident = by_client.get(str(e.parameters.get("serviceprincipalid") or "").lower())
        out["identity"] = ident.arm_id if ident else None
        scheme = e.scheme.lower()
        if scheme == "serviceprincipal":
            if not any(k.lower() in SECRET_PARAMETERS and v for k, v in e.parameters.items()):
                return {**out, "reason": "no secret is set"}
        elif scheme == "workloadidentityfederation":
            issuer = e.parameters.get("workloadIdentityFederationIssuer")
            subject = e.parameters.get("workloadIdentityFederationSubject")
            out.update(issuer=issuer, subject=subject)
            if ident is not None and not self._honoured(
                ident.fics.values(), issuer, subject, self.world.clock()
            ):
                return {
                    **out,
                    "reason": "AADSTS70021: No matching federated identity record found for "
                    "presented assertion.",
                }
        else:
            return {**out, "reason": f"scheme {e.scheme} does not sign in to Azure"}
        if ident is None:
            return {**out, "ok": True, "reason": "identity not held (assumed to accept)"}
        if ident.principal_id.lower() not in holders:
            return {**out, "reason": f"{ident.name} holds no role assignment"}
        return {**out, "ok": True, "reason": "signed in"}

    def regenerate_legacy_subject(self, org: Organization, e: Endpoint) -> None:
        """The Azure DevOps (legacy) issuer's subject is ``sc://{org}/{project}/{name}``, with
        the names of the connection and of the project it was created in: a rename changes it.
        Entra subjects are built from ids and never change."""
        subject = e.parameters.get("workloadIdentityFederationSubject") or ""
        if e.scheme.lower() != "workloadidentityfederation" or not subject.startswith("sc://"):
            return
        first = (
            org.project(str(e.project_refs[0]["projectReference"]["id"]))
            if e.project_refs
            else None
        )
        e.parameters["workloadIdentityFederationSubject"] = (
            f"sc://{org.name}/{first.name if first else ''}/{e.name}"
        )

    def update_many(self, req: Request, org_name: str) -> Response:
        body = self._body(req)
        if not isinstance(body, list):
            raise ado_error(
                400,
                "Value cannot be null.\r\nParameter name: endpoints",
                "ArgumentNullException",
                event_id=0,
            )
        out = []
        with self.world.lock:  # in order; the service promises no atomicity either
            for item in body:
                one = copy.copy(req)
                one.body = json.dumps(item).encode()
                out.append(
                    self.update_endpoint(one, org_name, str((item or {}).get("id") or "")).body
                )
        return Response(200, {"count": len(out), "value": out})

    def delete_endpoint(
        self, req: Request, org_name: str, eid: str, project_ref: str | None
    ) -> Response:
        raw = req.query.get("projectids")
        with self.world.lock:
            org = self._org(org_name)
            if project_ref is not None and not raw:
                raw = self._project(org, project_ref).id
            if not raw:
                raise ado_error(
                    400,
                    "Value cannot be null.\r\nParameter name: projectIds",
                    "ArgumentNullException",
                    event_id=0,
                )
            e = self.world.endpoints.get(eid.lower())
            if e is None or e.organization != org.name.lower():
                return Response(204)
            targets = {
                self._project(org, p.strip()).id.lower() for p in raw.split(",") if p.strip()
            }
            remaining = [
                r for r in e.project_refs if str(r["projectReference"]["id"]).lower() not in targets
            ]
            removed = [
                p
                for r in e.project_refs
                if str(r["projectReference"]["id"]).lower() in targets
                and (p := org.project(str(r["projectReference"]["id"]))) is not None
            ]
            data = self.connection_data_fields(e)
            if not remaining:
                self._refuse_while_federated(e, req.now)
                del self.world.endpoints[e.id.lower()]
                if self.faults().delete_lag_s > 0:
                    self.world.deleted_endpoints[e.id.lower()] = (e, req.now)
                for key in [
                    k
                    for k in self.world.permissions
                    if k[0] == org.name.lower() and k[3] == e.id.lower()
                ]:
                    del self.world.permissions[key]
            else:
                e.project_refs = remaining
                for key in [
                    k
                    for k in self.world.permissions
                    if k[0] == org.name.lower() and k[3] == e.id.lower() and k[1] in targets
                ]:
                    del self.world.permissions[key]
            self.world.touch()
            self._audit_projects(
                req,
                org,
                "Library.ServiceConnectionDeleted",
                "Library.ServiceConnectionDeletedFromMultipleProjects",
                data,
                removed,
            )
        return Response(204)

    def _refuse_while_federated(self, e: Endpoint, now: float) -> None:
        if e.scheme.lower() != "workloadidentityfederation":
            return
        issuer = e.parameters.get("workloadIdentityFederationIssuer")
        subject = e.parameters.get("workloadIdentityFederationSubject")
        if not issuer or not subject:
            return
        lag = self.faults().fic_delete_lag_ms / 1000
        blocked = self.world.fic_with(issuer, subject) is not None or any(
            i == issuer and s == subject and now - t < lag for i, s, t in self.world.deleted_fics
        )
        if blocked:
            app = e.parameters.get("serviceprincipalid") or ""
            tenant = e.parameters.get("tenantid") or self.world.tenant_id
            raise ado_error(
                400,
                f"Cannot delete this service connection while federated credentials for app {app} exist in Entra "
                f"tenant {tenant}. Please make sure federated credentials have been removed prior to deleting the "
                "service connection.",
                "ServiceEndpointException",
            )

    def share_endpoint(self, req: Request, org_name: str, eid: str) -> Response:
        body = self._body(req)
        with self.world.lock:
            org = self._org(org_name)
            e = self._endpoint(org, eid)
            refs = self._references(org, body, e.name)
            if not refs:
                raise ado_error(
                    400,
                    "At least one project reference is required to share an endpoint.",
                    "ArgumentException",
                    event_id=0,
                )
            added = []
            for project, ref in refs:
                existing = self._ref(e, project)
                if existing is not None:
                    continue
                self._duplicate(org, project, ref["name"], e.id)
                e.project_refs.append(ref)
                added.append(project)
            self.world.touch()
            data = self.connection_data_fields(e)
            self._audit_projects(
                req,
                org,
                "Library.ServiceConnectionShared",
                "Library.ServiceConnectionSharedWithMultipleProjects",
                data,
                added,
            )
        return Response(204)

    # --- pipeline permissions ----------------------------------------------------------------

    def _permissions_json(
        self, org: Organization, project: Project, rtype: str, rid: str
    ) -> dict[str, Any]:
        pset = self.world.permissions.get(
            (org.name.lower(), project.id.lower(), rtype.lower(), rid.lower())
        )
        resource: dict[str, Any] = {"type": rtype, "id": rid}
        if rtype.lower() == "endpoint":
            e = self.world.endpoints.get(rid.lower())
            if e is not None:
                resource["name"] = self._name_in(e, project)
        out: dict[str, Any] = {"resource": resource, "pipelines": []}
        if pset is not None:
            out["pipelines"] = [copy.deepcopy(p) for _, p in sorted(pset.pipelines.items())]
            if pset.all_pipelines is not None:
                out["allPipelines"] = copy.deepcopy(pset.all_pipelines)
        return out

    def get_permissions(
        self, req: Request, org_name: str, project_ref: str, rtype: str, rid: str
    ) -> Response:
        with self.world.lock:
            org = self._org(org_name)
            project = self._project(org, project_ref)
            return Response(200, self._permissions_json(org, project, rtype, rid))

    def _apply_permissions(
        self, req: Request, org: Organization, project: Project, rtype: str, rid: str, body: Any
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ado_error(
                400,
                "Value cannot be null.\r\nParameter name: resourcePipelinePermissions",
                "ArgumentNullException",
                event_id=0,
            )
        if rtype.lower() == "endpoint":
            e = self.world.endpoints.get(rid.lower())
            if e is None or e.organization != org.name.lower() or self._ref(e, project) is None:
                raise ado_error(
                    404,
                    f"Resource endpoint with id {rid} does not exist in project {project.name}.",
                    "ResourceNotFoundException",
                )
        changes: list[tuple[int, bool]] = []
        for p in body.get("pipelines") or []:
            if not isinstance(p, dict) or not isinstance(p.get("id"), int):
                raise ado_error(
                    400,
                    "Each pipeline permission needs an integer id.",
                    "ArgumentException",
                    event_id=0,
                )
            if p["id"] not in project.pipelines:
                raise ado_error(
                    400,
                    f"Pipeline with id {p['id']} does not exist in project {project.name}.",
                    "ArgumentException",
                    event_id=0,
                )
            changes.append((p["id"], bool(p.get("authorized"))))
        key = (org.name.lower(), project.id.lower(), rtype.lower(), rid.lower())
        pset = self.world.permissions.setdefault(key, PermissionSet())
        stamp = {"authorizedBy": self._user(req), "authorizedOn": iso(req.now)}
        all_pipelines = body.get("allPipelines")
        resource = {"ResourceType": rtype, "ResourceId": rid}
        if isinstance(all_pipelines, dict):
            was = pset.all_pipelines is not None
            pset.all_pipelines = (
                {"authorized": True, **stamp} if all_pipelines.get("authorized") else None
            )
            if was != (pset.all_pipelines is not None):
                self._audit(
                    req,
                    org,
                    "Pipelines.ResourceAuthorizedForProject"
                    if pset.all_pipelines is not None
                    else "Pipelines.ResourceUnauthorizedForProject",
                    dict(resource),
                    project,
                )
        for pid, authorized in changes:  # merge: pipelines not mentioned stay as they are
            if authorized:
                pset.pipelines[pid] = {"id": pid, "authorized": True, **stamp}
                action = "Pipelines.ResourceAuthorizedForPipeline"
            elif pset.pipelines.pop(pid, None) is not None:
                action = "Pipelines.ResourceUnauthorizedForPipeline"
            else:
                continue
            self._audit(req, org, action, {**resource, "PipelineId": pid}, project)
        self.world.touch()
        return self._permissions_json(org, project, rtype, rid)

    def patch_permissions(
        self, req: Request, org_name: str, project_ref: str, rtype: str, rid: str
    ) -> Response:
        body = self._body(req)
        with self.world.lock:
            org = self._org(org_name)
            project = self._project(org, project_ref)
            return Response(200, self._apply_permissions(req, org, project, rtype, rid, body))

    def patch_many(self, req: Request, org_name: str, project_ref: str) -> Response:
        body = self._body(req)
        if not isinstance(body, list):
            raise ado_error(
                400,
                "Value cannot be null.\r\nParameter name: resourcePipelinePermissions",
                "ArgumentNullException",
                event_id=0,
            )
        with self.world.lock:
            org = self._org(org_name)
            project = self._project(org, project_ref)
            out = []
            for item in body:
                resource = (item or {}).get("resource") or {}
                if not resource.get("type") or not resource.get("id"):
                    raise ado_error(
                        400,
                        "Each entry needs resource.type and resource.id.",
                        "ArgumentException",
                        event_id=0,
                    )
                out.append(
                    self._apply_permissions(
                        req, org, project, str(resource["type"]), str(resource["id"]), item
                    )
                )
        return Response(200, out)


def _dotnet_round_trip(ts: float) -> str:
    """A UTC time as .NET's round-trip ("O") format writes it: 7 fractional digits and Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _parse_round_trip(text: str) -> float | None:
    found = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z$", text)
    if found is None:
        return None
    whole = datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return whole.timestamp() + float(found.group(2) or 0)
