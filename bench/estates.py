"""Big simulator worlds for benchmarks and load tests, marked as the tool marks what it makes.

Outside ``reconciler.sim`` on purpose: the simulator stands in for Azure and imports nothing of
the tool, while these estates carry the tool's owner markers and the name it gives a
connection's federated credential.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.model import implied_credential_name
from reconciler.ownership import mark_description, mark_tags
from reconciler.sim.seed import entra_issuer, entra_subject, load_seed
from reconciler.sim.world import stable_uuid


def large_seed(
    identities: int = 1000,
    *,
    credentials_per_identity: int = 2,
    assignments_per_identity: int = 1,
    connections: int | None = None,
    owner: str | None = "bench",
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The default world plus ``identities`` identities in Sandbox/identities-rg, each with
    credentials and Reader assignments, and (by default one per identity) a service connection
    in contoso/platform named like its identity, with the matching credential under the name
    the tool gives it. Everything carries ``owner``'s marker (None: unmarked). Deterministic."""
    seed = load_seed(base)
    sub = "11111111-1111-1111-1111-111111111111"
    tag = mark_tags({}, owner) if owner else {}
    described = mark_description("bench", owner) if owner else "bench"
    n_conn = identities if connections is None else connections
    idents = seed.setdefault("identities", [])
    ras = seed.setdefault("roleAssignments", [])
    org = seed["devops"]["organizations"][0]
    endpoints = org.setdefault("serviceEndpoints", [])
    tenant = str(seed["tenant"])
    scopes = [
        f"/subscriptions/{sub}/resourceGroups/{rg}"
        for rg in ("sandbox-rg", "team-a-rg", "team-b-rg")
    ]
    for n in range(identities):
        name = f"bench-mi-{n:05d}"
        fics = [
            {
                "name": f"gh-{k}",
                "issuer": "https://token.actions.githubusercontent.com",
                "subject": f"repo:contoso/app{n}:env:e{k}",
            }
            for k in range(credentials_per_identity)
        ]
        if n < n_conn:
            eid = stable_uuid("bench-endpoint", str(n))
            endpoints.append(
                {
                    "id": eid,
                    "name": name,
                    "type": "azurerm",
                    "scheme": "WorkloadIdentityFederation",
                    "description": described,
                    "projects": ["platform"],
                    "parameters": {
                        "serviceprincipalid": stable_uuid(
                            tenant, "client", f"{sub}/identities-rg/{name}"
                        ),
                        "tenantid": tenant,
                    },
                    "data": {
                        "subscriptionId": sub,
                        "subscriptionName": "Sandbox",
                        "environment": "AzureCloud",
                        "scopeLevel": "Subscription",
                        "creationMode": "Manual",
                    },
                }
            )
            fics.append(
                {
                    # the name the tool gives the credential a connection implies
                    "name": implied_credential_name("contoso", "platform", name),
                    "issuer": entra_issuer(tenant),
                    "subject": entra_subject(tenant, org["id"], eid),
                }
            )
        idents.append(
            {
                "subscription": sub,
                "resourceGroup": "identities-rg",
                "name": name,
                "location": "westeurope",
                # with the inventory the tool keeps when the identity has a connection
                "tags": mark_tags({}, owner, {str(org["id"]): str(org["name"])})
                if owner and n < n_conn
                else dict(tag),
                "federatedCredentials": fics,
            }
        )
        for k in range(assignments_per_identity):
            ras.append(
                {
                    "identity": f"{sub}/identities-rg/{name}",
                    "scope": scopes[k % len(scopes)],
                    "role": "Reader",
                    "description": described,
                }
            )
    return seed
