"""The service connection's executor: an Azure DevOps workload identity federation endpoint
through the ``DevOpsPort``, in named steps (create, wait until ready, share, set pipeline
permissions; read, update, ...; delete, wait until deleted), so that a retry resumes at the
step that failed. Always updated in place: the rules never plan a replace (a recreated
connection loses its id and pipeline permissions), and a hand-edited plan that asks for one is
refused. Its writes count against Azure DevOps' limit."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Final

from reconciler import federation
from reconciler.changes import Action, Change, Reason
from reconciler.errors import (
    ConflictError,
    NotFoundError,
    PermanentError,
    ProviderError,
    TransientError,
)
from reconciler.federation import ENTRA_ISSUER_TYPE, is_devops_issuer
from reconciler.kinds.executors.context import (
    ApplyContext,
    ExecutorDefaults,
    check_generated_pair,
    guard_description,
    identity_attrs,
    identity_path,
    known,
    lagging,
    need,
    no_action,
    step,
)
from reconciler.kinds.executors.decoding import LiveIndex, Raw, ReadPlan
from reconciler.kinds.service_connection import (
    SECRET_SCHEME,
    WIF,
    endpoint_gone,
    organization_id,
    transition_credential_name,
    wanted_issuer,
)
from reconciler.model import (
    DEFAULT_AUDIENCE,
    UNKNOWN,
    Address,
    DesiredState,
    Kind,
    LiveState,
    Resource,
    connection_key,
    credential_key,
)
from reconciler.ownership import mark_description, read_description

# what azure DevOps records as the connection's ARM endpoint (data, not where we talk)
ARM_ENDPOINT_URL: Final = "https://management.azure.com/"
_DELETE_REFUSED_TEXT: Final = "cannot delete this service connection while federated credentials"


class ServiceConnectionExecutor(ExecutorDefaults):
    kind: Kind = Kind.SERVICE_CONNECTION

    def perform(self, change: Change, ctx: ApplyContext) -> dict[str, Any]:
        return _perform_connection(change, ctx)

    def plan_reads(self, resources: list[Resource], plan: ReadPlan) -> None:
        """Connections are listed per project of each organisation; pipelines and pipeline
        permissions only where the specs manage permissions; the subscription's resource
        groups are read to check the names."""
        for res in resources:
            plan.group_subscriptions.add(str(res.attrs["subscriptionId"]).lower())
            org = str(res.attrs["organization"])
            plan.organizations.setdefault(org.lower(), org)
            plan.connections.add(res.address.key)
            if res.attrs.get("pipelinePermissions") is not None:
                project = str(res.attrs["project"])
                plan.permission_projects.setdefault((org.lower(), project.lower()), (org, project))
                plan.permission_connections.add(res.address.key)

    def decode(self, raw: Raw, index: LiveIndex, desired: DesiredState) -> None:
        """Every connection read, in the project it belongs to (found by project id), once;
        declared or this owner's become live resources. Every one read, owned or not, tells
        the issuer and subject it signs in with (``LiveState.federations``)."""
        declared = {r.address.key for r in desired.of_kind(Kind.SERVICE_CONNECTION)}
        seen: set[str] = set()
        owning_of: dict[str, str] = {}  # endpoint id -> its project
        for (org, listed_under), endpoints in sorted(raw.endpoints.items()):
            names = project_names(raw.projects.get(org) or [])
            for endpoint in sorted(endpoints, key=lambda e: str(e.get("id", "")).lower()):
                if endpoint_gone(endpoint):
                    continue  # a connection being deleted: what Azure DevOps returns meanwhile
                endpoint_id = str(endpoint.get("id") or "").lower()
                owning = owning_project(endpoint, org, listed_under, names, declared)
                if not endpoint_id or owning is None or endpoint_id in seen:
                    continue
                seen.add(endpoint_id)
                owning_of[endpoint_id] = owning
                name = str(endpoint.get("name") or "")
                key = connection_key(org, owning, name)
                description, marker = read_description(endpoint.get("description"))
                if index.export is not None:
                    if not index.export.holds_project(org, owning):
                        continue
                elif key not in declared and marker != index.owner:
                    continue
                attrs, obj = _connection_attrs(
                    endpoint,
                    org,
                    owning,
                    description,
                    index.by_client,
                    raw.permissions,
                    index.pipelines,
                    names,
                )
                index.add(Kind.SERVICE_CONNECTION, key, attrs, marker, obj)
        for (org, _project), endpoints in raw.endpoints.items():
            for endpoint in endpoints:
                owning = owning_of.get(str(endpoint.get("id") or "").lower())
                params = (endpoint.get("authorization") or {}).get("parameters") or {}
                issuer = params.get("workloadIdentityFederationIssuer")
                subject = params.get("workloadIdentityFederationSubject")
                if owning is not None and issuer and subject:
                    index.federations.setdefault((str(issuer), str(subject)), set()).add(
                        connection_key(org, owning, str(endpoint.get("name") or ""))
                    )

    def lane(self, change: Change) -> str:
        """Azure DevOps' own limit (per organisation and user)."""
        return "devops"

    def out_of_sight(
        self, address: Address, owner: str, owned: set[Address], after: LiveState
    ) -> bool:
        """Read only in an organisation the specs or this owner's objects lead to."""
        return address.key.split("/", 1)[0] not in after.organizations


EXECUTOR = ServiceConnectionExecutor()


# -- service connections -------------------------------------------------------------------
#
# A connection change is several requests. Each is a step (``_step``): done steps are kept in
# the context, so a retry of the change resumes at the step that failed instead of creating
# the connection again, and a failure says what was done.


def _perform_connection(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    action = change.action
    if action is Action.DELETE:
        _delete_connection(change, ctx, change.before or {})
        return {}
    if action.is_replace:
        # never planned (no field forces one, a replaced identity's connection is updated):
        # a recreated connection would lose its id and pipeline permissions
        raise no_action(change)
    if action is Action.UPDATE and change.before is not None and change.before.get("id"):
        return _update_connection(change, ctx, str(change.before["id"]))
    return _create_connection(change, ctx)


def _project_id(ctx: ApplyContext, org: str, project: str) -> str:
    found = ctx.live.projects.get(f"{org}/{project}".lower())
    if found:
        return found
    for item in ctx.services.devops.list_projects(org):
        if str(item.get("name", "")).lower() == project.lower():
            return str(item["id"])
    raise PermanentError(
        f"project {project!r} does not exist in Azure DevOps organisation {org!r}",
        code="ProjectNotFound",
    )


def _ref_project_id(ref: Mapping[str, Any]) -> str:
    return str((ref.get("projectReference") or {}).get("id") or "").lower()


def _principal_and_tenant(change: Change, ctx: ApplyContext) -> tuple[str, str]:
    after = change.after or {}
    ident_key = str(after["identity"])
    client_id = after.get("servicePrincipalId")
    tenant = after.get("tenantId")
    if not (known(client_id) and known(tenant)):
        ident = identity_attrs(ctx, ident_key)
        if not known(client_id):
            # the identity's client (application) id, not its principal id
            client_id = need(ident, "clientId", ident_key)
        if not known(tenant):
            tenant = ident.get("tenantId") if known(ident.get("tenantId")) else None
    if not known(tenant):
        tenant = ctx.live.tenant_id or ctx.services.tenant_id
    return str(client_id), str(tenant)


def _cloud_of(ctx: ApplyContext) -> dict[str, str]:
    """The service connection ``environment`` and ARM URL of the run's cloud (``--cloud``)."""
    target = getattr(ctx.services, "target", None)
    if target is None or not target.is_cloud:
        return {}
    return {"environment": target.environment, "management_url": target.arm_url + "/"}


def connection_body(
    current: Mapping[str, Any],
    after: Mapping[str, Any],
    owner: str,
    client_id: str,
    tenant: str,
    project_id: str,
    *,
    environment: str = "AzureCloud",
    management_url: str = ARM_ENDPOINT_URL,
) -> dict[str, Any]:
    """The POST or PUT body of a workload identity connection: only what the tool manages.

    Like Terraform's azuredevops provider (``doBaseExpansion`` + ``expandServiceEndpointAzureRM``)
    and nothing the service generates (``createdBy``, ``isReady``, ``isShared``,
    ``operationStatus``, the ``workloadIdentityFederation*`` parameters), whatever ``current``
    (the connection as read, or empty) holds; only its ``url``, ``type``, ``owner`` and
    ``data.environment`` carry over. The one project reference is the owning project's (by id);
    the service keeps the other projects' references of an update as they are. A new
    connection gets ``environment`` and ``management_url``: the target cloud's (``--cloud``).
    """
    description = mark_description(after.get("description"), owner)
    name = str(after["name"])
    params = {"serviceprincipalid": client_id, "tenantid": tenant}
    if after.get("scope"):
        params["scope"] = str(after["scope"])
    environment = (current.get("data") or {}).get("environment") or environment
    return {
        "name": name,
        "type": current.get("type") or "azurerm",
        "url": current.get("url") or management_url,
        "owner": current.get("owner") or "library",
        "description": description,
        "authorization": {"scheme": "WorkloadIdentityFederation", "parameters": params},
        "data": {
            "subscriptionId": str(after["subscriptionId"]),
            "subscriptionName": str(after.get("subscriptionName") or ""),
            "environment": environment,
            "scopeLevel": "Subscription",
            "creationMode": "Manual",
        },
        "serviceEndpointProjectReferences": [
            {
                "projectReference": {"id": project_id, "name": str(after["project"])},
                "name": name,
                "description": description,
            }
        ],
    }


def _create_connection(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    after = change.after or {}
    org, project, name = str(after["organization"]), str(after["project"]), str(after["name"])
    devops = ctx.services.devops

    def create() -> dict[str, Any]:
        client_id, tenant = _principal_and_tenant(change, ctx)
        project_id = _project_id(ctx, org, project)
        body = connection_body(
            {}, after, ctx.owner, client_id, tenant, project_id, **_cloud_of(ctx)
        )
        if _wants_entra(after, body):
            # asked for on create (Microsoft's samples do): an organisation whose default is
            # still the Azure DevOps issuer would otherwise give it the retiring one
            body["authorization"]["parameters"]["workloadIdentityFederationIssuerType"] = (
                ENTRA_ISSUER_TYPE
            )
        try:
            return devops.create_endpoint(org, body)
        except ConflictError as exc:
            if exc.code != "DuplicateServiceConnectionException":
                raise
            # a create whose answer was lost, or one made by hand since the plan: update it
            existing = _find_by_name(ctx, org, project, name)
            if existing is None:
                raise
            return devops.update_endpoint(
                org,
                str(existing["id"]),
                {
                    **connection_body(
                        existing, after, ctx.owner, client_id, tenant, project_id, **_cloud_of(ctx)
                    ),
                    "id": str(existing["id"]),
                },
            )

    created = step(ctx, change, "create", create)
    endpoint_id = str(created["id"])
    ready = step(
        ctx,
        change,
        "wait until ready",
        lambda: _wait_ready(ctx, org, project, endpoint_id, created),
    )
    # from here on the connection exists: its issuer and subject are final
    ctx.record(change.address, _connection_result(ready, after, ctx))
    _connection_finish(change, ctx, endpoint_id, ready)
    return _connection_result(ready, after, ctx)


def _update_connection(change: Change, ctx: ApplyContext, endpoint_id: str) -> dict[str, Any]:
    """Read, then (a secret-based connection) convert it to workload identity federation,
    (a new identity) give that identity a credential for the pair the connection signs in
    with, update, (the Azure DevOps issuer, spec wanting Entra) migrate the issuer; then share
    and set pipeline permissions. Each is a named step, so a retry resumes where it failed, and
    a new apply after a crash finds the connection where it was left (the plan is made from
    live state). At every moment the identity the connection names holds a credential for the
    issuer and subject it presents."""
    after = change.after or {}
    org, project = str(after["organization"]), str(after["project"])
    devops = ctx.services.devops

    def read() -> dict[str, Any]:
        try:
            return devops.get_endpoint(org, project, endpoint_id)
        except NotFoundError as exc:
            raise lagging(ctx, exc, endpoint_id, f"service connection {endpoint_id}") from None

    current = step(ctx, change, "read", read)
    converted = False
    if _scheme(current).lower() == SECRET_SCHEME.lower():
        # the conversion keeps every property, the client id included (the service refuses a
        # conversion body that changes one): the connection still names the app registration,
        # whose credential Azure DevOps writes itself (automatic mode); the identity follows
        current = step(
            ctx,
            change,
            CONVERT_STEP,
            _once(lambda fresh: _convert(ctx, change, org, project, current, None, fresh), current),
        )
        converted = True
    client_id, tenant = _principal_and_tenant(change, ctx)
    pair = _pair(current)
    named = str(_params(current).get("serviceprincipalid") or "")
    # credentials this change writes: name -> (issuer, subject)
    written: dict[str, tuple[str, str]] = {}
    if pair is not None and named.lower() != client_id.lower():
        # the identity the connection is about to name must accept what it presents first:
        # its credential written (unless it holds one: writing it again would restart its
        # propagation), then honoured by Entra. No API tells when, nor how old a credential
        # is (one held may have been written by an interrupted run seconds ago): always a wait
        held = {tuple(p): n for n, p in _identity_credentials(ctx, str(after["identity"])).items()}
        name = held.get(pair) or step(
            ctx,
            change,
            "add federated credential",
            lambda: _put_connection_credential(ctx, change, current, pair, written),
        )
        written[name] = pair
        step(ctx, change, PROPAGATE_STEP, lambda: _propagated(ctx, change, name))

    def update() -> dict[str, Any]:
        project_id = _project_id(ctx, org, project)
        body = connection_body(
            current, after, ctx.owner, client_id, tenant, project_id, **_cloud_of(ctx)
        )
        return devops.update_endpoint(org, endpoint_id, {**body, "id": endpoint_id})

    # a change that moves only what other steps write (the issuer switch, sharing, pipeline
    # permissions) needs no PUT: it would cost a request (and Azure DevOps throttling) to
    # write what is already there
    updated = step(ctx, change, "update", update) if _needs_put(change) else current
    cleaned = ""
    if _wants_entra(after, updated) and is_devops_issuer(_params(updated).get(ISSUER)):
        updated, cleaned = _migrate_issuer(change, ctx, org, project, updated, written)
    elif converted:
        updated = step(
            ctx, change, "verify", lambda: _verify(ctx, change, org, project, None, written)
        )
    _say_if_reported_differs(change, ctx, updated, cleaned)
    # a rename in an organisation on the legacy issuer changes the subject: the PUT's answer
    # carries the values the implied credential must have
    ctx.record(change.address, _connection_result(updated, after, ctx))
    _connection_finish(change, ctx, endpoint_id, updated)
    return _connection_result(updated, after, ctx)


# fields a connection update writes with steps of their own, never with the PUT
_OWN_STEPS: Final = frozenset({"pipelinePermissions", "sharedWith", "scheme", "issuer", "subject"})


PROPAGATE_STEP: Final = "wait for the new credential to propagate"


def _propagated(ctx: ApplyContext, change: Change, name: str) -> None:
    """Return once ``ctx.credential_propagation`` seconds have passed since credential
    ``name`` was written for this change (the step right before); until then a
    ``TransientError`` whose delay is the time left, so the engine waits without holding a
    request and an interrupt stops the wait."""
    left = ctx.left(
        "credential propagation", f"{change.address}/{name}", ctx.credential_propagation
    )
    if left > 0:
        raise TransientError(
            f"federated credential {name} was just written; Microsoft Entra honours a new "
            f"credential after a delay, so the connection is pointed at it in {left:.0f} s",
            code="CredentialPropagating",
            delay=left,
        )


def _changed_roots(change: Change) -> set[str] | None:
    """The top-level fields the change moves, or None when the plan does not list them all
    (only an update for changed fields or an adoption does)."""
    if change.reason not in (Reason.FIELDS_CHANGED, Reason.ADOPTION):
        return None
    return {f.path.split(".", 1)[0].split("[", 1)[0] for f in change.fields}


def _needs_put(change: Change) -> bool:
    """Whether an update must PUT the connection: an adoption (the owner marker), a value
    known only after apply, or a changed field no other step writes."""
    roots = _changed_roots(change)
    return (
        change.reason is not Reason.FIELDS_CHANGED
        or roots is None
        or bool(change.unknowns)
        or not roots <= _OWN_STEPS
    )


def _once(call: Any, known: dict[str, Any]) -> Any:
    """A step body that receives ``known`` (an endpoint this change has just read or
    written) on its first attempt and None on each retry (then it reads afresh)."""
    first = [known]

    def run() -> Any:
        fresh = first.pop() if first else None
        return call(fresh)

    return run


# -- migration and conversion in place (issue 11 §2, §3) ---------------------------------------

ISSUER: Final = "workloadIdentityFederationIssuer"
SUBJECT: Final = "workloadIdentityFederationSubject"
CONVERT_STEP: Final = "convert to workload identity federation"
SWITCH_STEP: Final = "switch to the Entra issuer"
# the Entra credential rewritten for the pair a 202 showed (issue 11 §2 (c))
FOLLOW_STEP: Final = "credential for the pair Azure DevOps waits for"
# operationStatus.statusMessage of a conversion the service cannot complete yet (202)
CONVERTING: Final = "converting_scheme"


def _params(endpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    return (endpoint.get("authorization") or {}).get("parameters") or {}


def _scheme(endpoint: Mapping[str, Any]) -> str:
    return str((endpoint.get("authorization") or {}).get("scheme") or "")


def _pair(endpoint: Mapping[str, Any]) -> tuple[str, str] | None:
    params = _params(endpoint)
    issuer, subject = params.get(ISSUER), params.get(SUBJECT)
    return (str(issuer), str(subject)) if issuer and subject else None


def _wants_entra(after: Mapping[str, Any], endpoint: Mapping[str, Any]) -> bool:
    data = endpoint.get("data") or {}
    return wanted_issuer(after, {"environment": data.get("environment")}) == "entra"


def _pending(endpoint: Mapping[str, Any]) -> bool:
    status = endpoint.get("operationStatus")
    return isinstance(status, Mapping) and str(status.get("statusMessage") or "") == CONVERTING


def _convert(
    ctx: ApplyContext,
    change: Change,
    org: str,
    project: str,
    endpoint: dict[str, Any],
    issuer_type: str | None,
    fresh: dict[str, Any] | None,
    waiting_for: Callable[[tuple[str, str]], None] | None = None,
) -> dict[str, Any]:
    """One conversion request. A 202 ``converting_scheme`` means the service cannot sign in
    with the new issuer and subject yet (a new credential takes a moment to be honoured):
    ``TransientError``, so the engine retries the step within its retry policy and then fails
    naming it. When that answer shows an Entra pair (the portal shows the pair to add by hand),
    ``waiting_for`` is called with it first, so that the identity can be given what the
    service waits for. A conversion already done is not repeated: the service refuses a
    second one. ``fresh``: the endpoint as this change last read or wrote it; None (a retry)
    reads it again first."""
    devops = ctx.services.devops
    endpoint_id = str(endpoint.get("id"))
    if fresh is None:
        try:
            fresh = devops.get_endpoint(org, project, endpoint_id)
        except NotFoundError as exc:
            raise lagging(ctx, exc, endpoint_id, f"service connection {endpoint_id}") from None
    done = (
        _scheme(fresh) == WIF
        if issuer_type is None
        else not is_devops_issuer(_params(fresh).get(ISSUER))
    )
    if done and not _pending(fresh):
        return fresh
    answer = devops.convert_authentication_scheme(org, project, fresh, issuer_type=issuer_type)
    if _pending(answer):
        shown = _pair(answer)
        if waiting_for is not None and shown is not None and not is_devops_issuer(shown[0]):
            waiting_for(shown)
        raise TransientError(
            f"service connection {endpoint.get('name')}: Azure DevOps cannot sign in with the "
            f"new issuer and subject yet ({CONVERTING}); the credential may still be "
            "propagating, or the identity it names has none for them",
            code="ConvertingScheme",
            status=202,
            delay=ctx.wait_delay,
        )
    return answer


def _identity_credentials(
    ctx: ApplyContext, ident_key: str, written: Mapping[str, tuple[str, str]] | None = None
) -> dict[str, tuple[Any, Any]]:
    """The identity's credentials as observed, with those this change ``written``: name ->
    (issuer, subject)."""
    found: dict[str, tuple[Any, Any]] = {}
    for address, current in ctx.live.resources.items():
        if address.kind is Kind.FEDERATED_CREDENTIAL and current.attrs.get("identity") == ident_key:
            found[str(current.attrs.get("name"))] = (
                current.attrs.get("issuer"),
                current.attrs.get("subject"),
            )
    for name, pair in (written or {}).items():
        found = {k: v for k, v in found.items() if k.lower() != name.lower()}
        found[name] = pair
    return found


def _put_connection_credential(
    ctx: ApplyContext,
    change: Change,
    endpoint: Mapping[str, Any],
    pair: tuple[str, str],
    written: Mapping[str, tuple[str, str]],
) -> str:
    """Give the identity the connection signs in as (next) a federated credential for
    ``pair``, under the name the tool gives the connection's credential (see
    ``transition_credential_name``); returns the name."""
    after = change.after or {}
    ident_key = str(after["identity"])
    ident = identity_path(ctx, ident_key)[2]
    name = transition_credential_name(
        str(after["organization"]),
        str(after["project"]),
        str(endpoint.get("name") or after["name"]),
        _identity_credentials(ctx, ident_key, written),
        pair,
    )
    _check_pair(ctx, change, endpoint, pair)
    try:
        _put_pair(ctx, ident_key, name, pair)
    except NotFoundError as exc:
        raise lagging(ctx, exc, ident_key, f"identity {ident}") from None
    return name


def _put_pair(ctx: ApplyContext, ident_key: str, name: str, pair: tuple[Any, Any]) -> None:
    """Write credential ``name`` on the identity for ``pair`` (checked by the caller), and
    record it, so that the plan's own change for this credential (a connection's implied one)
    finds it written and does not write it again: a second write would restart its
    propagation in Entra."""
    sub, rg, ident = identity_path(ctx, ident_key)
    body = {"properties": {"issuer": pair[0], "subject": pair[1], "audiences": [DEFAULT_AUDIENCE]}}
    raw = ctx.services.arm.put_credential(sub, rg, ident, name, body)
    ctx.record(
        Address(Kind.FEDERATED_CREDENTIAL, credential_key(ident_key, name)),
        {
            "identity": ident_key,
            "name": name,
            "issuer": pair[0],
            "subject": pair[1],
            "audiences": [DEFAULT_AUDIENCE],
            "id": (raw or {}).get("id"),
        },
    )


def _check_pair(
    ctx: ApplyContext, change: Change, endpoint: Mapping[str, Any], pair: tuple[Any, Any]
) -> None:
    """Refuse to write a credential for a pair Azure DevOps does not generate for this
    connection (``check_generated_pair``)."""
    after = change.after or {}
    check_generated_pair(
        ctx,
        pair,
        organization=str(after["organization"]),
        connection_id=endpoint.get("id") or (change.before or {}).get("id"),
        tenant_id=_params(endpoint).get("tenantid"),
        connection=change.address.key,
        identity=str(after["identity"]),
        project=after.get("project"),
        name=endpoint.get("name") or after.get("name"),
    )


def _entra_pair(ctx: ApplyContext, endpoint: Mapping[str, Any], org: str) -> tuple[str, str]:
    """The Entra issuer and subject of this existing connection, from ids
    (``reconciler.federation``): its tenant, the organisation's id, its id."""
    params = _params(endpoint)
    org_id = organization_id(
        {"organization": org, "issuer": params.get(ISSUER)}, ctx.live.organizations
    )
    tenant = params.get("tenantid")
    if not org_id or not tenant:
        raise PermanentError(
            f"service connection {endpoint.get('name')}: the organisation id or the tenant is "
            "unknown, so the Entra issuer's subject cannot be computed",
            code="EntraSubjectUnknown",
        )
    try:
        return federation.entra_federation(str(tenant), org_id, str(endpoint.get("id")))
    except ValueError as exc:
        raise PermanentError(
            f"service connection {endpoint.get('name')}: {exc}", code="EntraSubjectUnknown"
        ) from None


def _migrate_issuer(
    change: Change,
    ctx: ApplyContext,
    org: str,
    project: str,
    endpoint: dict[str, Any],
    written: dict[str, tuple[str, str]],
) -> tuple[dict[str, Any], str]:
    """Azure DevOps issuer -> Microsoft Entra issuer, with no moment in which the pipeline
    cannot sign in: (a) add a credential for the Entra pair computed from ids; (b) switch;
    (c) read back and compare; (d) delete the legacy credential. When the service reports
    another pair than computed, the identity's credentials follow what it reports (``_verify``
    writes it where no credential has it, over the computed one), the computed credential, if
    still there, is deleted (this change wrote it and nothing signs in with it), and only then
    the legacy one; the caller tells the user (``_say_if_reported_differs``). Returns the
    connection as read back and what was done with the computed credential ('' when the
    service reports the computed pair)."""
    after = change.after or {}
    ident_key = str(after["identity"])
    legacy = _pair(endpoint)
    entra = _entra_pair(ctx, endpoint, org)
    name = step(
        ctx,
        change,
        "add Entra issuer credential",
        lambda: _put_connection_credential(ctx, change, endpoint, entra, written),
    )
    written[name] = entra
    # that Azure DevOps refuses the switch (202) until Entra honours the credential is a
    # hypothesis (sim README C8): wait for propagation as for any other switch, not on it
    step(ctx, change, PROPAGATE_STEP, lambda: _propagated(ctx, change, name))
    shown_before = ctx.steps_done(change).get(FOLLOW_STEP)
    if shown_before:  # an earlier attempt of this change rewrote it
        written[name] = (str(shown_before[0]), str(shown_before[1]))

    def follow(shown: tuple[str, str]) -> None:
        # the service waits for another pair than computed: the computed credential (this
        # change wrote it; nothing signs in with it) is rewritten for what the service shows
        if shown in {tuple(p) for p in _identity_credentials(ctx, ident_key, written).values()}:
            return
        _check_pair(ctx, change, endpoint, shown)
        _put_pair(ctx, ident_key, name, shown)
        written[name] = shown
        ctx.step_done(change, FOLLOW_STEP, shown)

    step(
        ctx,
        change,
        SWITCH_STEP,
        _once(
            lambda fresh: _convert(
                ctx, change, org, project, endpoint, ENTRA_ISSUER_TYPE, fresh, follow
            ),
            endpoint,
        ),
    )
    current = step(ctx, change, "verify", lambda: _verify(ctx, change, org, project, name, written))
    reported = _pair(current)
    cleaned = ""
    if reported != entra:
        # what the service reports is held now (``_verify``): the computed credential serves
        # nothing; the name may hold the reported pair instead (written over it)
        held = _identity_credentials(ctx, ident_key, written)
        if tuple(held.get(name) or ()) == entra:
            step(
                ctx,
                change,
                "delete computed credential",
                lambda: _delete_pair(ctx, change, ident_key, entra, written),
            )
            written.pop(name, None)
            cleaned = f"credential {name}, written for the computed pair, was deleted"
        else:
            cleaned = f"credential {name}, first written for the computed pair, now holds it"
    if legacy is not None and legacy != reported:
        step(
            ctx,
            change,
            "delete legacy credential",
            lambda: _delete_pair(ctx, change, ident_key, legacy, written),
        )
    return current, cleaned


def _say_if_reported_differs(
    change: Change, ctx: ApplyContext, endpoint: Mapping[str, Any], cleaned: str
) -> None:
    """Issue 11 §2 (c): when a migration or conversion ends with the connection reporting
    another issuer or subject than the plan computed (``reconciler.federation``), tell the
    user both, and that the identity's credential follows what the service reports."""
    after = change.after or {}
    planned = (after.get("issuer"), after.get("subject"))
    reported = _pair(endpoint)
    if not (known(planned[0]) and known(planned[1])) or reported is None:
        return
    if tuple(planned) == reported:
        return
    ctx.notice(
        change.address,
        f"service connection {change.address.key}: Azure DevOps reports issuer {reported[0]} "
        f"and subject {reported[1]}, not the issuer {planned[0]} and subject {planned[1]} "
        f"the plan computed; the identity's federated credential follows what the service "
        f"reports{f' ({cleaned})' if cleaned else ''}, so the pipeline signs in. The "
        "computation (reconciler/federation.py) may be out of date: please report it",
    )


def _verify(
    ctx: ApplyContext,
    change: Change,
    org: str,
    project: str,
    name: str | None,
    written: dict[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Read the connection back: workload identity federation, naming the spec's identity,
    whose credentials include the issuer and subject it now presents. When they do not (the
    service generated another pair than the one written), a credential for what it reports is
    written (under ``name``, else the connection's credential name) and noted in
    ``written``."""
    after = change.after or {}
    endpoint_id = str((change.before or {}).get("id"))
    current = ctx.services.devops.get_endpoint(org, project, endpoint_id)
    reported = _pair(current)
    if _scheme(current) != WIF or reported is None:
        raise PermanentError(
            f"service connection {current.get('name')}: after the conversion it reports scheme "
            f"{_scheme(current) or 'none'} without a workload identity issuer and subject",
            code="ConversionNotVerified",
        )
    ident_key = str(after["identity"])
    held = _identity_credentials(ctx, ident_key, written)
    if reported not in {tuple(p) for p in held.values()}:
        _check_pair(ctx, change, current, reported)
        name = name or transition_credential_name(
            str(after["organization"]),
            str(after["project"]),
            str(current.get("name")),
            held,
            reported,
        )
        _put_pair(ctx, ident_key, name, reported)
        if written is not None:
            written[name] = reported
    return current


def _delete_pair(
    ctx: ApplyContext,
    change: Change,
    ident_key: str,
    pair: tuple[str, str],
    written: Mapping[str, tuple[str, str]],
) -> None:
    """Delete the identity's credentials for ``pair`` (the legacy issuer's), unless another
    connection read in this run still signs in with it."""
    users = set(ctx.live.federations.get(pair, ())) - {change.address.key}
    if users:
        return
    sub, rg, ident = identity_path(ctx, ident_key)
    for name, held in sorted(_identity_credentials(ctx, ident_key, written).items()):
        if tuple(held) == pair:
            with contextlib.suppress(NotFoundError):
                ctx.services.arm.delete_credential(sub, rg, ident, name)


def _connection_finish(
    change: Change, ctx: ApplyContext, endpoint_id: str, endpoint: Mapping[str, Any]
) -> None:
    after = change.after or {}
    org, project = str(after["organization"]), str(after["project"])
    step(ctx, change, "share", lambda: _share(ctx, org, endpoint_id, endpoint, after))
    roots = _changed_roots(change) if change.action is Action.UPDATE else None
    if roots is not None and "pipelinePermissions" not in roots:
        return  # the plan found them as the spec wants them: no read, no write
    step(
        ctx,
        change,
        "set pipeline permissions",
        lambda: _set_permissions(ctx, org, project, endpoint_id, after.get("pipelinePermissions")),
    )


def _find_by_name(ctx: ApplyContext, org: str, project: str, name: str) -> dict[str, Any] | None:
    for item in ctx.services.devops.list_endpoints(org, project, names=[name]):
        if str(item.get("name", "")).lower() == name.lower() and not endpoint_gone(item):
            return item
    return None


def _wait_ready(
    ctx: ApplyContext, org: str, project: str, endpoint_id: str, endpoint: dict[str, Any]
) -> dict[str, Any]:
    """Poll until the new connection reports ready; its issuer and subject are final then."""
    devops = ctx.services.devops
    deadline = ctx.clock.monotonic() + ctx.readiness_timeout
    current = endpoint
    while True:
        if current.get("isReady"):
            return current
        status = current.get("operationStatus") or {}
        if str(status.get("state", "")).lower() == "failed":
            raise PermanentError(
                f"service connection {current.get('name')} failed to become ready: "
                f"{status.get('statusMessage') or 'no message'}",
                code="ServiceConnectionFailed",
            )
        if ctx.clock.monotonic() >= deadline:
            raise PermanentError(
                f"service connection {current.get('name')} is still not ready after "
                f"{ctx.readiness_timeout:.0f}s (state {status.get('state', 'unknown')})",
                code="ServiceConnectionNotReady",
            )
        ctx.clock.sleep(ctx.readiness_interval)
        try:
            current = devops.get_endpoint(org, project, endpoint_id)
        except (NotFoundError, TransientError):
            continue  # just created: a lagging read or a hiccup is one more poll


def _share(
    ctx: ApplyContext, org: str, endpoint_id: str, endpoint: Mapping[str, Any], after: Any
) -> None:
    """Make the connection's project references match ``sharedWith``.

    The owning project's reference is found by its project id, wherever the service lists it.
    """
    owning_id = _project_id(ctx, org, str(after["project"])).lower()
    wanted = {str(p).lower(): str(p) for p in after.get("sharedWith") or []}
    refs = endpoint.get("serviceEndpointProjectReferences") or []
    present = {
        str((r.get("projectReference") or {}).get("name", "")).lower(): r
        for r in refs
        if _ref_project_id(r) != owning_id
    }
    owning = str(after["project"]).lower()
    to_add = [name for low, name in sorted(wanted.items()) if low not in present and low != owning]
    to_remove = [low for low in sorted(present) if low not in wanted and low != owning]
    # never the project the connection was created in (the plan refuses to move a connection
    # off it, ``_home_moves``; this guards a stale or hand-edited plan): without that reference
    # the connection loses its home, and Azure DevOps may delete it
    home = federation.legacy_subject_project(
        _params(endpoint).get(ISSUER),
        _params(endpoint).get("workloadIdentityFederationSubject"),
        org,
        str(endpoint.get("name") or after["name"]),
    )
    if home is not None and home.lower() in to_remove:
        raise PermanentError(
            f"service connection {endpoint.get('name')} was created in project {home} (its "
            f"subject {_params(endpoint).get('workloadIdentityFederationSubject')}), which "
            f"owns it: its reference is never removed. Declare project: {home} with "
            f"sharedWith listing the projects it is shared with; make a new plan",
            code="OwningProject",
        )
    devops = ctx.services.devops
    if to_add:
        description = mark_description(after.get("description"), ctx.owner)
        devops.share_endpoint(
            org,
            endpoint_id,
            [
                {
                    "projectReference": {"id": _project_id(ctx, org, name), "name": name},
                    "name": str(after["name"]),
                    "description": description,
                }
                for name in to_add
            ],
        )
    if to_remove:
        ids = [_ref_project_id(present[low]) or _project_id(ctx, org, low) for low in to_remove]
        devops.delete_endpoint(org, endpoint_id, ids)


def _pipeline_ids(ctx: ApplyContext, org: str, project: str) -> dict[str, int]:
    known = ctx.live.pipelines.get(f"{org}/{project}".lower())
    if known:
        return {name.lower(): pid for name, pid in known.items()}
    items = ctx.services.devops.list_pipelines(org, project)
    return {str(p["name"]).lower(): int(p["id"]) for p in items}


def _set_permissions(
    ctx: ApplyContext, org: str, project: str, endpoint_id: str, wanted: Any
) -> None:
    """``all`` opens the connection to every pipeline; a list authorises exactly those
    pipelines, revoking the others it had authorised. None leaves permissions alone."""
    if wanted is None or wanted is UNKNOWN:
        return
    devops = ctx.services.devops
    resource = {"id": endpoint_id, "type": "endpoint"}
    if wanted == "all":
        body: dict[str, Any] = {"resource": resource, "allPipelines": {"authorized": True}}
        _patch_permissions(ctx, org, project, endpoint_id, body)
        return
    ids = _pipeline_ids(ctx, org, project)
    missing = [str(n) for n in wanted if str(n).lower() not in ids]
    if missing:
        raise PermanentError(
            f"pipeline(s) {', '.join(sorted(missing))} not found in {org}/{project}",
            code="PipelineNotFound",
        )
    target = {ids[str(n).lower()] for n in wanted}
    try:
        current = devops.get_pipeline_permissions(org, project, endpoint_id)
    except NotFoundError:
        current = {}
    authorised = {
        int(p["id"]) for p in current.get("pipelines") or [] if p.get("authorized") and "id" in p
    }
    pipelines = [{"id": pid, "authorized": True} for pid in sorted(target)]
    pipelines += [{"id": pid, "authorized": False} for pid in sorted(authorised - target)]
    body = {"resource": resource, "pipelines": pipelines}
    if (current.get("allPipelines") or {}).get("authorized"):
        body["allPipelines"] = {"authorized": False}
    _patch_permissions(ctx, org, project, endpoint_id, body)


def _patch_permissions(
    ctx: ApplyContext, org: str, project: str, endpoint_id: str, body: dict[str, Any]
) -> None:
    try:
        ctx.services.devops.update_pipeline_permissions(org, project, endpoint_id, body)
    except NotFoundError as exc:
        raise lagging(ctx, exc, endpoint_id, f"service connection {endpoint_id}") from None


def _connection_result(
    endpoint: Mapping[str, Any], after: Any, ctx: ApplyContext
) -> dict[str, Any]:
    params = (endpoint.get("authorization") or {}).get("parameters") or {}
    description, _ = read_description(endpoint.get("description"))
    return {
        "organization": after["organization"],
        "project": after["project"],
        "name": endpoint.get("name"),
        "description": description,
        "identity": after.get("identity"),
        "subscriptionId": (endpoint.get("data") or {}).get("subscriptionId"),
        "subscriptionName": (endpoint.get("data") or {}).get("subscriptionName"),
        "scope": params.get("scope") or None,
        "sharedWith": sorted(after.get("sharedWith") or [], key=str.lower),
        "pipelinePermissions": after.get("pipelinePermissions"),
        "id": endpoint.get("id"),
        "servicePrincipalId": params.get("serviceprincipalid"),
        "tenantId": params.get("tenantid"),
        "issuer": params.get("workloadIdentityFederationIssuer"),
        "subject": params.get("workloadIdentityFederationSubject"),
        "issuerType": params.get("workloadIdentityFederationIssuerType"),
        "isReady": endpoint.get("isReady"),
    }


def _delete_connection(change: Change, ctx: ApplyContext, before: Mapping[str, Any]) -> None:
    """Delete, then wait until Azure DevOps no longer returns the connection (the delete is
    asynchronous): two steps, ``delete`` and ``wait until deleted``."""
    org, project = str(before["organization"]), str(before["project"])

    def locate() -> str | None:
        # the owner marker is read again right before the delete (one request)
        endpoint_id = before.get("id")
        found: dict[str, Any] | None
        if endpoint_id:
            try:
                found = ctx.services.devops.get_endpoint(org, project, str(endpoint_id))
            except NotFoundError:
                return None  # already gone
        else:
            found = _find_by_name(ctx, org, project, str(before["name"]))
        if found is None:
            return None
        what = f"service connection {before.get('name')} in {org}/{project}"
        guard_description(ctx, change.address, found, what)
        return str(found.get("id") or endpoint_id)

    endpoint_id = step(ctx, change, "delete", lambda: _delete_endpoint(ctx, before, locate()))
    if endpoint_id is None:
        return
    step(
        ctx,
        change,
        "wait until deleted",
        lambda: _wait_gone(ctx, org, project, endpoint_id, str(before.get("name") or "")),
    )


def _delete_endpoint(
    ctx: ApplyContext, before: Mapping[str, Any], endpoint_id: str | None
) -> str | None:
    """The DELETE itself; the id deleted, or None when there was nothing to delete."""
    if endpoint_id is None:
        return None
    org, project = str(before["organization"]), str(before["project"])
    projects = [project, *(before.get("sharedWith") or [])]
    ids = [_project_id(ctx, org, p) for p in projects]
    try:
        ctx.services.devops.delete_endpoint(org, endpoint_id, ids)
    except NotFoundError:
        return endpoint_id
    except ProviderError as exc:
        if _DELETE_REFUSED_TEXT not in str(exc).lower():
            raise
        # Azure DevOps sees the removed credential only after a moment
        if ctx.within("delete-refused", endpoint_id, ctx.delete_refusal_wait):
            raise TransientError(
                f"Azure DevOps still refuses to delete service connection {before.get('name')}"
                f" (its federated credential was just removed): {exc}",
                code="ServiceConnectionDeleteRefused",
                status=exc.status,
                delay=ctx.wait_delay,
            ) from None
        raise
    return endpoint_id


def _wait_gone(ctx: ApplyContext, org: str, project: str, endpoint_id: str, name: str) -> None:
    """Poll the connection until it is gone: 404, ``null`` or a partial object (``endpoint_gone``),
    within ``ctx.delete_timeout`` seconds on ``ctx.clock``."""
    devops = ctx.services.devops
    deadline = ctx.clock.monotonic() + ctx.delete_timeout
    while True:
        try:
            current: Any = devops.get_endpoint(org, project, endpoint_id)
        except NotFoundError:
            return
        if endpoint_gone(current):
            return
        if ctx.clock.monotonic() >= deadline:
            raise PermanentError(
                f"service connection {name or endpoint_id} was deleted but Azure DevOps still "
                f"returns it after {ctx.delete_timeout:.0f}s",
                code="ServiceConnectionNotDeleted",
            )
        ctx.clock.sleep(ctx.readiness_interval)


# -- decoding what observe read ----------------------------------------------------------


def project_names(projects: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Project id (lower case) -> name, from an organisation's project list."""
    return {str(p.get("id") or "").lower(): str(p.get("name") or "") for p in projects}


def _ref_names(endpoint: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, str]:
    """The connection's projects: project id (lower case) -> project name, from the project
    list (the reference's own name only when the list does not know the id)."""
    out: dict[str, str] = {}
    for ref in endpoint.get("serviceEndpointProjectReferences") or []:
        project = ref.get("projectReference") or {}
        pid = str(project.get("id") or "").lower()
        name = names.get(pid) or str(project.get("name") or "")
        if name:
            out[pid or name.lower()] = name
    return out


def owning_project(
    endpoint: Mapping[str, Any],
    org: str,
    listed_under: str,
    names: Mapping[str, str],
    declared: Collection[str],
) -> str | None:
    """The project a connection belongs to, found by project id and never by the position of
    its reference (the service promises no order): the declared connection's project when one
    of its projects has one of that name; else, for the Azure DevOps issuer, the project named
    in the subject (``sc://{org}/{project}/{name}``, the project it was created in); else the
    project it was listed under (the first in name order of the connection's projects, since
    observe decodes the listings in that order). None when it is in no project."""
    projects = _ref_names(endpoint, names)
    if not projects:
        return None
    name = str(endpoint.get("name") or "")
    for project in sorted(projects.values(), key=str.lower):
        if connection_key(org, project, name) in declared:
            return project
    params = (endpoint.get("authorization") or {}).get("parameters") or {}
    subject = str(params.get("workloadIdentityFederationSubject") or "")
    if subject.startswith("sc://"):
        parts = subject[len("sc://") :].split("/")
        for project in projects.values():
            if len(parts) == 3 and parts[1].lower() == project.lower():
                return project
    for project in projects.values():
        if project.lower() == listed_under.lower():
            return project
    return sorted(projects.values(), key=str.lower)[0]


def _connection_attrs(
    endpoint: Mapping[str, Any],
    org: str,
    owning: str,
    description: str | None,
    by_client: Mapping[str, str],
    permissions: Mapping[str, Mapping[str, Any]],
    pipelines: Mapping[str, Mapping[str, int]],
    names: Mapping[str, str],
) -> tuple[dict[str, Any], Any]:
    authorization = endpoint.get("authorization") or {}
    params = authorization.get("parameters") or {}
    data = endpoint.get("data") or {}
    # every project but the owning one, wherever the service lists it
    shared = sorted(
        {p for p in _ref_names(endpoint, names).values() if p.lower() != owning.lower()},
        key=str.lower,
    )
    client_id = params.get("serviceprincipalid")
    endpoint_id = str(endpoint.get("id") or "").lower()
    perms = permissions.get(endpoint_id)
    managed: str | list[str] | None = None
    obj: Any = endpoint
    if perms is not None:
        managed = _permitted(perms, pipelines.get(f"{org}/{owning}".lower(), {}))
        obj = {"endpoint": endpoint, "pipelinePermissions": perms}
    subscription = data.get("subscriptionId")
    attrs = {
        "organization": org,
        "project": owning,
        "name": endpoint.get("name"),
        "description": description,
        "identity": by_client.get(str(client_id or "").lower()),
        "subscriptionId": subscription.lower() if isinstance(subscription, str) else subscription,
        "subscriptionName": data.get("subscriptionName"),
        "scope": params.get("scope") or None,
        "sharedWith": shared,
        "pipelinePermissions": managed,
        "id": endpoint.get("id"),
        "servicePrincipalId": client_id,
        "tenantId": params.get("tenantid"),
        "issuer": params.get("workloadIdentityFederationIssuer"),
        "subject": params.get("workloadIdentityFederationSubject"),
        "issuerType": params.get("workloadIdentityFederationIssuerType"),
        # a client secret (ServicePrincipal) is converted in place (service connection rules)
        "scheme": authorization.get("scheme"),
        "isReady": endpoint.get("isReady"),
        # the cloud decides the default issuer (service connection rules)
        "environment": data.get("environment"),
    }
    return attrs, obj


def _permitted(perms: Mapping[str, Any], pipelines: Mapping[str, int]) -> str | list[str]:
    """``"all"`` when every pipeline may use the connection, else the authorised names."""
    everyone = perms.get("allPipelines") or {}
    if isinstance(everyone, dict) and everyone.get("authorized"):
        return "all"
    names_by_id = {pid: name for name, pid in pipelines.items()}
    names: Iterable[str] = (
        names_by_id.get(int(p["id"]), f"#{p['id']}")
        for p in perms.get("pipelines") or []
        if p.get("authorized") and p.get("id") is not None
    )
    return sorted(set(names), key=str.lower)
