"""The simulator's HTTPS server and the handle tests and the demo hold.

One TLS port on loopback serves everything: the Entra token endpoint and discovery
(``/{tenant}/...``), ARM (``/subscriptions/...``, ``/providers/...``), Azure DevOps
(``/devops/{org}/...``), its organisation-independent host (``/vssps/...``), its audit service
(``/auditservice/{org}/...``) and the admin API (``/_sim/...``, no token, loopback only, not
reachable through any Azure path).

    sim = start(seed=None, state_dir=tmp_path)       # port 0: a free port
    sim.connection                                    # the connection-file fields
    sim.request_log(); sim.stats(); sim.clear_log()
    sim.set_faults(["429:0.1"]); sim.update_faults(lag_ms=50)
    sim.reset(); sim.edit("identity", arm_id, {"tags": {...}}); sim.stop()
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import os
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from reconciler.sim import arm as arm_mod
from reconciler.sim import devops as devops_mod
from reconciler.sim.activitylog import ADMIN_OPERATIONS, PORTAL_USER, Actor
from reconciler.sim.arm import Arm
from reconciler.sim.auditlog import LOG_AUDIT_EVENTS, AuditActor, AuditLog
from reconciler.sim.auth import (
    TokenStore,
    check_arm,
    check_devops,
    discovery,
    instance_discovery,
    issue_token,
)
from reconciler.sim.devops import DevOps
from reconciler.sim.faults import FaultDice, Faults, faults_to_dict, make_faults
from reconciler.sim.protocol import ApiError, Request, Response, ado_body, arm_error
from reconciler.sim.pullrequests import PullRequests
from reconciler.sim.seed import SeedSource, build_world, load_seed, snapshot
from reconciler.sim.throttle import ThrottleModel, Verdict
from reconciler.sim.vssps import Vssps
from reconciler.sim.world import (
    Organization,
    PermissionSet,
    Principal,
    Project,
    World,
    identity_key,
    iso,
    norm_scope,
)

LOG_LIMIT = 200_000
_DROP = Response(0)

FaultSpec = Faults | Mapping[str, Any] | Iterable[str] | None


class App:
    """Everything behind the socket: state, services, faults, throttling and the request log."""

    def __init__(self, seed: dict[str, Any], faults: Faults) -> None:
        self.seed = seed
        self.world = build_world(seed)
        self.tokens = TokenStore()
        self._faults = faults
        self.default_faults = faults
        self.dice = FaultDice()
        self.throttle = ThrottleModel(faults.throttle_scale, enforce=faults.throttle)
        self.arm = Arm(self.world, lambda: self._faults)
        self.devops = DevOps(self.world, lambda: self._faults)
        self.audit = AuditLog(self.world, lambda: self._faults)
        self.devops.audit = self._audit_request
        self.vssps = Vssps(self.world)
        self.pullrequests = PullRequests()
        self.base_url = ""
        self._log_lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self._seq = 0
        self._ops: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._throttle_counts: Counter[str] = Counter()

    # --- configuration ---------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        old = self._faults
        self._faults = faults
        if (old.throttle, old.throttle_scale) != (faults.throttle, faults.throttle_scale):
            self.throttle = ThrottleModel(faults.throttle_scale, enforce=faults.throttle)
        self.dice.reset()  # the n-th request after a change draws the n-th number

    def reset(self, seed: Mapping[str, Any] | None = None) -> None:
        """Rebuild the world from ``seed``, or from the start seed when None."""
        with self.world.lock:
            build_world(self.seed if seed is None else dict(seed), world=self.world)
        self.arm.activity.clear()
        self.audit.clear()
        self.pullrequests.reset()
        self.dice.reset()
        self.throttle = ThrottleModel(self._faults.throttle_scale, enforce=self._faults.throttle)

    # --- the request log ---------------------------------------------------------------------

    def record(self, req: Request, status: int, started: float, fault: str | None) -> None:
        entry = {
            "method": req.method,
            "path": req.raw_path,
            "query": dict(req.query),
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "op": req.op,
            "caller": req.caller,
            "fault": fault,
            "time": req.now,
        }
        with self._log_lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._log.append(entry)
            self._ops[req.op] += 1
            self._statuses[str(status)] += 1
            if status == 429:
                self._throttle_counts[req.op] += 1

    def request_log(self, *, op: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        with self._log_lock:
            return [
                dict(e) for e in self._log if e["seq"] > since and (op is None or e["op"] == op)
            ]

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()
            self._ops.clear()
            self._statuses.clear()
            self._throttle_counts.clear()

    def stats(self) -> dict[str, Any]:
        with self._log_lock:
            return {
                "total": sum(self._ops.values()),
                "last_seq": self._seq,
                "by_op": dict(self._ops),
                "by_status": dict(self._statuses),
                "throttled": dict(self._throttle_counts),
                "throttled_total": sum(self._throttle_counts.values()),
                "faults_injected": self.dice.injected,
            }

    # --- serving -----------------------------------------------------------------------------

    def serve(self, req: Request) -> tuple[Response, str | None]:
        """The response for an Azure-API request, and the name of any injected fault."""
        seg = req.segments
        low = [s.lower() for s in seg]
        faults = self._faults
        fault: str | None = None
        try:
            if (
                low[:1] == ["devops"]
                and low[2:] == ["_apis", "connectiondata"]
                and self.pullrequests.is_job_token(req)
            ):
                # who a pipeline's job token is: the comment stand-in knows its tokens
                return self.pullrequests.connection_data(req), None
            if low[:1] == ["devops"] and low[3:5] == ["_apis", "git"]:
                # pull request threads: a stand-in with its own state (sim/pullrequests.py)
                self._sleep(req, faults)
                authenticate = lambda r: check_devops(r, self.world, self.tokens)  # noqa: E731
                return self.pullrequests.serve_devops(req, authenticate), None
            if low[:1] == ["github"]:
                self._sleep(req, faults)
                return self.pullrequests.serve_github(req), None
            if low[:1] == ["devops"]:
                return self._serve_devops(req, faults)
            if low[:1] == ["vssps"]:
                return self._serve_devops(req, faults, self.vssps.route)
            if low[:1] == ["auditservice"]:
                return self._serve_devops(req, faults, self.audit.route)
            if len(low) == 4 and low[1:] == ["oauth2", "v2.0", "token"] and req.method == "POST":
                req.op = "Token"
                self._sleep(req, faults)
                return issue_token(req, self.world, self.tokens, seg[0]), None
            if (
                low[1:]
                in (
                    ["v2.0", ".well-known", "openid-configuration"],
                    [".well-known", "openid-configuration"],
                )
                and req.method == "GET"
            ):
                req.op = "OpenIdConfiguration"
                return discovery(req, self.world, seg[0]), None
            if low == ["common", "discovery", "instance"]:
                req.op = "InstanceDiscovery"
                return instance_discovery(req), None
            return self._serve_arm(req, faults)
        except ApiError as exc:
            return exc.response, fault

    def _sleep(self, req: Request, faults: Faults) -> float:
        delay = self._delay(req, faults)
        if delay > 0:
            time.sleep(delay)
        return delay

    def _delay(self, req: Request, faults: Faults) -> float:
        delay = faults.latency_ms / 1000
        if faults.jitter_ms > 0:
            delay += (
                self.dice.draw(faults.seed, "jitter:" + req.method, req.raw_path)
                * faults.jitter_ms
                / 1000
            )
        return delay

    def _random_fault(self, req: Request, faults: Faults) -> str | None:
        if faults.ops and req.op not in faults.ops:
            return None
        for name, rate in (
            ("drop", faults.drop),
            ("5xx", faults.rate_5xx),
            ("429", faults.rate_429),
        ):
            if (
                rate > 0
                and self.dice.draw(faults.seed, f"{name}:{req.method}", req.raw_path) < rate
                and self.dice.allow(faults)
            ):
                return name
        return None

    def _serve_arm(self, req: Request, faults: Faults) -> tuple[Response, str | None]:
        headers = {
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-correlation-request-id": req.headers.get("x-ms-correlation-request-id")
            or str(uuid.uuid4()),
        }
        headers["x-ms-routing-request-id"] = (
            f"WESTEUROPE:{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(req.now))}:{headers['x-ms-request-id']}"
        )
        fault = None
        try:
            try:
                route: arm_mod.Route | None = self.arm.route(req)
            except ApiError:
                route = None
                req.op = "Unknown"
            else:
                assert route is not None
                req.op = route.op
            delay = self._delay(req, faults)
            # a credential write sleeps inside its write window instead (see Arm.fic_write)
            if (route is None or route.fic_write is None) and delay > 0:
                time.sleep(delay)
            fault = self._random_fault(req, faults)
            if fault == "drop":
                return _DROP, fault
            check_arm(req, self.world, self.tokens)
            if route is None:
                self.arm.route(req)  # raises the 404
                raise AssertionError("unreachable")
            Arm.check_api_version(req, route)
            if fault == "5xx":
                raise arm_error(
                    500,
                    "InternalServerError",
                    f"Encountered internal server error. Diagnostic information: timestamp '{time.strftime('%Y%m%dT%H%M%SZ')}', "
                    f"subscription id '{route.subscription or ''}', tracking id '{headers['x-ms-request-id']}', "
                    f"request correlation id '{headers['x-ms-correlation-request-id']}'.",
                )
            if fault == "429":
                raise self._throttled(
                    Verdict(
                        False,
                        faults.retry_after_ms / 1000,
                        code="SubscriptionRequestsThrottled",
                        message=(
                            f"Number of '{route.op_class[:-1]}' requests for subscription '{route.subscription}' actor "
                            f"'{req.caller_object_id}' exceeded. Please try again after '{max(1, math.ceil(faults.retry_after_ms / 1000))}' seconds."
                        ),
                    ),
                    arm=True,
                )
            verdict = self.throttle.arm(
                route.op_class, route.subscription, req.caller_object_id, self.world.tenant_id
            )
            headers.update(verdict.headers)
            if not verdict.ok:
                raise self._throttled(verdict, arm=True)
            if route.msi is not None and faults.throttle:
                msi = self.throttle.msi(
                    route.msi[0],
                    self.world.tenant_id,
                    (route.subscription or "").lower(),
                    route.msi[1],
                )
                if not msi.ok:
                    raise self._throttled(msi, arm=True)
            try:
                if route.fic_write is not None:
                    resp = self.arm.fic_write(req, route, delay)
                else:
                    resp = route.handler(req)
            except ApiError as exc:
                resp = exc.response
            # a request ARM let through to the resource provider is in the Activity Log
            self._activity(req, route, resp.status, headers, faults)
        except ApiError as exc:
            resp = exc.response
        for k, v in headers.items():
            resp.headers.setdefault(k, v)
        return resp, fault

    def _activity(
        self,
        req: Request,
        route: arm_mod.Route,
        status: int,
        headers: Mapping[str, str],
        faults: Faults,
    ) -> None:
        if route.op_class == "reads":
            return
        client = req.client
        actor = Actor.service_principal(
            client.object_id if client else req.caller_object_id,
            client.client_id if client else req.caller,
            self.world.tenant_id,
        )
        self.arm.activity.record_request(
            op=route.op,
            subscription=route.subscription,
            resource_id=req.raw_path,
            method=req.method,
            status=status,
            actor=actor,
            correlation_id=headers["x-ms-correlation-request-id"],
            client_request_id=req.headers.get("x-ms-client-request-id", ""),
            now=req.now,
            delay_s=faults.activity_log_delay_s,
        )

    @staticmethod
    def _throttled(verdict: Verdict, *, arm: bool) -> ApiError:
        seconds = max(1, math.ceil(verdict.retry_after_s))
        headers = dict(verdict.headers)
        headers["Retry-After"] = str(seconds)
        if arm:
            headers["x-ms-retry-after-ms"] = str(max(1, int(verdict.retry_after_s * 1000)))
            body: Any = {"error": {"code": verdict.code, "message": verdict.message}}
        else:
            body = ado_body(verdict.message, "RequestBlockedException")
        return ApiError(Response(429, body, headers))

    def _serve_devops(
        self,
        req: Request,
        faults: Faults,
        router: Callable[[Request], devops_mod.Route] | None = None,
    ) -> tuple[Response, str | None]:
        headers = {
            "ActivityId": str(uuid.uuid4()),
            "X-TFS-Session": str(uuid.uuid4()),
            "X-VSS-E2EID": str(uuid.uuid4()),
        }
        fault = None
        try:
            try:
                route = (router or self.devops.route)(req)
            except ApiError:
                req.op = "Unknown"
                self._sleep(req, faults)
                check_devops(req, self.world, self.tokens)
                raise
            req.op = route.op
            self._sleep(req, faults)
            fault = self._random_fault(req, faults)
            if fault == "drop":
                return _DROP, fault
            check_devops(req, self.world, self.tokens)
            DevOps.check_api_version(req, route)
            if fault == "5xx":
                raise ApiError(
                    Response(
                        500,
                        ado_body(
                            "TF246017: Azure DevOps Services could not connect to the database. Try again later.",
                            "VssServiceException",
                        ),
                    )
                )
            if fault == "429":
                raise self._throttled(
                    Verdict(
                        False,
                        faults.retry_after_ms / 1000,
                        message=(
                            "TF400733: The request has been canceled: Request was blocked due to exceeding usage of resource "
                            "'Core' in namespace 'User'."
                        ),
                    ),
                    arm=False,
                )
            verdict = self.throttle.ado(
                req.caller or "anonymous", faults.ado_request_cost, faults.ado_max_delay_ms / 1000
            )
            headers.update(verdict.headers)
            if not verdict.ok:
                raise self._throttled(verdict, arm=False)
            if verdict.delay_s > 0:
                time.sleep(verdict.delay_s)
            resp = route.handler(req)
        except ApiError as exc:
            resp = exc.response
        for k, v in headers.items():
            resp.headers.setdefault(k, v)
        return resp, fault

    # --- admin -------------------------------------------------------------------------------

    def admin(self, req: Request) -> Response:
        parts = [s.lower() for s in req.segments[1:]]
        m = req.method
        try:
            body = req.json()
        except ValueError:
            return Response(400, {"error": "body is not JSON"})
        if parts == ["requests"] and m == "GET":
            since = int(req.query.get("since", "0") or 0)
            return Response(
                200, {"requests": self.request_log(op=req.query.get("op"), since=since)}
            )
        if (parts == ["requests"] and m == "DELETE") or (
            parts == ["requests", "clear"] and m == "POST"
        ):
            self.clear_log()
            return Response(204)
        if parts[:1] == ["pullrequests"]:
            return self.pullrequests.admin(parts[1:], m, body)
        if parts == ["stats"] and m == "GET":
            return Response(200, self.stats())
        if parts == ["state"] and m == "GET":
            with self.world.lock:
                return Response(200, snapshot(self.world))
        if parts == ["reset"] and m == "POST":
            self.reset(body if isinstance(body, dict) and body else None)
            return Response(204)
        if parts == ["faults"] and m == "GET":
            return Response(200, faults_to_dict(self._faults))
        if parts == ["faults"] and m == "POST":
            try:
                if isinstance(body, list):
                    new = make_faults(body, self.default_faults)
                elif isinstance(body, dict) and isinstance(body.get("specs"), list):
                    rest = {k: v for k, v in body.items() if k != "specs"}
                    new = make_faults(rest, make_faults(body["specs"], self.default_faults))
                else:
                    new = make_faults(body or {}, self.default_faults)
            except (ValueError, TypeError) as exc:
                return Response(400, {"error": str(exc)})
            self.set_faults(new)
            return Response(200, faults_to_dict(new))
        if parts == ["sign-ins"] and m == "GET":
            return Response(200, {"value": self.devops.sign_ins()})
        if parts == ["sign-in"] and m == "GET":
            return Response(
                200,
                self.devops.sign_in(
                    req.query.get("organization", ""), req.query.get("endpoint", "")
                ),
            )
        if parts == ["tokens", "expire"] and m == "POST":
            token = body.get("token") if isinstance(body, dict) else None
            self.tokens.expire(token, time.time())
            return Response(204)
        if parts == ["activitylog"] and m == "GET":
            return Response(200, {"value": self.arm.activity.events()})
        if parts == ["auditlog"] and m == "GET":
            return Response(200, {"value": self.audit.entries(req.query.get("organization"))})
        if parts == ["logs", "age"] and m == "POST" and isinstance(body, dict):
            try:
                self.age_logs(float(body.get("seconds", 0)))
            except (TypeError, ValueError) as exc:
                return Response(400, {"error": str(exc)})
            return Response(204)
        if parts == ["auditing"] and m == "POST" and isinstance(body, dict):
            try:
                self.set_auditing(
                    str(body.get("organization", "")),
                    bool(body.get("enabled")),
                    caller=str(body.get("caller") or PORTAL_USER),
                )
            except KeyError as exc:
                return Response(404, {"error": f"not found: {exc.args[0]}"})
            return Response(204)
        if parts == ["edit"] and m == "POST" and isinstance(body, dict):
            try:
                result = self.edit(
                    str(body.get("kind", "")),
                    str(body.get("id", "")),
                    body.get("patch"),
                    delete=bool(body.get("delete")),
                    caller=str(body.get("caller") or PORTAL_USER),
                )
            except KeyError as exc:
                return Response(404, {"error": f"not found: {exc.args[0]}"})
            except ValueError as exc:
                return Response(400, {"error": str(exc)})
            return Response(200, result) if result is not None else Response(204)
        return Response(404, {"error": f"no admin route {m} /{'/'.join(req.segments)}"})

    def _audit_request(
        self,
        req: Request,
        org: Organization,
        action: str,
        data: dict[str, Any],
        project: Project | None,
    ) -> None:
        self.audit.record(
            org,
            AuditActor.of_request(req),
            action,
            data,
            now=req.now,
            project=project,
            user_agent=req.headers.get("user-agent", ""),
        )

    def age_logs(self, seconds: float) -> None:
        """Move every Activity Log event and audit entry ``seconds`` into the past."""
        self.arm.activity.age(seconds)
        self.audit.age(seconds)

    def set_auditing(self, organization: str, enabled: bool, *, caller: str = PORTAL_USER) -> None:
        """Turn an organisation's "Log Audit Events" policy on or off, as ``caller`` would in
        Organization settings; the change itself is audited (turning off: the last entry)."""
        now = time.time()
        with self.world.lock:
            org = self.world.organizations[organization.lower()]
            if org.auditing == enabled:
                return
            org.auditing = enabled
            self.audit.record(
                org,
                AuditActor.user(caller),
                "OrganizationPolicy.PolicyValueUpdated",
                {"PolicyName": LOG_AUDIT_EVENTS, "PolicyValue": "On" if enabled else "Off"},
                now=now,
                force=True,
            )
            self.world.touch()

    def _admin_activity(self, kind: str, delete: bool, resource_id: str, caller: str) -> None:
        """The Activity Log events of an out-of-band edit: a portal user's request."""
        op = ADMIN_OPERATIONS.get((kind, delete))
        if op is None:
            return
        self.arm.activity.record_request(
            op=op,
            subscription=self.world.subscription_of(resource_id),
            resource_id=resource_id,
            method="DELETE" if delete else "PUT",
            status=200,
            actor=Actor.user(
                caller, str(uuid.uuid5(uuid.NAMESPACE_URL, caller)), self.world.tenant_id
            ),
            correlation_id=str(uuid.uuid4()),
            client_request_id=str(uuid.uuid4()),
            now=time.time(),
            delay_s=self._faults.activity_log_delay_s,
        )

    def _admin_audit(
        self,
        org_name: str,
        action: str,
        data: dict[str, Any],
        caller: str,
        project_id: str | None = None,
    ) -> None:
        org = self.world.organizations.get(org_name.lower())
        if org is None:
            return
        project = org.project(project_id) if project_id else None
        self.audit.record(
            org, AuditActor.user(caller), action, data, now=time.time(), project=project
        )

    def _audit_permissions(
        self,
        org: Any,
        project: Any,
        rtype: str,
        rid: str,
        before: PermissionSet,
        after: PermissionSet | None,
        caller: str,
    ) -> None:
        for action, pid in _permission_changes(before, after):
            data: dict[str, Any] = {"ResourceType": rtype, "ResourceId": rid}
            if pid is not None:
                data["PipelineId"] = pid
            self._admin_audit(org.name, action, data, caller, project.id)

    def edit(
        self,
        kind: str,
        object_id: str,
        patch: Any,
        *,
        delete: bool = False,
        caller: str = PORTAL_USER,
    ) -> Any:
        """Out-of-band change by ``caller`` (a portal user), recorded in the Activity Log or
        the organisation's audit log. Returns the object as its API renders it."""
        return self._edit(kind, object_id, patch, delete=delete, caller=caller)

    def _edit(self, kind: str, object_id: str, patch: Any, *, delete: bool, caller: str) -> Any:
        w = self.world
        patch = dict(patch or {})
        with w.lock:
            if kind == "identity":
                key = _identity_key_of(object_id)
                ident = w.identities.get(key)
                if ident is None:
                    raise KeyError(object_id)
                self._admin_activity("identity", delete, ident.arm_id, caller)
                if delete:
                    del w.identities[key]
                    w.principals.pop(ident.principal_id.lower(), None)
                    w.touch()
                    return None
                if "tags" in patch:
                    ident.tags = {str(k): str(v) for k, v in (patch["tags"] or {}).items()}
                if "location" in patch:
                    ident.location = str(patch["location"])
                w.touch()
                return Arm.identity_json(ident)
            if kind in ("federated_credential", "fic"):
                head, name = _split_fic(object_id)
                ident = w.identities.get(_identity_key_of(head))
                fic = ident.fics.get(name.lower()) if ident else None
                if ident is None or fic is None:
                    raise KeyError(object_id)
                self._admin_activity(
                    "federated_credential",
                    delete,
                    f"{ident.arm_id}/federatedIdentityCredentials/{fic.name}",
                    caller,
                )
                if delete:
                    del ident.fics[name.lower()]
                    w.touch()
                    return None
                if "issuer" in patch:
                    fic.issuer = str(patch["issuer"])
                if "subject" in patch:
                    fic.subject = str(patch["subject"])
                if "audiences" in patch:
                    fic.audiences = [str(a) for a in patch["audiences"]]
                w.touch()
                return Arm.fic_json(ident, fic)
            if kind == "role_assignment":
                name = object_id.rstrip("/").rsplit("/", 1)[-1].lower()
                ra = w.role_assignments.get(name)
                if ra is None:
                    raise KeyError(object_id)
                if delete:
                    self._admin_activity(
                        "role_assignment",
                        True,
                        f"{ra.scope}/providers/Microsoft.Authorization/roleAssignments/{ra.name}",
                        caller,
                    )
                    del w.role_assignments[name]
                    w.touch()
                    return None
                for key, attr in (
                    ("description", "description"),
                    ("condition", "condition"),
                    ("conditionVersion", "condition_version"),
                    ("principalId", "principal_id"),
                    ("principalType", "principal_type"),
                ):
                    if key in patch:
                        setattr(ra, attr, patch[key])
                if "roleDefinitionId" in patch:
                    ra.role_guid = str(patch["roleDefinitionId"]).rsplit("/", 1)[-1].lower()
                if "scope" in patch:
                    ra.scope = norm_scope(str(patch["scope"]))
                self._admin_activity(
                    "role_assignment",
                    False,
                    f"{ra.scope}/providers/Microsoft.Authorization/roleAssignments/{ra.name}",
                    caller,
                )
                w.touch()
                return self.arm.assignment_json(ra)
            if kind in ("service_endpoint", "endpoint", "service_connection"):
                e = w.endpoints.get(object_id.lower())
                if e is None:
                    raise KeyError(object_id)
                data = self.devops.connection_data_fields(e)
                if delete:  # no federated-credential check: the admin can do what the API refuses
                    pids = [str(r["projectReference"]["id"]) for r in e.project_refs]
                    if len(pids) == 1:
                        self._admin_audit(
                            e.organization,
                            "Library.ServiceConnectionDeleted",
                            {**data, "ProjectId": pids[0]},
                            caller,
                            pids[0],
                        )
                    else:
                        self._admin_audit(
                            e.organization,
                            "Library.ServiceConnectionDeletedFromMultipleProjects",
                            {**data, "ProjectIds": pids},
                            caller,
                        )
                    del w.endpoints[e.id.lower()]
                    for gone in [k for k in w.permissions if k[3] == e.id.lower()]:
                        del w.permissions[gone]
                    w.touch()
                    return None
                if "name" in patch and str(patch["name"]) != e.name:
                    # the portal's rename: the references that carried the old name follow, and
                    # a legacy (Azure DevOps issuer) subject, which holds the name, changes
                    old_name, e.name = e.name, str(patch["name"])
                    for ref in e.project_refs:
                        if ref.get("name") == old_name:
                            ref["name"] = e.name
                    org = w.organizations.get(e.organization)
                    if org is not None:
                        self.devops.regenerate_legacy_subject(org, e)
                for attr in ("description", "url", "owner", "type", "scheme"):
                    if attr in patch:
                        setattr(e, attr, str(patch[attr]))
                if "data" in patch:
                    e.data.update(patch["data"] or {})
                if "parameters" in patch:
                    e.parameters.update(
                        {
                            str(k): (None if v is None else str(v))
                            for k, v in (patch["parameters"] or {}).items()
                        }
                    )
                if "serviceEndpointProjectReferences" in patch:
                    e.project_refs = list(patch["serviceEndpointProjectReferences"])
                if "createdAt" in patch:
                    e.created = float(patch["createdAt"])
                self._admin_audit(
                    e.organization,
                    "Library.ServiceConnectionModified",
                    self.devops.connection_data_fields(e),
                    caller,
                )
                w.touch()
                return self.devops.endpoint_json(e, None, time.time())
            if kind == "project":
                # "org/project" (name or id); patch {"name": NEW}: renames the project, and with
                # it the legacy subject of every connection created in it
                org_name, _, project_ref = object_id.partition("/")
                org = w.organizations[org_name.lower()]
                project = org.project(project_ref)
                if project is None:
                    raise KeyError(object_id)
                if "name" in patch and str(patch["name"]) != project.name:
                    previous = project.name
                    org.projects.pop(project.name.lower(), None)
                    project.name = str(patch["name"])
                    org.projects[project.name.lower()] = project
                    self._admin_audit(
                        org.name,
                        "Project.UpdateRenameCompleted",
                        {
                            "ProjectId": project.id,
                            "PreviousProjectName": previous,
                            "ProjectName": project.name,
                        },
                        caller,
                        project.id,
                    )
                    for e in w.endpoints_of(org.name):
                        for ref in e.project_refs:
                            if str(ref["projectReference"]["id"]).lower() == project.id.lower():
                                ref["projectReference"]["name"] = project.name
                        self.devops.regenerate_legacy_subject(org, e)
                w.touch()
                return {"id": project.id, "name": project.name}
            if kind == "pipeline_permissions":
                org_name, project_ref, rtype, rid = object_id.split("/", 3)
                org = w.organizations[org_name.lower()]
                project = org.project(project_ref)
                if project is None:
                    raise KeyError(project_ref)
                pkey = (org.name.lower(), project.id.lower(), rtype.lower(), rid.lower())
                before = w.permissions.get(pkey) or PermissionSet()
                if delete:
                    w.permissions.pop(pkey, None)
                    self._audit_permissions(org, project, rtype, rid, before, None, caller)
                    w.touch()
                    return None
                stamp = {
                    "authorizedBy": {
                        "displayName": "Portal user",
                        "id": "00000000-0000-0000-0000-000000000000",
                    },
                    "authorizedOn": iso(time.time()),
                }
                pset = PermissionSet()
                if patch.get("allPipelines"):
                    pset.all_pipelines = {"authorized": True, **stamp}
                for pid in patch.get("pipelines") or []:
                    pset.pipelines[int(pid)] = {"id": int(pid), "authorized": True, **stamp}
                w.permissions[pkey] = pset
                self._audit_permissions(org, project, rtype, rid, before, pset, caller)
                w.touch()
                return self.devops._permissions_json(org, project, rtype, rid)
            if kind == "principal":
                if delete:
                    w.principals.pop(object_id.lower(), None)
                    return None
                w.principals[object_id.lower()] = Principal(
                    object_id,
                    str(patch.get("type", "User")),
                    str(patch.get("displayName", "")),
                    float(patch.get("createdAt", time.time())),
                )
                return {"id": object_id}
        raise ValueError(
            f"unknown kind {kind!r} (identity, federated_credential, role_assignment, service_endpoint, project, pipeline_permissions, principal)"
        )


def _permission_changes(
    before: PermissionSet, after: PermissionSet | None
) -> list[tuple[str, int | None]]:
    """The audit actions that take ``before`` to ``after`` (pipeline id, or None for all)."""
    after = after or PermissionSet()
    out: list[tuple[str, int | None]] = []
    had, has = before.all_pipelines is not None, after.all_pipelines is not None
    if had != has:
        out.append(
            (
                "Pipelines.ResourceAuthorizedForProject"
                if has
                else "Pipelines.ResourceUnauthorizedForProject",
                None,
            )
        )
    for pid in sorted(set(after.pipelines) - set(before.pipelines)):
        out.append(("Pipelines.ResourceAuthorizedForPipeline", pid))
    for pid in sorted(set(before.pipelines) - set(after.pipelines)):
        out.append(("Pipelines.ResourceUnauthorizedForPipeline", pid))
    return out


def _identity_key_of(arm_id: str) -> str:
    parts = [p for p in arm_id.split("/") if p]
    low = [p.lower() for p in parts]
    try:
        return identity_key(
            parts[low.index("subscriptions") + 1],
            parts[low.index("resourcegroups") + 1],
            parts[low.index("userassignedidentities") + 1],
        )
    except (ValueError, IndexError):
        return arm_id.lower()


def _split_fic(arm_id: str) -> tuple[str, str]:
    low = arm_id.lower()
    marker = "/federatedidentitycredentials/"
    i = low.rfind(marker)
    if i < 0:
        raise KeyError(arm_id)
    return arm_id[:i], arm_id[i + len(marker) :]


_REASONS = {status.value: status.phrase for status in HTTPStatus}
_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections go after this long
    server: _Server
    fields: dict[str, str]
    raw_requestline: bytes

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)
        sock = self.connection
        if isinstance(sock, ssl.SSLSocket):
            sock.do_handshake()  # here, in the connection's thread, not in the accept loop

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def parse_request(self) -> bool:
        """A lean HTTP/1.x request parser: the stdlib one runs the email package's header
        parser on every request, which costs more than everything the simulator does."""
        self.command = ""
        self.request_version = "HTTP/0.9"
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            self.send_error(400, "Bad request syntax")
            return False
        self.command, self.path, self.request_version = words
        fields: dict[str, str] = {}
        while True:
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            if len(fields) > 100:
                self.send_error(431, "Too many headers")
                return False
            name, _, value = line.decode("iso-8859-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        self.fields = fields
        connection = fields.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        if fields.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _read_body(self) -> bytes:
        if self.fields.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.fields.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        started = time.perf_counter()
        app = self.server.app
        body = self._read_body()
        req = Request.parse(self.command, self.path, self.fields, body, app.base_url)
        req.now = time.time()
        if req.segments[:1] == ["_sim"]:
            if not self.client_address[0].startswith("127.") and self.client_address[0] != "::1":
                self._send(Response(403, {"error": "the admin API is loopback only"}))
                return
            self._send(app.admin(req))
            return
        try:
            resp, fault = app.serve(req)
        except Exception as exc:  # a simulator bug: answer 500 and keep serving
            import traceback

            traceback.print_exc()
            resp, fault = (
                Response(
                    500,
                    {
                        "error": {
                            "code": "SimulatorError",
                            "message": f"{type(exc).__name__}: {exc}",
                        }
                    },
                ),
                None,
            )
        if resp is _DROP:
            app.record(req, 0, started, fault)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        # log before answering, so a client that reads the log right after sees its request
        app.record(req, resp.status, started, fault)
        self._send(resp)

    def _send(self, resp: Response) -> None:
        # one write per response: a TLS record and a syscall each are worth saving
        payload = resp.encode() if resp.status != 204 else b""
        reason = _REASONS.get(resp.status, "")
        head = [
            f"HTTP/1.1 {resp.status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {_http_date()}",
        ]
        head.extend(f"{k}: {v}" for k, v in resp.headers.items())
        if resp.status != 204:
            if payload or resp.body is not None or resp.null_body:
                head.append(f"Content-Type: {resp.content_type}")
            head.append(f"Content-Length: {len(payload)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "replace")
        if self.command != "HEAD":
            data += payload
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App, context: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self.accepted = 0  # connections served so far (keep-alive keeps this low)

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conn_lock:
            if add:
                self.accepted += 1
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # clients that go away (or fail the handshake) are normal here; anything else is a bug
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ssl.SSLError, ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class Simulator:
    """A running simulator (see the module docstring). Stop it with ``stop()`` or ``with``."""

    def __init__(
        self,
        app: App,
        server: _Server,
        state_dir: Path,
        connection_file: Path,
        state_file: Path | None,
    ) -> None:
        self.app = app
        self._server = server
        self.state_dir = state_dir
        self.connection_file = connection_file
        self.state_file = state_file
        host, port = server.server_address[:2]
        self.host, self.port = str(host), int(port)
        base = f"https://{self.host}:{self.port}"
        app.base_url = base
        client = next(iter(app.world.clients.values()))
        self.ca_bundle = state_dir / "ca.pem"
        self.connection: dict[str, str] = {
            "arm_url": base,
            "devops_url": f"{base}/devops",
            "vssps_url": f"{base}/vssps",
            "audit_url": f"{base}/auditservice",
            "authority": f"{self.host}:{self.port}",
            "tenant_id": app.world.tenant_id,
            "client_id": client.client_id,
            "client_secret": client.secret,
            "ca_bundle": str(self.ca_bundle),
            "connection_file": str(connection_file),
        }
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="reconciler-sim",
            daemon=True,
        )
        self._stopped = threading.Event()
        self._saved_version = -1
        self._saver: threading.Thread | None = None

    # connection-file fields as attributes
    @property
    def arm_url(self) -> str:
        return self.connection["arm_url"]

    @property
    def devops_url(self) -> str:
        return self.connection["devops_url"]

    @property
    def vssps_url(self) -> str:
        return self.connection["vssps_url"]

    @property
    def audit_url(self) -> str:
        return self.connection["audit_url"]

    @property
    def authority(self) -> str:
        return self.connection["authority"]

    @property
    def tenant_id(self) -> str:
        return self.connection["tenant_id"]

    @property
    def client_id(self) -> str:
        return self.connection["client_id"]

    @property
    def client_secret(self) -> str:
        return self.connection["client_secret"]

    @property
    def world(self) -> World:
        return self.app.world

    def _start(self) -> None:
        write_json_atomic(self.connection_file, self.connection)
        self._thread.start()
        if self.state_file is not None:
            self._save()
            self._saver = threading.Thread(
                target=self._save_loop, name="reconciler-sim-state", daemon=True
            )
            self._saver.start()

    # --- persistence -------------------------------------------------------------------------

    def _save(self) -> float:
        """Write the state if it changed; the seconds the world was locked for it."""
        if self.state_file is None:
            return 0.0
        with self.world.lock:
            if self.world.version == self._saved_version:
                return 0.0
            started = time.perf_counter()
            data = snapshot(self.world)
            self._saved_version = self.world.version
            held = time.perf_counter() - started
        write_json_atomic(self.state_file, data)
        return held

    def _save_loop(self) -> None:
        # Debounced, after the last mutation: at most every 100 ms, and for big worlds rarely
        # enough that snapshots (which hold the lock) take under a tenth of the time.
        pause = 0.1
        while not self._stopped.wait(pause):
            pause = max(0.1, 10 * self._save())

    # --- the public handle -------------------------------------------------------------------

    def request_log(self, *, op: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        return self.app.request_log(op=op, since=since)

    def clear_log(self) -> None:
        self.app.clear_log()

    def stats(self) -> dict[str, Any]:
        return {**self.app.stats(), "connections": self._server.accepted}

    def count(self, op: str) -> int:
        """How many requests to one operation are in the log."""
        return int(self.app.stats()["by_op"].get(op, 0))

    def reset(self, seed: SeedSource = None) -> None:
        """Restore the start seed, or load ``seed`` (the start seed stays what it was);
        faults and the log are left alone."""
        self.app.reset(load_seed(seed) if seed is not None else None)

    @property
    def faults(self) -> Faults:
        return self.app.faults

    def set_faults(self, spec: FaultSpec = None, **changes: Any) -> Faults:
        """Replace the faults: the start defaults, then ``spec``, then ``changes``."""
        new = make_faults(changes, make_faults(spec, self.app.default_faults))
        self.app.set_faults(new)
        return new

    def update_faults(self, **changes: Any) -> Faults:
        """Change some fault fields, keeping the rest."""
        new = make_faults(changes, self.app.faults)
        self.app.set_faults(new)
        return new

    def state(self) -> dict[str, Any]:
        with self.world.lock:
            return snapshot(self.world)

    def edit(
        self, kind: str, object_id: str, patch: Mapping[str, Any], *, caller: str = PORTAL_USER
    ) -> Any:
        """Change an object out of band, as the portal user ``caller`` would (recorded in the
        Activity Log, or in the organisation's audit log when auditing is on)."""
        return self.app.edit(kind, object_id, dict(patch), caller=caller)

    def delete(self, kind: str, object_id: str, *, caller: str = PORTAL_USER) -> None:
        """Delete an object out of band, skipping the API's checks (recorded as ``edit``)."""
        self.app.edit(kind, object_id, None, delete=True, caller=caller)

    def set_auditing(self, organization: str, enabled: bool, *, caller: str = PORTAL_USER) -> None:
        """Turn an organisation's "Log Audit Events" policy on or off."""
        self.app.set_auditing(organization, enabled, caller=caller)

    def age_logs(self, seconds: float) -> None:
        """Move every Activity Log event and audit entry ``seconds`` into the past."""
        self.app.age_logs(seconds)

    def activity_log(self) -> list[dict[str, Any]]:
        """Every Activity Log event recorded, visible to queries yet or not, oldest first."""
        return self.app.arm.activity.events()

    def audit_log(self, organization: str | None = None) -> list[dict[str, Any]]:
        """Every audit entry recorded (of one organisation), visible yet or not, newest first."""
        return self.app.audit.entries(organization)

    def sign_in(self, organization: str, endpoint_id: str) -> dict[str, Any]:
        """Whether a pipeline using this service connection could sign in to Azure now (see
        ``DevOps.sign_in``): ``{"ok", "reason", "scheme", "issuer", "subject", "identity"}``."""
        return self.app.devops.sign_in(organization, endpoint_id)

    def sign_ins(self) -> list[dict[str, Any]]:
        """``sign_in`` for every service connection held, each with ``organization`` and
        ``id`` (see ``DevOps.sign_ins``)."""
        return self.app.devops.sign_ins()

    def expire_tokens(self, token: str | None = None) -> None:
        """Expire one access token, or all of them (then every client must sign in again:
        azure-identity keeps its cached token, so avoid that on a shared simulator)."""
        self.app.tokens.expire(token, time.time())

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self._saver is not None:
            self._saver.join(timeout=5)
        self._save()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _tls_context(state_dir: Path) -> ssl.SSLContext:
    import trustme

    ca = trustme.CA(organization_name="reconciler simulator")
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    state_dir.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(state_dir / "ca.pem"))
    return context


def start(
    seed: SeedSource = None,
    state_dir: Path | str | None = None,
    latency_ms: float = 0,
    faults: FaultSpec = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    state_file: Path | str | None = None,
    connection_file: Path | str | None = None,
) -> Simulator:
    """Start a simulator in a background thread and return its handle.

    ``seed``: None (the default world), a seed dict, or a YAML/JSON path. ``state_dir`` holds
    the CA certificate and (by default) ``connection.json``; a temporary directory when None.
    ``state_file``: persist the state there (atomically, debounced) and start from it when it
    exists. ``faults``: a ``Faults``, a mapping of its fields, or ``--fault`` spec strings.
    """
    directory = (
        Path(state_dir)
        if state_dir is not None
        else Path(tempfile.mkdtemp(prefix="reconciler-sim-"))
    )
    persisted = Path(state_file) if state_file is not None else None
    seed_data = load_seed(seed)
    base_faults = make_faults({"latency_ms": latency_ms}) if latency_ms else Faults()
    app = App(seed_data, make_faults(faults, base_faults))
    app.default_faults = base_faults
    if persisted is not None and persisted.exists():
        # continue from the saved state; reset() still goes back to the seed
        app.reset(load_seed(persisted))
    context = _tls_context(directory)
    server = _Server((host, port), app, context)
    sim = Simulator(
        app,
        server,
        directory,
        Path(connection_file) if connection_file is not None else directory / "connection.json",
        persisted,
    )
    sim._start()
    return sim
