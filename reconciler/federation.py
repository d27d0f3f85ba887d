"""The issuer and subject a workload identity federation service connection presents.

Pure functions, no I/O. Azure DevOps generates these values and reports them on the
connection (``authorization.parameters.workloadIdentityFederationIssuer`` and
``...Subject``); Microsoft's guidance is to read them, not to build them. They are computed
here only where a credential must exist *before* the service reports them: moving an existing
connection to the Microsoft Entra issuer, or converting a secret-based one, without a moment
in which the pipeline cannot sign in. After the switch the caller reads back what the service
reports and compares (``docs/research/convert-authentication-scheme.md``).

Formats [azure-contracts.md §3.4; doc: Azure DevOps sprint 253 release notes and
MicrosoftDocs/azure-devops-docs ``docs/pipelines/release/convert-service-connections.md``]:

- Azure DevOps issuer (legacy): ``https://vstoken.dev.azure.com/{organization id}``, subject
  ``sc://{organization}/{project}/{connection name}`` (names: a rename changes it);
- Microsoft Entra issuer: ``https://login.microsoftonline.com/{tenant id}/v2.0``, subject
  ``/eid1/c/pub/t/{b64url(tenant id)}/a/{b64url(Azure DevOps app id)}/sc/{organization id}/
  {connection id}`` (ids only), where ``b64url`` is the URL-safe base64 of the GUID's bytes in
  Microsoft (little-endian) order without ``=`` padding. ``pub`` is the public cloud's code
  (``cloudEnvironmentCode`` in the azurerm endpoint type); sovereign clouds keep the Azure
  DevOps issuer.
"""

from __future__ import annotations

import base64
import uuid
from typing import Final

from reconciler.model import DEVOPS_RESOURCE_ID

DEVOPS_ISSUER_PREFIX: Final = "https://vstoken.dev.azure.com/"
ENTRA_ISSUER_PREFIX: Final = "https://login.microsoftonline.com/"
# ``workloadIdentityFederationIssuerType`` values: new connections report EntraID
ENTRA_ISSUER_TYPE: Final = "EntraID"


def _guid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ValueError(f"{field} must be a GUID, got {value!r}") from None


def guid_segment(value: str, field: str = "id") -> str:
    """The subject's encoding of a GUID: URL-safe base64 of its little-endian bytes, unpadded
    (22 characters). ``ValueError`` naming ``field`` when ``value`` is not a GUID."""
    raw = _guid(value, field).bytes_le
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def entra_issuer(tenant_id: str) -> str:
    """``https://login.microsoftonline.com/{tenant}/v2.0`` (the tenant in lower case)."""
    return f"{ENTRA_ISSUER_PREFIX}{_guid(tenant_id, 'tenant id')}/v2.0"


def entra_subject(
    tenant_id: str,
    organization_id: str,
    connection_id: str,
    *,
    application_id: str = DEVOPS_RESOURCE_ID,
) -> str:
    """The Entra-issuer subject of an existing connection, from ids only:
    ``/eid1/c/pub/t/{tenant}/a/{application}/sc/{organization id}/{connection id}``.

    ``application_id`` is the Azure DevOps application (``499b84ac-...``, the ``azp`` of the
    tokens it issues). GUIDs are written in lower case, as Azure DevOps writes them.
    ``ValueError`` naming the field when one is not a GUID."""
    tenant = guid_segment(tenant_id, "tenant id")
    app = guid_segment(application_id, "Azure DevOps application id")
    org = _guid(organization_id, "organization id")
    connection = _guid(connection_id, "service connection id")
    return f"/eid1/c/pub/t/{tenant}/a/{app}/sc/{org}/{connection}"


def entra_federation(
    tenant_id: str,
    organization_id: str,
    connection_id: str,
    *,
    application_id: str = DEVOPS_RESOURCE_ID,
) -> tuple[str, str]:
    """(issuer, subject) of an existing connection once it uses the Microsoft Entra issuer."""
    return entra_issuer(tenant_id), entra_subject(
        tenant_id, organization_id, connection_id, application_id=application_id
    )


def devops_issuer(organization_id: str) -> str:
    """The Azure DevOps (legacy) issuer: ``https://vstoken.dev.azure.com/{organization id}``."""
    return f"{DEVOPS_ISSUER_PREFIX}{_guid(organization_id, 'organization id')}"


def devops_subject(organization: str, project: str, connection_name: str) -> str:
    """The Azure DevOps (legacy) subject: ``sc://{organization}/{project}/{connection}``,
    from the names of the project the connection was created in and of the connection."""
    return f"sc://{organization}/{project}/{connection_name}"


def legacy_subject_project(
    issuer: str | None, subject: str | None, organization: str, connection_name: str
) -> str | None:
    """The project an Azure DevOps (legacy) issuer subject names, when the pair is that
    issuer's and the subject is ``sc://{organization}/{project}/{connection name}`` for this
    organisation and connection (names compared case-insensitively); else None.

    Azure DevOps builds this subject from the project the connection was created in, its
    owning project (``devops_subject``); it is the only place the service reports which of a
    shared connection's projects that is (the order of ``serviceEndpointProjectReferences``
    is not promised). The project is returned as the subject spells it."""
    if not is_devops_issuer(issuer) or not str(subject or "").startswith("sc://"):
        return None
    parts = str(subject)[len("sc://") :].split("/")
    if len(parts) != 3 or not parts[1]:
        return None
    if parts[0].lower() != organization.lower() or parts[2].lower() != connection_name.lower():
        return None
    return parts[1]


def is_devops_issuer(issuer: str | None) -> bool:
    """Whether an issuer a connection reports is the Azure DevOps (legacy) one."""
    return str(issuer or "").lower().startswith(DEVOPS_ISSUER_PREFIX)


def generated_pair_problem(
    issuer: str | None,
    subject: str | None,
    *,
    tenant_id: str | None,
    organization_id: str | None,
    connection_id: str | None,
    organization: str | None = None,
    project: str | None = None,
    connection_name: str | None = None,
) -> str | None:
    """Why ``(issuer, subject)``, as a service connection reports it, is not a pair Azure
    DevOps generates for that connection, or None when it is. The tool writes a federated
    credential for what a connection reports; this keeps it from making a managed identity
    trust any other issuer (an edited or forged connection, or a service fault).

    Accepted (module docstring): the Azure DevOps issuer of the connection's organisation with
    the subject ``sc://{organization}/{project}/{connection name}`` Azure DevOps generates for
    it (names compared case-insensitively; ``project`` is the project the connection belongs
    to, the one it was created in), or the Microsoft Entra issuer of the connection's tenant
    with an ``/eid1/`` subject whose ``/t/{tenant}/`` segment is the tenant's
    (``guid_segment``) and which ends in ``/sc/{organization id}/{connection id}``. The rest
    of an Entra subject (the application and cloud segments) is not checked: the service may
    report a subject that differs from ``entra_subject`` there, and the tool follows what it
    reports. A value passed as None is not checked (the organisation's id unread, a
    connection not created yet); the issuer's and the subject's forms always are."""
    issuer_text, subject_text = str(issuer or ""), str(subject or "")
    if is_devops_issuer(issuer_text):
        rest = issuer_text[len(DEVOPS_ISSUER_PREFIX) :].rstrip("/")
        try:
            held = uuid.UUID(rest)
        except ValueError:
            return f"issuer {issuer_text} is not the Azure DevOps issuer of an organisation"
        if organization_id and held != _loose_guid(organization_id):
            return (
                f"issuer {issuer_text} is the Azure DevOps issuer of another organisation "
                f"(this one's id is {organization_id})"
            )
        if not subject_text.startswith("sc://"):
            return f"subject {subject_text!r} is not an Azure DevOps issuer subject (sc://...)"
        if organization and project and connection_name:
            generated = devops_subject(organization, project, connection_name)
            if subject_text.lower() != generated.lower():
                return (
                    f"subject {subject_text} does not name this connection (Azure DevOps "
                    f"generates {generated} for it)"
                )
        return None
    if not issuer_text.lower().startswith(ENTRA_ISSUER_PREFIX):
        return (
            f"issuer {issuer_text or '(none)'} is neither the Azure DevOps issuer nor the "
            "Microsoft Entra issuer"
        )
    rest = issuer_text[len(ENTRA_ISSUER_PREFIX) :]
    tenant_part, _, version = rest.partition("/")
    try:
        held = uuid.UUID(tenant_part)
    except ValueError:
        return f"issuer {issuer_text} is not the Microsoft Entra issuer of a tenant"
    if version.rstrip("/") != "v2.0":
        return f"issuer {issuer_text} is not the Microsoft Entra v2.0 issuer"
    if tenant_id and held != _loose_guid(tenant_id):
        return f"issuer {issuer_text} is the Microsoft Entra issuer of another tenant"
    if not subject_text.startswith("/eid1/"):
        return f"subject {subject_text!r} is not a Microsoft Entra issuer subject (/eid1/...)"
    if tenant_id and _loose_guid(tenant_id) is not None:
        wanted = guid_segment(tenant_id)
        # the first ``t`` segment (base64, so compared exactly as the service writes it)
        parts = subject_text.split("/")
        segment = parts[parts.index("t") + 1] if "t" in parts[:-1] else None
        if segment != wanted:
            return f"subject {subject_text} does not name this connection's tenant (t/{wanted})"
    if organization_id and connection_id:
        tail = f"/sc/{organization_id}/{connection_id}".lower()
        if not subject_text.lower().endswith(tail):
            return f"subject {subject_text} does not name this connection ({tail.lstrip('/')})"
    return None


def refusal(connection: str, pair: tuple[object, object], problem: str, identity: str) -> str:
    """The message for a pair ``generated_pair_problem`` refuses (plan and apply say it alike)."""
    return (
        f"service connection {connection} reports issuer {pair[0]} and subject {pair[1]}: "
        f"{problem}. Azure DevOps generates these values, so the connection was edited or the "
        f"service answered wrongly; identity {identity} is not made to trust them. Check the "
        "connection in Azure DevOps"
    )


def _loose_guid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
