"""The inventory of organisations on an identity (README "Safety"): what the planner derives,
and the order that never drops an entry while a connection it stands for still lives."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "cases"))
from caseload import SANDBOX, load_desired, load_live

from reconciler.changes import Change
from reconciler.plan import make_plan

IDENTITY = f"{SANDBOX}/identities-rg/mi-1"
CONTOSO = "0c7a5f0e-8d8b-4f7e-9a53-2f0b1f6c9d21"
FABRIKAM = "4b1e9d2a-6c3f-4a8e-b5d7-9e0f1a2b3c4d"
SUBJECT = f"/eid1/c/pub/t/x/a/y/sc/{CONTOSO}/68f2b542-503f-55ed-bd53-f2bb7589b249"
ISSUER = "https://login.microsoftonline.com/7e1a6a0c-3c1d-4b8e-9f4a-1b2c3d4e5f60/v2.0"
GITHUB = "https://token.actions.githubusercontent.com"
IDENTITY_ATTRS = {
    "subscription": SANDBOX,
    "resourceGroup": "identities-rg",
    "name": "mi-1",
    "location": "westeurope",
    "tags": {},
}


def _connection(org: str, project: str) -> dict[str, Any]:
    return {
        "organization": org,
        "project": project,
        "name": "sc-1",
        "description": None,
        "identity": IDENTITY,
        "subscriptionId": SANDBOX,
        "subscriptionName": "Sandbox",
        "scope": None,
        "sharedWith": [],
        "pipelinePermissions": None,
    }


def _live() -> dict[str, Any]:
    """mi-1 with its connection in contoso, its credential, and the inventory recording it."""
    return {
        "organizations": {"contoso": CONTOSO, "fabrikam": FABRIKAM},
        "project_names": {"contoso": ["platform"], "fabrikam": ["web"]},
        "resources": [
            {
                "kind": "identity",
                "owner": "platform-team",
                "attrs": {
                    **IDENTITY_ATTRS,
                    "organizations": {CONTOSO: "contoso"},
                    "principalId": "f2563897-358a-5d2b-8aa7-f4d234dd1b95",
                    "clientId": "e4c1c6e2-adbd-56bb-81c5-f0b37dc919af",
                    "tenantId": "7e1a6a0c-3c1d-4b8e-9f4a-1b2c3d4e5f60",
                },
            },
            {
                "kind": "service_connection",
                "owner": "platform-team",
                "attrs": {
                    **_connection("contoso", "platform"),
                    "id": "68f2b542-503f-55ed-bd53-f2bb7589b249",
                    "servicePrincipalId": "e4c1c6e2-adbd-56bb-81c5-f0b37dc919af",
                    "tenantId": "7e1a6a0c-3c1d-4b8e-9f4a-1b2c3d4e5f60",
                    "issuer": ISSUER,
                    "subject": SUBJECT,
                },
            },
            {
                "kind": "federated_credential",
                "owner": "platform-team",
                "attrs": {
                    "identity": IDENTITY,
                    "name": "ado-contoso-platform-sc-1",
                    "issuer": ISSUER,
                    "subject": SUBJECT,
                    "audiences": ["api://AzureADTokenExchange"],
                },
            },
        ],
    }


def _plan(resources: list[dict[str, Any]]) -> dict[str, Change]:
    desired = load_desired({"owner": "platform-team", "resources": resources})
    plan = make_plan(desired, load_live(_live()))
    return {f"{c.address.kind.value}:{c.address.key.lower()}": c for c in plan.changes}


def test_dropping_an_organisation_waits_for_the_connection_delete() -> None:
    changes = _plan([{"kind": "identity", "attrs": IDENTITY_ATTRS}])
    identity = changes[f"identity:{IDENTITY}"]
    connection = changes["service_connection:contoso/platform/sc-1"]
    credential = changes[f"federated_credential:{IDENTITY}/ado-contoso-platform-sc-1"]
    assert identity.action == "update"
    assert [f.path for f in identity.fields] == [f"organizations.{CONTOSO}"]
    assert connection.address in identity.depends_on
    assert credential.address in connection.depends_on
    assert credential.wave < connection.wave < identity.wave


def test_moving_a_connection_to_another_organisation_has_no_cycle() -> None:
    # the connection moves from contoso to fabrikam, and a GitHub credential is added: the
    # inventory gains fabrikam (before the create) and drops contoso (after the delete)
    moved = _connection("fabrikam", "web")
    changes = _plan(
        [
            {"kind": "identity", "attrs": IDENTITY_ATTRS},
            {"kind": "service_connection", "attrs": moved},
            {
                "kind": "federated_credential",
                "attrs": {
                    "identity": IDENTITY,
                    "name": "ado-fabrikam-web-sc-1",
                    "issuer": "(known after apply)",
                    "subject": "(known after apply)",
                    "audiences": ["api://AzureADTokenExchange"],
                    "serviceConnection": "fabrikam/web/sc-1",
                },
            },
            {
                "kind": "federated_credential",
                "attrs": {
                    "identity": IDENTITY,
                    "name": "github-main",
                    "issuer": GITHUB,
                    "subject": "repo:contoso/app:ref:refs/heads/main",
                    "audiences": ["api://AzureADTokenExchange"],
                },
            },
        ]
    )
    identity = changes[f"identity:{IDENTITY}"]
    assert [(f.path, f.before, f.after) for f in identity.fields] == [
        ("organizations", {CONTOSO: "contoso"}, {FABRIKAM: "fabrikam"})
    ]
    old = changes["service_connection:contoso/platform/sc-1"]
    new = changes["service_connection:fabrikam/web/sc-1"]
    assert (old.action, new.action) == ("delete", "create")
    assert old.address in identity.depends_on
    assert identity.address in new.depends_on
    assert old.wave < identity.wave < new.wave
