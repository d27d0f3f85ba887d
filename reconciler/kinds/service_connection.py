"""Azure DevOps service connection (azurerm, workload identity federation, manual mode).

Always updated in place: a recreated connection gets a new id and loses its pipeline
permissions, approvals and checks, so deleting one is destructive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler import normalize
from reconciler.kinds.base import DESTROYS_IDS, LOSING, IdentityChild
from reconciler.model import Address, Kind, connection_key


class ServiceConnectionKind(IdentityChild):
    kind: Kind = Kind.SERVICE_CONNECTION
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
    shown_fields: tuple[str, ...] = (
        "description",
        "subscriptionId",
        "subscriptionName",
        "scope",
        "sharedWith",
        "pipelinePermissions",
        "servicePrincipalId",
        "tenantId",
        "id",
    )
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


KIND = ServiceConnectionKind()


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
