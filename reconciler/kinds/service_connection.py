"""Azure DevOps service connection (azurerm, workload identity federation, manual mode).

Always updated in place: a recreated connection gets a new id and loses its pipeline
permissions, approvals and checks, so deleting one is destructive.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler import normalize
from reconciler.kinds.base import (
    CREATE_THEN_DELETE,
    LOSING,
    IdentityChild,
)
from reconciler.model import Kind, connection_key


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
    replace_action: str = CREATE_THEN_DELETE
    optional_fields: tuple[str, ...] = ("pipelinePermissions",)
    has_marker: bool = True

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
