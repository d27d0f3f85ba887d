"""Azure DevOps service connection (azurerm, workload identity federation, manual mode).

Always updated in place: a recreated connection gets a new id and loses its pipeline
permissions, approvals and checks, so deleting one is destructive.

Two in-place operations keep the id too (issue 11 §2, §3), planned as updates that name them
(``Change.operation``, worded by ``operations``): migrating a connection from the Azure DevOps (legacy) issuer to the
Microsoft Entra issuer, and converting a secret-based (``ServicePrincipal``) connection to
workload identity federation, signing in as the spec's identity. The connection's change owns
the federated credential it moves to (its executor writes it before the switch, so that the
pipeline can sign in at every moment); the implied credential is not planned separately for it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from reconciler import federation, normalize
from reconciler.changes import Action, Change, FieldChange, Notice, NoticeLevel
from reconciler.kinds.base import (
    DESTROYS_IDS,
    LOSING,
    TRANSITIONS,
    BuildContext,
    DeclaredIdentity,
    Edge,
    Exported,
    ExportView,
    IdentityChild,
    PlanView,
    credentials_of_connection,
    identity_live,
    short_identity,
)
from reconciler.model import (
    DEFAULT_AUDIENCE,
    MAX_CREDENTIALS_PER_IDENTITY,
    UNKNOWN,
    Address,
    Kind,
    LiveResource,
    LiveState,
    Resource,
    Source,
    connection_key,
    credential_key,
    implied_credential_name,
)
from reconciler.references import Place, Report, did_you_mean, resource_group_of

WIF: Final = "WorkloadIdentityFederation"
SECRET_SCHEME: Final = "ServicePrincipal"
# Change.operation values (``operations`` below)
MIGRATE: Final = "migrate-issuer"
CONVERT: Final = "convert-to-workload-identity"
# the Azure DevOps issuer's retirement for public-cloud connections to managed identities and
# single-tenant apps [estate-and-ci.md §1; Microsoft's sprint 253 release notes]
LEGACY_DEADLINE: Final = "1 July 2027"
MIGRATE_OPERATION: Final = "migrate issuer in place (keeps id and pipeline permissions)"
CONVERT_OPERATION: Final = (
    "convert to workload identity federation in place (keeps id and pipeline permissions; "
    "the client secret is removed)"
)
# the Azure DevOps environment of the public cloud, where the Entra issuer is the default
PUBLIC_CLOUD: Final = "azurecloud"


@dataclass(frozen=True)
class Transition:
    """An in-place migration or conversion the plan makes of a live connection.

    ``identity``: key of the identity it signs in as afterwards; ``before``: the (issuer,
    subject) it signs in with now (None for a secret); ``after``: the pair afterwards, or
    UNKNOWN values where only the service can tell (a conversion whose target issuer is the
    legacy one: Azure DevOps generates it)."""

    operation: str  # MIGRATE or CONVERT
    identity: str
    before: tuple[Any, Any] | None
    after: tuple[Any, Any]
    # the issuer the spec wants: ``entra`` or ``devops`` (``wanted_issuer``)
    wanted: str = "entra"


def wanted_issuer(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> str:
    """``entra`` or ``devops``: the spec's ``issuer``, else ``entra`` in the public cloud and
    ``devops`` for a connection in a sovereign cloud (they keep the Azure DevOps issuer)."""
    chosen = desired.get("issuerKind")
    if chosen in ("entra", "devops"):
        return str(chosen)
    environment = str((live or {}).get("environment") or "AzureCloud").lower()
    return "entra" if environment == PUBLIC_CLOUD else "devops"


def organization_id(live: Mapping[str, Any], organizations: Mapping[str, str]) -> str | None:
    """The Azure DevOps organisation id of a live connection: read from the organisation, else
    from its legacy issuer (``https://vstoken.dev.azure.com/{organization id}``)."""
    found = organizations.get(str(live.get("organization") or "").lower())
    if found:
        return found
    issuer = str(live.get("issuer") or "")
    if federation.is_devops_issuer(issuer):
        return issuer[len(federation.DEVOPS_ISSUER_PREFIX) :].strip("/") or None
    return None


def transition_of(
    desired: Mapping[str, Any], live: LiveResource, organizations: Mapping[str, str]
) -> Transition | None:
    """The in-place operation that takes ``live`` to ``desired``, if any. Pure.

    - scheme ``ServicePrincipal`` (a client secret): CONVERT;
    - workload identity on the Azure DevOps issuer, spec wanting Entra: MIGRATE.
    The Entra pair is computed from ids (``reconciler.federation``); unknown when the
    organisation id, the tenant or the connection id is not known."""
    attrs = live.attrs
    identity = str(desired.get("identity") or "")
    scheme = str(attrs.get("scheme") or WIF)
    wanted = wanted_issuer(desired, attrs)
    entra: tuple[Any, Any] = (UNKNOWN, UNKNOWN)
    org_id = organization_id(attrs, organizations)
    tenant = attrs.get("tenantId")
    if org_id and tenant and attrs.get("id"):
        with contextlib.suppress(ValueError):
            entra = federation.entra_federation(str(tenant), org_id, str(attrs["id"]))
    if scheme.lower() == SECRET_SCHEME.lower():
        return Transition(
            CONVERT, identity, None, entra if wanted == "entra" else (UNKNOWN, UNKNOWN), wanted
        )
    if scheme.lower() != WIF.lower() or wanted != "entra":
        return None
    if not federation.is_devops_issuer(attrs.get("issuer")):
        return None
    return Transition(MIGRATE, identity, (attrs.get("issuer"), attrs.get("subject")), entra)


def transitions(view: PlanView) -> dict[str, Transition]:
    """Connection key -> Transition for every desired connection that needs one (memoised)."""
    found: dict[str, Transition] | None = view.memo.get(TRANSITIONS)
    if found is None:
        found = {}
        for resource in view.desired_of[Kind.SERVICE_CONNECTION]:
            live = view.live.resources.get(resource.address)
            if live is None:
                continue
            move = transition_of(resource.attrs, live, view.live.organizations)
            if move is not None:
                found[resource.address.key] = move
        view.memo[TRANSITIONS] = found
    return found


def transition_credential_name(
    organization: str, project: str, name: str, taken: Mapping[str, tuple[Any, Any]], pair: Any
) -> str:
    """The name of the credential a migration or conversion writes for ``pair``: the name the
    tool gives a connection's credential, unless a credential of another pair holds it (the
    legacy one of a connection the tool made), then that name with ``-entra``. ``taken``: the
    identity's credentials, name -> (issuer, subject). A credential that already has
    ``pair`` keeps its name."""
    for existing, held in taken.items():
        if tuple(held) == tuple(pair):
            return existing
    implied = implied_credential_name(organization, project, name)
    if all(k.lower() != implied.lower() for k in taken):
        return implied
    return f"{implied[:113].rstrip('-_')}-entra"


class ServiceConnectionKind(IdentityChild):
    kind: Kind = Kind.SERVICE_CONNECTION
    plan_order: int = 1
    selectable: bool = True
    spec_section: str = "serviceConnections"
    spec_late: bool = True
    # servicePrincipalId and tenantId are derived from the identity, then compared like the rest
    declared_fields: tuple[str, ...] = (
        "description",
        "subscriptionId",
        "subscriptionName",
        "scope",
        "sharedWith",
        "pipelinePermissions",
        "servicePrincipalId",
        "tenantId",
        # set in ``after`` only by a migration or conversion (compared only then)
        "scheme",
        "issuer",
        "subject",
    )
    immutable_fields: tuple[str, ...] = ()
    # never replaced: no field is immutable and a replaced identity's connection is updated
    # to the new client id (the executor refuses a replace from a hand-edited plan)
    replace_action: str | None = None
    optional_fields: tuple[str, ...] = ("pipelinePermissions", "scheme", "issuer", "subject")
    has_marker: bool = True
    noun: str = "service connection"
    # what the spec declares, and the id a delete needs (issuer and subject show in ``fields``
    # when a migration or conversion moves them)
    shown_fields: tuple[str, ...] = (*declared_fields[:-3], "id")
    destructive_warning: str = DESTROYS_IDS

    def natural_key(self, attrs: Mapping[str, Any]) -> str:
        return connection_key(attrs["organization"], attrs["project"], attrs["name"])

    def canonical(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "description": normalize.marked_text(attrs.get("description")),
            "subscriptionId": normalize.guid(attrs.get("subscriptionId")),
            "subscriptionName": attrs.get("subscriptionName"),
            "scope": normalize.scope(attrs.get("scope")),
            "sharedWith": normalize.name_set(attrs.get("sharedWith")) or [],
            "pipelinePermissions": normalize.pipeline_permissions(attrs.get("pipelinePermissions")),
            "servicePrincipalId": normalize.guid(attrs.get("servicePrincipalId")),
            "tenantId": normalize.guid(attrs.get("tenantId")),
            "scheme": attrs.get("scheme"),
            "issuer": attrs.get("issuer"),
            "subject": attrs.get("subject"),
        }

    def is_destructive(self, action: str) -> bool:
        return action in LOSING

    def title(self, change: Mapping[str, Any]) -> str:
        attrs = change.get("after") or change.get("before") or {}
        return (
            f"service_connection {attrs.get('organization')}/{attrs.get('project')}/"
            f"{attrs.get('name')}"
        )

    def display(
        self, address: Address, attrs: Mapping[str, Any], label: Callable[[str], str | None]
    ) -> str | None:
        parts = address.key.split("/")
        if len(parts) != 3:
            return None
        org = attrs.get("organization") or parts[0]
        project = attrs.get("project") or parts[1]
        return f"{org}/{project}/{attrs.get('name') or parts[2]}"

    # -- planning ---------------------------------------------------------------------------

    def prepare(self, view: PlanView) -> None:
        """Notices for connections still on the Azure DevOps issuer (with the deadline), and
        for the app registrations conversions leave behind; the implied credential of a
        connection that migrates or converts is left to the connection's change (its executor
        writes it before the switch), so it is not planned on its own."""
        moves = transitions(view)
        desired_keys = {r.address.key for r in view.desired_of[Kind.SERVICE_CONNECTION]}
        view.notices.extend(_unshares_of_unknown_home(view))
        for current in view.live_of[Kind.SERVICE_CONNECTION]:
            attrs = current.attrs
            key = current.address.key
            if federation.is_devops_issuer(attrs.get("issuer")):
                move = moves.get(key)
                resource = view.desired.resources.get(current.address)
                if move is not None:
                    then = "this plan migrates it in place"
                elif resource is not None and resource.attrs.get("issuerKind") == "devops":
                    then = "its spec keeps it there (issuer: devops)"
                elif key in desired_keys:
                    then = "its spec keeps it there (not the public cloud)"
                else:
                    then = "migrate it before then"
                view.notices.append(
                    Notice(
                        NoticeLevel.WARNING,
                        f"service connection {key} still uses the Azure DevOps issuer "
                        f"({attrs.get('issuer')}), which Microsoft retires for public-cloud "
                        f"connections to managed identities and single-tenant apps on "
                        f"{LEGACY_DEADLINE}; {then}",
                        current.address,
                    )
                )
        for key, move in sorted(moves.items()):
            if move.operation != CONVERT:
                continue
            current = view.live.resources[Address(Kind.SERVICE_CONNECTION, key)]
            app = current.attrs.get("servicePrincipalId")
            shared = list(current.attrs.get("sharedWith") or [])
            view.notices.append(
                Notice(
                    # a shared one may fail at the conversion (``_shared_conversion``)
                    NoticeLevel.WARNING if shared else NoticeLevel.INFO,
                    f"service connection {key} signs in as app registration {app} with a client "
                    f"secret; once converted it signs in as identity "
                    f"{short_identity(move.identity)}. The app registration, its secret and its "
                    "role assignments are left alone: they are not the tool's to remove"
                    + (
                        f". {_shared_conversion(key, current.attrs, view, shared)}"
                        if shared
                        else ""
                    ),
                    current.address,
                )
            )
        if not moves:
            return
        resources: dict[Address, Resource] = dict(view.desired.resources)
        dropped = False
        for resource in view.desired_of[Kind.FEDERATED_CREDENTIAL]:
            served = resource.attrs.get("serviceConnection")
            if not served or str(served).lower() not in moves:
                continue
            del resources[resource.address]
            dropped = True
            # a credential an earlier, interrupted run of the change wrote under the names it
            # uses (``transition_credential_name``) is the executor's to finish with: kept as
            # it is, never deleted meanwhile (it may hold the pair the service waits for)
            name = str(resource.attrs["name"])
            for kept in (name, f"{name[:113].rstrip('-_')}-entra"):
                address = Address(
                    Kind.FEDERATED_CREDENTIAL, credential_key(str(resource.attrs["identity"]), kept)
                )
                found = view.live.resources.get(address)
                if found is None or address in resources:
                    continue
                resources[address] = replace(
                    resource,
                    address=address,
                    attrs={
                        **resource.attrs,
                        "name": found.attrs.get("name"),
                        "issuer": found.attrs.get("issuer"),
                        "subject": found.attrs.get("subject"),
                        "audiences": found.attrs.get("audiences"),
                        "serviceConnection": None,
                    },
                )
        if dropped:
            view.replace_desired(resources)

    # the in-place operations an update may be (issue 11 §2, §3), as the renderers say them
    operations: Mapping[str, str] = {
        MIGRATE: MIGRATE_OPERATION,
        CONVERT: CONVERT_OPERATION,
    }

    def operation_of(
        self, fields: tuple[FieldChange, ...], before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> str:
        """``convert-to-workload-identity`` when the scheme moves from a client secret,
        ``migrate-issuer`` when the issuer moves from Azure DevOps' to Entra's, else ''."""
        paths = {f.path for f in fields}
        if "scheme" in paths and after.get("scheme") == WIF:
            return CONVERT
        if (
            "issuer" in paths
            and federation.is_devops_issuer(before.get("issuer"))
            and not federation.is_devops_issuer(str(after.get("issuer") or ""))
        ):
            return MIGRATE
        return ""

    def operation_detail(
        self, operation: str, before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> str:
        """A conversion names the identity the connection signs in as afterwards."""
        if operation == CONVERT:
            return f"signing in as identity {short_identity(str(after.get('identity') or ''))}"
        return ""

    def enrich(self, address: Address, after: dict[str, Any], view: PlanView) -> None:
        """The identity's client id (unknown until a new or replaced identity exists) and
        tenant; for a migration or conversion, the scheme and the issuer and subject the
        connection signs in with afterwards."""
        move = transitions(view).get(address.key)
        if move is not None:
            if move.operation == CONVERT:
                after["scheme"] = WIF
            after["issuer"], after["subject"] = move.after
        identity = identity_live(view, after.get("identity"))
        known = (
            identity is not None
            and Address(Kind.IDENTITY, str(after.get("identity"))) not in view.replaced
        )
        after["servicePrincipalId"] = (
            identity.attrs.get("clientId") if known and identity else UNKNOWN
        )
        tenant = (identity.attrs.get("tenantId") if identity else None) or view.live.tenant_id
        after["tenantId"] = tenant or UNKNOWN

    def cascade(self, parent: Address) -> tuple[Action, str]:
        # updated in place, never recreated: a new connection would lose its id and permissions
        name = parent.key.rsplit("/", 1)[-1]
        return (
            Action.UPDATE,
            f"identity {name} is replaced; the connection follows its new client id",
        )

    def checks(self, view: PlanView) -> list[str]:
        """A migration adds the Entra credential before it deletes the legacy one, and a
        conversion adds one: the identity needs a free slot of Azure's 20 at that moment
        (deletes of credentials the specs drop run first when that makes room, see ``edges``)."""
        problems = []
        for identity, peak, moving in _slots(view):
            if peak > MAX_CREDENTIALS_PER_IDENTITY:
                resource = view.desired.resources.get(Address(Kind.IDENTITY, identity))
                where = f"{resource.source}: " if resource and resource.source else ""
                problems.append(
                    f"{where}identity {short_identity(identity)} has no free federated "
                    f"credential slot for {', '.join(moving)}: it would hold {peak} federated "
                    f"credentials at once (a migration adds the Entra issuer's credential before "
                    f"it deletes the legacy one; a conversion adds one for the organisation's "
                    f"default issuer and, where that is still Azure DevOps' while the spec wants "
                    f"Entra, one for the Entra issuer before it deletes the first: the default "
                    f"cannot be read, so two are counted) and Azure allows at most "
                    f"{MAX_CREDENTIALS_PER_IDENTITY}; drop a credential from the specs to free one"
                )
        problems.extend(_foreign_pairs(view))
        problems.extend(_home_moves(view))
        problems.extend(_other_schemes(view))
        return problems

    def edges(self, view: PlanView, edge: Edge) -> None:
        # a migration or conversion that needs the slot a dropped credential frees waits for
        # that delete
        before_connection: set[tuple[Address, Address]] = set()
        for identity, _peak, moving in _slots(view):
            deletes, crowded = _room(view, identity)
            if not crowded:
                continue
            for key in moving:
                connection = Address(Kind.SERVICE_CONNECTION, key)
                if connection in view.changes:
                    for freed in deletes:
                        edge(freed, connection)
                        before_connection.add((freed, connection))
        # a credential a live connection signs in with goes only once that connection's update
        # (to another identity, or another issuer and subject) is done: deleted earlier, the
        # pipeline could not sign in until the update lands
        for update in view.changes.values():
            if (
                update.address.kind is not Kind.SERVICE_CONNECTION
                or update.action is not Action.UPDATE
            ):
                continue
            pair = ((update.before or {}).get("issuer"), (update.before or {}).get("subject"))
            if pair[0] in (None, UNKNOWN) or pair[1] in (None, UNKNOWN):
                continue
            for gone in view.changes.values():
                if gone.address.kind is not Kind.FEDERATED_CREDENTIAL or gone.before is None:
                    continue
                if (
                    gone.action is Action.CREATE
                    or (gone.address, update.address) in before_connection
                ):
                    continue
                held = (gone.before.get("issuer"), gone.before.get("subject"))
                kept = (
                    gone.after is not None
                    and (
                        gone.after.get("issuer"),
                        gone.after.get("subject"),
                    )
                    == held
                )
                if held == pair and not kept:
                    edge(update.address, gone.address)
        # Microsoft's walkthrough: grant the roles, then create the connection
        ras_of: dict[str, list[Address]] = {}
        for resource in view.desired_of[Kind.ROLE_ASSIGNMENT]:
            ras_of.setdefault(str(resource.attrs["identity"]), []).append(resource.address)
        for resource in view.desired_of[Kind.SERVICE_CONNECTION]:
            for ra in ras_of.get(str(resource.attrs.get("identity")), ()):
                edge(ra, resource.address)
        # Azure DevOps refuses to delete a connection while its federated credential exists
        for gone in view.changes.values():
            if gone.address.kind is Kind.SERVICE_CONNECTION and gone.action is Action.DELETE:
                for credential in credentials_of_connection(view, gone):
                    edge(credential, gone.address)

    def order_replacement(
        self, gone: Change, new: list[Change], view: PlanView, edge: Edge
    ) -> None:
        for created in new:
            if not _same_organization(created.after, gone.before):
                # no pipeline of one organisation can use a connection of another, and the
                # identity's inventory drops the old organisation only after the delete while
                # the create waits for the identity: ordering these two would close a cycle
                continue
            edge(created.address, gone.address)

    output_section: str | None = "serviceConnections"

    def output(
        self, resource: Resource, found: LiveResource | None, tenant_id: str
    ) -> dict[str, Any]:
        """``id``, ``issuer``, ``subject``, ``identityClientId`` (the client id the connection
        signs in as), ``tenantId`` and the declared ``identity`` address."""
        attrs = found.attrs if found is not None else {}
        identity = resource.attrs.get("identity")
        return {
            "address": str(resource.address),
            "organization": resource.attrs.get("organization"),
            "project": resource.attrs.get("project"),
            "name": resource.attrs.get("name"),
            "identity": str(Address(Kind.IDENTITY, str(identity))) if identity else None,
            "present": found is not None,
            "id": attrs.get("id"),
            "issuer": attrs.get("issuer"),
            "subject": attrs.get("subject"),
            "identityClientId": attrs.get("servicePrincipalId"),
            "tenantId": attrs.get("tenantId"),
        }

    def build(
        self,
        ctx: BuildContext,
        file: str,
        root: Any,
        path: list[str | int],
        spec: Mapping[str, Any],
        identity: DeclaredIdentity | None,
        defaults: Mapping[str, Any],
        bad: set[tuple[str | int, ...]],
    ) -> None:
        """An entry of ``serviceConnections`` (after every identity, so that it may name one
        from any file), and the federated credential it implies on its identity."""
        organization = spec.get("organization", defaults.get("organization"))
        project = spec.get("project", defaults.get("project"))
        ok = True
        for name, value in (("organization", organization), ("project", project)):
            if value is None and name not in defaults:
                ctx.problem(
                    file,
                    root,
                    [*path, name],
                    f"required field missing (set it here or in defaults.{name})",
                )
                ok = False
        identity, error = ctx.find_identity(spec["identity"])
        if error:
            ctx.problem(file, root, [*path, "identity"], error)
        shared = list(spec.get("sharedWith") or [])
        seen: set[str] = set()
        for j, other in enumerate(shared):
            if project is not None and other.lower() == project.lower():
                ctx.problem(
                    file,
                    root,
                    [*path, "sharedWith", j],
                    f"'{other}' is the connection's own project: share only with other projects",
                )
                ok = False
            elif other.lower() in seen:
                ctx.problem(file, root, [*path, "sharedWith", j], f"duplicate entry '{other}'")
                ok = False
            seen.add(other.lower())
        permissions = spec.get("pipelinePermissions")
        if isinstance(permissions, list):
            names: set[str] = set()
            for j, pipeline in enumerate(permissions):
                if pipeline.lower() in names:
                    ctx.problem(
                        file,
                        root,
                        [*path, "pipelinePermissions", j],
                        f"duplicate entry '{pipeline}'",
                    )
                    ok = False
                names.add(pipeline.lower())
            permissions = sorted(permissions)
        if not ok or identity is None or organization is None or project is None:
            return
        subscription = spec.get("subscription", identity.subscription).lower()
        group = spec.get("resourceGroup")
        key = connection_key(organization, project, spec["name"])
        address = Address(Kind.SERVICE_CONNECTION, key)
        source = ctx.source(file, spec, path)
        resource = Resource(
            address,
            {
                "organization": organization,
                "project": project,
                "name": spec["name"],
                "description": spec.get("description"),
                "identity": identity.key,
                "subscriptionId": subscription,
                "subscriptionName": spec["subscriptionName"],
                "scope": f"/subscriptions/{subscription}/resourceGroups/{group}" if group else None,
                "sharedWith": sorted(shared),
                "pipelinePermissions": permissions,
                # only when written: the default depends on the connection's cloud
                **({"issuerKind": spec["issuer"]} if "issuer" in spec else {}),
            },
            source,
            (identity.address,),
            fields=_connection_fields(ctx, file, root, path, spec),
        )
        label = f"service connection {key} (names compare case-insensitively)"
        if not ctx.add(resource, label, file, root, path):
            return
        name = implied_credential_name(organization, project, spec["name"])
        implied = Resource(
            Address(Kind.FEDERATED_CREDENTIAL, credential_key(identity.key, name)),
            {
                "identity": identity.key,
                "name": name,
                "issuer": UNKNOWN,
                "subject": UNKNOWN,
                "audiences": [DEFAULT_AUDIENCE],
                "serviceConnection": key,
            },
            source,
            (address, identity.address),
        )
        first = ctx.resources.get(implied.address)
        if first is not None:
            ctx.problem(
                file,
                root,
                path,
                f"the federated credential this connection implies, '{name}', is already "
                f"declared at {first.source} on identity {identity.key}",
            )
            return
        ctx.resources[implied.address] = implied
        identity.implied.append(key)

    def describe(self, resource: Resource, roles: Mapping[str, str]) -> list[str]:
        s = resource.attrs
        permissions = s["pipelinePermissions"]
        if permissions is None:
            pipelines = "left as they are"
        elif permissions == "all":
            pipelines = "all"
        else:
            pipelines = ", ".join(permissions) or "none"
        shared = f"; shared with {', '.join(s['sharedWith'])}" if s["sharedWith"] else ""
        return [
            f"    service connection {s['organization']}/{s['project']}/{s['name']}  "
            f"[{resource.source}]",
            f"        subscription {s['subscriptionName']} ({s['subscriptionId']}), "
            f"scope {s['scope'] or 'the whole subscription'}",
            f"        pipelines: {pipelines}{shared}",
        ]

    def place(self, attrs: Mapping[str, Any]) -> Place | None:
        scope = attrs.get("scope")
        group = resource_group_of(str(scope)) if scope else None
        return str(attrs["subscriptionId"]), "subscription", group, "resourceGroup"

    def check_references(
        self, resources: Iterable[Resource], live: LiveState, report: Report
    ) -> None:
        """Its organisation, project, the projects it is shared with and the pipelines it
        permits."""
        for resource in resources:
            attrs = resource.attrs
            org = str(attrs["organization"])
            reason = live.organization_errors.get(org.lower())
            if reason is not None:
                report.add(
                    resource,
                    "organization",
                    f"Azure DevOps organization '{org}' does not exist or the signed-in caller "
                    f"cannot read it ({reason})" + did_you_mean(org, live.organizations),
                )
                continue
            if org.lower() not in live.organizations:
                continue  # not read
            names = live.project_names.get(org.lower(), ())
            known = {n.lower() for n in names}
            project = str(attrs["project"])
            missing = project.lower() not in known
            if missing:
                report.add(
                    resource,
                    "project",
                    f"project '{project}' does not exist in Azure DevOps organization '{org}'"
                    + did_you_mean(project, names),
                )
            for other in attrs.get("sharedWith") or ():
                if str(other).lower() not in known:
                    report.add(
                        resource,
                        f"sharedWith/{str(other).lower()}",
                        f"project '{other}' (to share the connection with) does not exist in Azure "
                        f"DevOps organization '{org}'" + did_you_mean(str(other), names),
                    )
            permissions = attrs.get("pipelinePermissions")
            if missing or not isinstance(permissions, list | tuple):
                continue
            pipelines = live.pipelines.get(f"{org}/{project}".lower())
            if pipelines is None:
                continue  # not read
            present = {name.lower() for name in pipelines}
            for pipeline in permissions:
                if str(pipeline).lower() not in present:
                    report.add(
                        resource,
                        f"pipelinePermissions/{str(pipeline).lower()}",
                        f"pipeline '{pipeline}' does not exist in project '{project}' of "
                        f"'{org}'" + did_you_mean(str(pipeline), pipelines),
                    )

    def includes(self, address: Address, other: Address, attrs: Mapping[str, Any]) -> bool:
        """Its implied federated credential."""
        return other.kind is Kind.FEDERATED_CREDENTIAL and (
            str(attrs.get("serviceConnection") or "").lower() == address.key
        )

    # after the identities (a connection names one that is exported), before credentials
    export_order: int = 1

    def export(self, current: LiveResource, view: ExportView) -> Exported | None:
        """The connection as a ``serviceConnections[]`` entry, or why a spec cannot declare
        it: a secret-based connection (what to declare to convert it in place is suggested),
        one signing in as an app registration or as an identity not exported, one scoped to a
        management group or to a scope a spec cannot name, one reporting an issuer and subject
        Azure DevOps does not generate for it (``federation.generated_pair_problem``)."""
        attrs = current.attrs
        org, project, name = attrs["organization"], attrs["project"], attrs["name"]
        label = f"service connection {org}/{project}/{name} (id {attrs.get('id')})"
        place = {"organization": str(org), "project": str(project)}
        identity = attrs.get("identity")
        exported = view.exported.get(Address(Kind.IDENTITY, str(identity))) if identity else None
        node: dict[str, Any] = {"name": name, "organization": org, "project": project}
        if attrs.get("description"):
            node["description"] = attrs["description"]
        node["identity"] = (
            view.identity_ref(str(identity))
            if exported is not None and not exported.unexpressed
            else "<a user-assigned managed identity declared in these specs>"
        )
        subscription = attrs.get("subscriptionId")
        identity_sub = str(identity).split("/", 1)[0] if identity else None
        if subscription and subscription != identity_sub:
            node["subscription"] = subscription
        node["subscriptionName"] = attrs.get("subscriptionName")
        problems: list[str] = []
        if str(name) != str(name).strip() or not 1 <= len(str(name)) <= _MAX_NAME:
            problems.append(
                f"its name ({len(str(name))} characters) starts or ends with whitespace or is "
                f"longer than {_MAX_NAME} characters, which a spec cannot declare"
            )
        scope = attrs.get("scope")
        if scope:
            found = _GROUP_IN.match(str(scope))
            if found and found.group(1).lower() == str(subscription or "").lower():
                node["resourceGroup"] = found.group(2)
            else:
                problems.append(
                    f"it is scoped to {scope}; a spec scopes a connection to a resource group "
                    "of its subscription only"
                )
        if attrs.get("sharedWith"):
            node["sharedWith"] = list(attrs["sharedWith"])
        note = ""
        permissions = attrs.get("pipelinePermissions")
        if isinstance(permissions, list) and any(str(p).startswith("#") for p in permissions):
            note = (
                "pipeline permissions left unmanaged: it authorises pipelines that cannot be "
                f"read by name ({', '.join(p for p in permissions if str(p).startswith('#'))})"
            )
        elif permissions is not None:
            node["pipelinePermissions"] = permissions
        if _LEGACY_ISSUER.match(str(attrs.get("issuer") or "")):
            # kept where it is, so that the round trip plans adoption only; removing the line
            # migrates it in place to the Entra issuer (the default)
            node["issuer"] = "devops"
            note = (
                f"on the Azure DevOps issuer ({attrs.get('issuer')}), retired for managed "
                f"identity connections in the public cloud on {LEGACY_DEADLINE}; remove "
                "'issuer: devops' to migrate it in place" + (f"; {note}" if note else "")
            )
        scheme = str(attrs.get("scheme") or "WorkloadIdentityFederation")
        client = attrs.get("servicePrincipalId")
        if scheme.lower() not in (WIF.lower(), SECRET_SCHEME.lower()):
            return Exported(
                label,
                {},  # nothing to suggest: a spec declaring it fails the plan
                section="serviceConnections",
                place=place,
                unexpressed=(
                    f"it signs in with scheme {scheme}, which specs cannot declare and the tool "
                    "does not convert (only secret-based ServicePrincipal connections are "
                    "converted in place)"
                ),
            )
        if scheme.lower() != "workloadidentityfederation":
            # never the secret: Azure DevOps does not return it, and nothing of it is written
            return Exported(
                label,
                node,
                section="serviceConnections",
                place=place,
                unexpressed=(
                    f"it signs in with a secret (scheme {scheme}, application {client}); "
                    "specs declare workload identity federation only. Declare it like this, "
                    "signing in as a user-assigned managed identity that holds the roles the "
                    "application holds, and apply converts it to workload identity federation "
                    "in place, keeping its id and pipeline permissions"
                ),
            )
        if attrs.get("issuer") or attrs.get("subject"):
            # a spec declaring it would make its identity trust what it reports: only the
            # pair Azure DevOps generates for it is adopted (``_foreign_pairs`` refuses others)
            pair_problem = federation.generated_pair_problem(
                _text(attrs.get("issuer")),
                _text(attrs.get("subject")),
                tenant_id=_text(attrs.get("tenantId")) or view.live.tenant_id or None,
                organization_id=view.live.organizations.get(str(org).lower()),
                connection_id=_text(attrs.get("id")),
                organization=str(org),
                project=str(project),
                connection_name=str(name),
            )
            if pair_problem:
                problems.append(
                    f"it reports issuer {attrs.get('issuer')} and subject "
                    f"{attrs.get('subject')}: {pair_problem}. Azure DevOps generates these "
                    "values, so the connection was edited or the service answered wrongly; a "
                    "spec declaring it would make its identity trust them. Check the "
                    "connection in Azure DevOps"
                )
        if not identity:
            problems.append(
                f"it signs in as {client}, which is no user-assigned managed identity of the "
                "exported subscriptions (an app registration, or an identity elsewhere): "
                "specs declare connections that sign in as a managed identity they declare"
            )
        elif exported is None:
            problems.append(
                f"it signs in as identity {identity}, outside the exported resource groups: "
                "export its resource group too"
            )
        elif exported.unexpressed:
            problems.append(f"it signs in as {exported.label}, which is not exported")
        if not subscription:
            problems.append(
                "it is scoped to a management group, not a subscription; specs declare "
                "subscription-scoped connections only"
            )
        elif not attrs.get("subscriptionName"):
            problems.append("Azure DevOps reports no subscription name for it")
        return Exported(
            label,
            node if not problems else {},
            section="serviceConnections",
            defaults=("organization", "project"),
            place=place,
            unexpressed="; ".join(problems),
            note=note,
        )


KIND = ServiceConnectionKind()

_GROUP_IN: Final = re.compile(r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)$", re.IGNORECASE)
_MAX_NAME: Final = 256  # the schema's bound on a connection's name
_LEGACY_ISSUER: Final = re.compile(r"^https://vstoken\.", re.IGNORECASE)


def _other_schemes(view: PlanView) -> list[str]:
    """A declared connection whose live one signs in with a scheme the tool neither manages
    nor converts (e.g. ``ManagedServiceIdentity``, an agent's own identity): an update would
    be refused by Azure DevOps at apply, so the plan fails naming it."""
    problems = []
    for resource in view.desired_of[Kind.SERVICE_CONNECTION]:
        current = view.live.resources.get(resource.address)
        scheme = str((current.attrs.get("scheme") if current else None) or WIF)
        if scheme.lower() in (WIF.lower(), SECRET_SCHEME.lower()):
            continue
        where = f"{resource.source}: " if resource.source else ""
        problems.append(
            f"{where}service connection {resource.address.key} exists with scheme {scheme}; "
            f"the tool manages {WIF} connections and converts only {SECRET_SCHEME} ones in "
            "place, so it cannot take this one over: remove it from the specs, or give the "
            "spec connection another name"
        )
    return problems


def _foreign_pairs(view: PlanView) -> list[str]:
    """A credential this plan writes for the issuer and subject a live connection reports,
    where that pair is not one Azure DevOps generates for the connection
    (``federation.generated_pair_problem``): the apply would refuse it, so the plan does."""
    problems = []
    for change in view.changes.values():
        after = change.after or {}
        served = after.get("serviceConnection")
        if change.address.kind is not Kind.FEDERATED_CREDENTIAL or not served:
            continue
        issuer, subject = after.get("issuer"), after.get("subject")
        if issuer in (None, UNKNOWN) or subject in (None, UNKNOWN):
            continue
        current = view.live.resources.get(Address(Kind.SERVICE_CONNECTION, str(served)))
        attrs = current.attrs if current is not None else {}
        problem = federation.generated_pair_problem(
            str(issuer),
            str(subject),
            tenant_id=str(attrs.get("tenantId") or view.live.tenant_id or "") or None,
            organization_id=view.live.organizations.get(str(served).split("/", 1)[0].lower()),
            connection_id=str(attrs["id"]) if attrs.get("id") else None,
            organization=_text(attrs.get("organization")),
            project=_text(attrs.get("project")),
            connection_name=_text(attrs.get("name")),
        )
        if problem:
            where = f"{change.source}: " if change.source else ""
            identity = short_identity(str(after.get("identity")))
            problems.append(
                where + federation.refusal(str(served), (issuer, subject), problem, identity)
            )
    return problems


def _home_moves(view: PlanView) -> list[str]:
    """A declared connection whose ``project`` is not the project Azure DevOps created it in.

    A connection keeps the project it was created in (its owning project) for life: no API
    moves it, and removing that project's reference removes the connection's home (Azure
    DevOps may delete the connection; its pipeline permissions there go). When a connection
    is shared, live state is matched to the spec in whichever of its projects the spec names
    (``owning_project``), so a spec naming another of its projects would plan to unshare the
    owning one; the plan refuses instead. The owning project is known from the Azure DevOps
    issuer's subject (``federation.legacy_subject_project``); Azure DevOps reports it nowhere
    else (a secret-based shared connection: ``_shared_conversion``)."""
    problems = []
    for resource in view.desired_of.get(Kind.SERVICE_CONNECTION, []):
        current = view.live.resources.get(resource.address)
        if current is None:
            continue
        live, spec = current.attrs, resource.attrs
        declared = str(spec.get("project") or "")
        where = resource.fields.get("project") or resource.source
        at = f"{where}: " if where else ""
        listed = [live.get("project"), *(live.get("sharedWith") or [])]
        projects = {str(p).lower(): str(p) for p in listed if p}
        label = f"service connection {resource.address.key}"
        home = federation.legacy_subject_project(
            _text(live.get("issuer")),
            _text(live.get("subject")),
            str(live.get("organization") or ""),
            str(live.get("name") or ""),
        )
        if home is not None and home.lower() in projects:
            home = projects[home.lower()]
            if home.lower() == declared.lower():
                continue
            named = [declared, *(str(p) for p in spec.get("sharedWith") or [])]
            others = sorted(
                {projects.get(p.lower(), p) for p in named if p.lower() != home.lower()},
                key=str.lower,
            )
            shared = sorted(set(projects.values()) - {home}, key=str.lower)
            problems.append(
                f"{at}{label}: project '{declared}' is not the project the connection belongs "
                f"to. Azure DevOps created it in project '{home}' (its subject "
                f"{live.get('subject')}) and shares it with {', '.join(shared)}; "
                f"a connection's owning project cannot be changed, and removing its reference "
                f"would remove the connection from its home (Azure DevOps may delete it). "
                f"Declare project: {home} with sharedWith: [{', '.join(others)}]"
            )
    return problems


def _unshares_of_unknown_home(view: PlanView) -> list[Notice]:
    """A warning for each declared connection this plan unshares from a project while Azure
    DevOps does not tell which of its projects owns it (an Entra-issuer or secret-based
    connection: only the legacy subject names the owning project, ``_home_moves``). If the
    project unshared is the owning one, the connection loses its home: the reader must check."""
    found = []
    for resource in view.desired_of.get(Kind.SERVICE_CONNECTION, []):
        current = view.live.resources.get(resource.address)
        if current is None:
            continue
        live = current.attrs
        home = federation.legacy_subject_project(
            _text(live.get("issuer")),
            _text(live.get("subject")),
            str(live.get("organization") or ""),
            str(live.get("name") or ""),
        )
        if home is not None:
            continue  # known: ``_home_moves`` refuses unsharing it
        wanted = {str(p).lower() for p in resource.attrs.get("sharedWith") or []}
        dropped = sorted(
            (str(p) for p in live.get("sharedWith") or [] if str(p).lower() not in wanted),
            key=str.lower,
        )
        if not dropped:
            continue
        found.append(
            Notice(
                NoticeLevel.WARNING,
                f"service connection {resource.address.key} is unshared from "
                f"{', '.join(dropped)}; Azure DevOps does not report which of its projects owns "
                f"it (its issuer is not the Azure DevOps one), so check that the spec's project "
                f"'{resource.attrs.get('project')}' is the one it was created in: unsharing the "
                "owning project removes the connection from its home",
                resource.address,
            )
        )
    return found


def _shared_conversion(key: str, live: Mapping[str, Any], view: PlanView, shared: list[Any]) -> str:
    """The warning for converting a secret-based connection shared with other projects:
    Azure DevOps converts one only through the project it was created in and reports that
    project nowhere (``reconciler/sim/README.md`` C5), so the spec's ``project`` may not be it.
    The executor converts before it shares or unshares, so a refused conversion changes
    nothing of the connection."""
    desired = view.desired.resources.get(Address(Kind.SERVICE_CONNECTION, key))
    wanted = {str(p).lower() for p in (desired.attrs.get("sharedWith") if desired else []) or []}
    dropped = [str(p) for p in shared if str(p).lower() not in wanted]
    then = (
        f"; only once it is converted is it unshared from {', '.join(dropped)}" if dropped else ""
    )
    return (
        f"It is shared with {', '.join(map(str, shared))}: Azure DevOps converts a shared "
        "connection only through the project it was created in and does not report which "
        f"that is. If it is not {live.get('project')}, apply fails at the "
        f"conversion with nothing of the connection changed{then}: then declare the project it "
        "was created in as project and the others in sharedWith"
    )


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "", UNKNOWN) else None


def _credentials_on(view: PlanView, identity: str) -> list[LiveResource]:
    return [
        c
        for c in view.live_of[Kind.FEDERATED_CREDENTIAL]
        if str(c.attrs.get("identity") or "") == identity
    ]


def _needs(view: PlanView, key: str, move: Transition, live_pairs: set[tuple[Any, Any]]) -> int:
    """How many credentials the executor adds to ``move.identity`` for connection ``key``
    before it deletes any (``executors/service_connection.py``, ``_update_connection``):

    - a migration: the Entra issuer's (unless the identity holds it), and, when the connection
      names another principal now, first one for the legacy pair it presents (unless held);
    - a conversion: one for the pair the service gives it, the organisation's default issuer's;
      when that is the Azure DevOps issuer and the spec wants Entra, the migration then adds
      the Entra issuer's too before it deletes the legacy one. No Azure DevOps API tells an
      organisation's default issuer, so a conversion to Entra counts two (one when the identity
      already holds the Entra pair)."""
    entra_held = move.after in live_pairs
    if move.operation == CONVERT:
        return 1 if move.wanted != "entra" or entra_held else 2
    needed = 0 if entra_held else 1
    current = view.live.resources.get(Address(Kind.SERVICE_CONNECTION, key))
    identity = identity_live(view, move.identity)
    client = str((identity.attrs.get("clientId") if identity else None) or "").lower()
    named = str((current.attrs.get("servicePrincipalId") if current else None) or "").lower()
    if (not client or named != client) and move.before not in live_pairs:
        needed += 1
    return needed


def _extra(view: PlanView, identity: str) -> list[tuple[str, int]]:
    """(connection key, credentials it adds on ``identity`` at once) for each migration or
    conversion that adds any (``_needs``)."""
    live_pairs = {
        (c.attrs.get("issuer"), c.attrs.get("subject")) for c in _credentials_on(view, identity)
    }
    found = []
    for key, move in sorted(transitions(view).items()):
        if move.identity == identity:
            needed = _needs(view, key, move, live_pairs)
            if needed:
                found.append((key, needed))
    return found


def _room(view: PlanView, identity: str) -> tuple[list[Address], bool]:
    """The planned credential deletes on ``identity``, and whether its live credentials, the
    planned creates and the extra slots exceed the limit unless those deletes run first."""
    live = _credentials_on(view, identity)
    deletes = [
        c.address
        for c in live
        if (change := view.changes.get(c.address)) is not None and change.action is Action.DELETE
    ]
    creates = sum(
        1
        for c in view.changes.values()
        if c.address.kind is Kind.FEDERATED_CREDENTIAL
        and c.action is Action.CREATE
        and str((c.after or {}).get("identity") or "") == identity
    )
    extra = sum(n for _, n in _extra(view, identity))
    crowded = len(live) + creates + extra > MAX_CREDENTIALS_PER_IDENTITY
    return deletes, crowded


def _slots(view: PlanView) -> list[tuple[str, int, list[str]]]:
    """(identity key, credentials it holds at the busiest moment, connection keys needing a
    slot) for each identity a migration or conversion adds a credential to."""
    out = []
    for identity in sorted({m.identity for m in transitions(view).values()}):
        moving = _extra(view, identity)
        if not moving:
            continue
        deletes, _ = _room(view, identity)
        creates = sum(
            1
            for c in view.changes.values()
            if c.address.kind is Kind.FEDERATED_CREDENTIAL
            and c.action is Action.CREATE
            and str((c.after or {}).get("identity") or "") == identity
        )
        extra = sum(n for _, n in moving)
        peak = len(_credentials_on(view, identity)) - len(deletes) + creates + extra
        out.append((identity, peak, [key for key, _ in moving]))
    return out


def _same_organization(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    return (
        str((a or {}).get("organization") or "").lower()
        == str((b or {}).get("organization") or "").lower()
    )


def _connection_fields(
    ctx: BuildContext, file: str, root: Any, path: list[str | int], spec: Mapping[str, Any]
) -> dict[str, Source]:
    fields = {name: ctx.given(file, root, path, spec, name) for name in ("organization", "project")}
    for name in ("subscription", "resourceGroup"):
        if name in spec:
            fields[name] = ctx.at(file, root, [*path, name])
    for name in ("sharedWith", "pipelinePermissions"):
        values = spec.get(name)
        if isinstance(values, list):
            for j, value in enumerate(values):
                fields[f"{name}/{str(value).lower()}"] = ctx.at(file, root, [*path, name, j])
    return fields


def endpoint_gone(endpoint: Any) -> bool:
    """True for what Azure DevOps answers about a deleted connection while the asynchronous
    delete settles: ``null``, or a partial object whose ``id`` or ``authorization`` is null.
    Such an answer means gone, never a live connection (Terraform's azuredevops provider,
    ``isServiceEndpointDeleted`` in ``serviceendpoint/commons.go``)."""
    return (
        not isinstance(endpoint, Mapping)
        or not endpoint.get("id")
        or not endpoint.get("authorization")
    )
