"""The provider ports: what the kinds' executors need of ARM and Azure DevOps, as small
Protocols. ``reconciler.providers`` implements them (``ArmClient``, ``DevOpsClient``,
``Services``); the executors see only these, never an SDK or ``requests``.

Every method raises the ``reconciler.errors`` provider errors (``NotFoundError``,
``ConflictError``, ``TransientError``, ``PermanentError``), never an SDK's own.
Bodies and answers are the services' JSON as plain dicts (``docs``: the REST contracts in
``shared/reference/azure-contracts.md``).
"""

from __future__ import annotations

from typing import Any, Protocol


class IdentityPort(Protocol):
    """User-assigned managed identities (Microsoft.ManagedIdentity, ARM)."""

    def get_identity(self, subscription: str, resource_group: str, name: str) -> dict[str, Any]: ...

    def put_identity(
        self, subscription: str, resource_group: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]: ...

    def delete_identity(self, subscription: str, resource_group: str, name: str) -> None: ...


class CredentialPort(Protocol):
    """Federated identity credentials under an identity (Microsoft.ManagedIdentity, ARM)."""

    def put_credential(
        self,
        subscription: str,
        resource_group: str,
        identity: str,
        name: str,
        body: dict[str, Any],
    ) -> dict[str, Any]: ...

    def delete_credential(
        self, subscription: str, resource_group: str, identity: str, name: str
    ) -> None: ...


class RoleAssignmentPort(Protocol):
    """Role assignments (Microsoft.Authorization, ARM)."""

    def get_role_assignment(self, scope: str, name: str) -> dict[str, Any]: ...

    def put_role_assignment(
        self, scope: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]: ...

    def delete_role_assignment(self, scope: str, name: str) -> None: ...

    def list_role_assignments_for_scope(
        self, scope: str, principal_id: str | None = None
    ) -> list[dict[str, Any]]: ...


class ArmPort(IdentityPort, CredentialPort, RoleAssignmentPort, Protocol):
    """Everything the executors ask of ARM."""


class DevOpsPort(Protocol):
    """Azure DevOps service endpoints, their project references and pipeline permissions,
    and the projects and pipelines they name."""

    def list_projects(self, org: str) -> list[dict[str, Any]]: ...

    def list_pipelines(self, org: str, project: str) -> list[dict[str, Any]]: ...

    def list_endpoints(
        self, org: str, project: str, *, names: list[str] | None = None
    ) -> list[dict[str, Any]]: ...

    def get_endpoint(self, org: str, project: str, endpoint_id: str) -> dict[str, Any]: ...

    def create_endpoint(self, org: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def update_endpoint(
        self, org: str, endpoint_id: str, body: dict[str, Any]
    ) -> dict[str, Any]: ...

    def convert_authentication_scheme(
        self,
        org: str,
        project: str,
        endpoint: dict[str, Any],
        *,
        issuer_type: str | None = None,
    ) -> dict[str, Any]:
        """Convert in place (``?operation=ConvertAuthenticationScheme``): a secret-based
        connection to workload identity federation (``issuer_type`` None), or one on the Azure
        DevOps issuer to the Microsoft Entra issuer (``issuer_type="EntraID"``). The answer's
        ``operationStatus.statusMessage`` ``converting_scheme`` means "not yet" (202: the
        service cannot sign in with the new issuer and subject yet)."""
        ...

    def share_endpoint(
        self, org: str, endpoint_id: str, references: list[dict[str, Any]]
    ) -> None: ...

    def delete_endpoint(self, org: str, endpoint_id: str, project_ids: list[str]) -> None: ...

    def get_pipeline_permissions(
        self, org: str, project: str, endpoint_id: str
    ) -> dict[str, Any]: ...

    def update_pipeline_permissions(
        self, org: str, project: str, endpoint_id: str, body: dict[str, Any]
    ) -> dict[str, Any]: ...


class CloudPort(Protocol):
    """The cloud a run targets, as a service connection records it (``--cloud``)."""

    @property
    def is_cloud(self) -> bool: ...

    @property
    def environment(self) -> str: ...

    @property
    def arm_url(self) -> str: ...


class ServicesPort(Protocol):
    """What one apply run talks to (``reconciler.providers.Services``). A ``target``
    attribute (a ``CloudPort``) is optional: without one, connections get the public cloud's
    values."""

    @property
    def arm(self) -> ArmPort: ...

    @property
    def devops(self) -> DevOpsPort: ...

    @property
    def tenant_id(self) -> str: ...
