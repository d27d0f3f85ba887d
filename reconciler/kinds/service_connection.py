"""Azure DevOps service connection (azurerm, workload identity federation, manual mode).

Always updated in place: a recreated connection gets a new id and loses its pipeline
permissions, approvals and checks, so deleting one is destructive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from reconciler import normalize
from reconciler.changes import Action, Change
from reconciler.kinds.base import (
    DESTROYS_IDS,
    LOSING,
    Edge,
    Exported,
    ExportView,
    IdentityChild,
    PlanView,
    credentials_of_connection,
    identity_live,
)
from reconciler.model import (
    UNKNOWN,
    Address,
    Kind,
    LiveResource,
    LiveState,
    Resource,
    connection_key,
)
from reconciler.references import Place, Report, did_you_mean, resource_group_of


class ServiceConnectionKind(IdentityChild):
    kind: Kind = Kind.SERVICE_CONNECTION
    plan_order: int = 1
    selectable: bool = True
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
    )
    immutable_fields: tuple[str, ...] = ()
    # never replaced: no field is immutable and a replaced identity's connection is updated
    # to the new client id (the executor refuses a replace from a hand-edited plan)
    replace_action: str | None = None
    optional_fields: tuple[str, ...] = ("pipelinePermissions",)
    has_marker: bool = True
    noun: str = "service connection"
    shown_fields: tuple[str, ...] = (*declared_fields, "id")
    destructive_warning: str = DESTROYS_IDS

    def natural_key(self, attrs: Mapping[str, Any]) -> str:
        return connection_key(attrs["organization"], attrs["project"], attrs["name"])

    def canonical(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "description": normalize.text(attrs.get("description")),
            "subscriptionId": normalize.guid(attrs.get("subscriptionId")),
            "subscriptionName": attrs.get("subscriptionName"),
            "scope": normalize.scope(attrs.get("scope")),
            "sharedWith": normalize.name_set(attrs.get("sharedWith")) or [],
            "pipelinePermissions": normalize.pipeline_permissions(attrs.get("pipelinePermissions")),
            "servicePrincipalId": normalize.guid(attrs.get("servicePrincipalId")),
            "tenantId": normalize.guid(attrs.get("tenantId")),
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

    def enrich(self, address: Address, after: dict[str, Any], view: PlanView) -> None:
        """The identity's client id (unknown until a new or replaced identity exists) and
        tenant."""
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

    def edges(self, view: PlanView, edge: Edge) -> None:
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
        management group or to a scope a spec cannot name."""
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
            note = (
                f"on the Azure DevOps issuer ({attrs.get('issuer')}), retired for managed "
                "identity connections in the public cloud on 1 July 2027"
                + (f"; {note}" if note else "")
            )
        scheme = str(attrs.get("scheme") or "WorkloadIdentityFederation")
        client = attrs.get("servicePrincipalId")
        if scheme.lower() != "workloadidentityfederation":
            # never the secret: Azure DevOps does not return it, and nothing of it is written
            return Exported(
                label,
                node,
                section="serviceConnections",
                place=place,
                unexpressed=(
                    f"it signs in with a secret (scheme {scheme}, application {client}); "
                    "specs declare workload identity federation only. Once issue 11 section 3 "
                    "(convert to workload identity federation in place, keeping its id and "
                    "pipeline permissions) lands, declare it like this, signing in as a "
                    "user-assigned managed identity that holds the roles the application "
                    "holds, and apply converts it"
                ),
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


def _same_organization(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    return (
        str((a or {}).get("organization") or "").lower()
        == str((b or {}).get("organization") or "").lower()
    )


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
