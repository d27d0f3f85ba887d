"""A small hand-made estate for the conversion tests: a secret-based connection shared with a
second project, a connection on the Azure DevOps (legacy) issuer, and the identities they name
(tests/sim/test_convert_scheme.py, tests/providers/test_convert.py)."""

from __future__ import annotations

from typing import Any

from reconciler.federation import devops_issuer, devops_subject
from reconciler.sim.seed import default_seed

SANDBOX = "11111111-1111-1111-1111-111111111111"
ORG_ID = "0c7a5f0e-8d8b-4f7e-9a53-2f0b1f6c9d21"  # contoso
SECRET = "seeded-secret-value-7f3a"
APP = "3f2e1d0c-aaaa-4bbb-8ccc-0123456789ab"  # an app registration the simulator does not hold
LEGACY_MI = "9a8b7c6d-1111-4222-8333-0123456789ab"  # client id of legacy-mi
TARGET_MI = "9a8b7c6d-2222-4333-8444-0123456789ab"  # client id of target-mi (no credentials)
SPN_ID = "aaaaaaaa-0000-4000-8000-000000000001"
LEGACY_ID = "aaaaaaaa-0000-4000-8000-000000000002"
MI_SPN_ID = "aaaaaaaa-0000-4000-8000-000000000003"
DATA = {
    "subscriptionId": SANDBOX,
    "subscriptionName": "Sandbox",
    "environment": "AzureCloud",
    "scopeLevel": "Subscription",
    "creationMode": "Automatic",
}


def estate(tenant: str) -> dict[str, Any]:
    """The default world plus the estate."""
    seed = default_seed()
    seed["identities"] += [
        {
            "subscription": SANDBOX,
            "resourceGroup": "identities-rg",
            "name": "legacy-mi",
            "clientId": LEGACY_MI,
            "federatedCredentials": [
                {
                    "name": "legacy",
                    "issuer": devops_issuer(ORG_ID),
                    "subject": devops_subject("contoso", "platform", "legacy-sc"),
                }
            ],
        },
        {
            "subscription": SANDBOX,
            "resourceGroup": "identities-rg",
            "name": "target-mi",
            "clientId": TARGET_MI,
        },
    ]
    seed["roleAssignments"] += [
        {
            "identity": f"{SANDBOX}/identities-rg/{name}",
            "scope": f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg",
            "role": "Reader",
        }
        for name in ("legacy-mi", "target-mi")
    ]
    contoso = seed["devops"]["organizations"][0]
    spn = {"serviceprincipalid": APP, "tenantid": tenant, "authenticationType": "spnKey"}
    contoso["serviceEndpoints"] = [
        {
            "id": SPN_ID,
            "name": "spn-sc",
            "scheme": "ServicePrincipal",
            "parameters": {**spn, "serviceprincipalkey": SECRET},
            "data": DATA,
            "projects": ["platform", "team-a"],
        },
        {
            "id": LEGACY_ID,
            "name": "legacy-sc",
            "issuer": "devops",
            "parameters": {"serviceprincipalid": LEGACY_MI, "tenantid": tenant},
            "data": {**DATA, "creationMode": "Manual"},
            "projects": ["platform"],
        },
        {
            "id": MI_SPN_ID,
            "name": "mi-spn-sc",
            "scheme": "ServicePrincipal",
            "parameters": {**spn, "serviceprincipalid": TARGET_MI, "serviceprincipalkey": SECRET},
            "data": DATA,
            "projects": ["platform"],
        },
    ]
    contoso["pipelinePermissions"] = [
        {"project": "platform", "endpoint": "spn-sc", "allPipelines": True, "pipelines": [1]},
        {"project": "team-a", "endpoint": "spn-sc", "pipelines": [3]},
        {"project": "platform", "endpoint": "legacy-sc", "pipelines": [1, 2]},
    ]
    return seed
