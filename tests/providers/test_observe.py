"""``observe`` against the simulator over HTTPS: canonical form, ownership, request counts."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest

from bench.estates import large_seed
from reconciler.model import UNKNOWN, Address, Kind, LiveState, identity_key
from reconciler.observe import observe
from reconciler.providers import Services
from reconciler.sim.seed import default_seed, entra_issuer, entra_subject
from reconciler.sim.server import Simulator

from .conftest import (
    CONTOSO_ID,
    CONTRIBUTOR,
    FABRIKAM_ID,
    OWNER,
    PRODUCTION,
    READER,
    SANDBOX,
    TENANT,
    DesiredBuilder,
)

MI = identity_key(SANDBOX, "identities-rg", "ado-pipeline-mi")
OLD = identity_key(SANDBOX, "team-b-rg", "old-mi")
E_PLATFORM = "aaaaaaaa-0000-4000-8000-000000000001"
E_SHARED = "aaaaaaaa-0000-4000-8000-000000000002"
E_OLD = "aaaaaaaa-0000-4000-8000-000000000003"
E_HAND = "aaaaaaaa-0000-4000-8000-000000000004"
E_LEGACY = "aaaaaaaa-0000-4000-8000-000000000005"
ORPHAN_PRINCIPAL = "dddddddd-0000-4000-8000-00000000dead"
SANDBOX_RG = f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg"


def _endpoint(
    id_: str, name: str, projects: list[str], description: str, client_id: str = "c"
) -> dict[str, Any]:
    return {
        "id": id_,
        "name": name,
        "projects": projects,
        "description": description,
        "parameters": {"serviceprincipalid": client_id, "tenantid": TENANT},
        "data": {
            "subscriptionId": SANDBOX.upper(),
            "subscriptionName": "Sandbox",
            "environment": "AzureCloud",
            "scopeLevel": "Subscription",
            "creationMode": "Manual",
        },
    }


def _world() -> dict[str, Any]:
    """The default world plus a walkthrough setup that platform-team owns, and some others."""
    seed = default_seed()
    owned = {"reconciler-owner": OWNER}
    seed["identities"] += [
        {
            "subscription": SANDBOX,
            "resourceGroup": "identities-rg",
            "name": "ado-pipeline-mi",
            "tags": {"purpose": "deploy", **owned},
            "clientId": "c1c1c1c1-0000-4000-8000-000000000001",
            "principalId": "p1p1p1p1-0000-4000-8000-000000000001".replace("p", "e"),
            "federatedCredentials": [
                {
                    "name": "ado-contoso-platform-ado-pipeline-mi",
                    "issuer": entra_issuer(TENANT),
                    "subject": entra_subject(TENANT, CONTOSO_ID, E_PLATFORM),
                },
                {
                    "name": "github-main",
                    "issuer": "https://token.actions.githubusercontent.com",
                    "subject": "repo:contoso/app:ref:refs/heads/main",
                },
            ],
        },
        {
            "subscription": SANDBOX,
            "resourceGroup": "team-b-rg",
            "name": "old-mi",
            "tags": owned,
            "federatedCredentials": [
                {"name": "gh-old", "issuer": "https://issuer.example", "subject": "old"}
            ],
        },
    ]
    mi_ref = f"{SANDBOX}/identities-rg/ado-pipeline-mi"
    seed["roleAssignments"] += [
        {
            "name": "11111111-aaaa-4aaa-8aaa-000000000001",
            "identity": mi_ref,
            "scope": SANDBOX_RG,
            "role": "Contributor",
            "description": f"Deploy the sandbox [reconciler-owner: {OWNER}]",
        },
        {
            "name": "11111111-aaaa-4aaa-8aaa-000000000002",
            "identity": mi_ref,
            "scope": f"/subscriptions/{SANDBOX}",
            "role": "Reader",
            "description": "[reconciler-owner: data-team]",
        },
        {
            "name": "11111111-aaaa-4aaa-8aaa-000000000003",
            "principalId": ORPHAN_PRINCIPAL,
            "scope": SANDBOX_RG,
            "role": "Reader",
            "description": f"[reconciler-owner: {OWNER}]",
        },
        {
            "name": "11111111-aaaa-4aaa-8aaa-000000000004",
            "principalId": "0a0b0c0d-1111-4222-8333-444455556666",  # alice: someone else's
            "scope": SANDBOX_RG,
            "role": "Reader",
        },
    ]
    contoso, fabrikam = seed["devops"]["organizations"]
    marker = f"[reconciler-owner: {OWNER}]"
    contoso["serviceEndpoints"] = [
        _endpoint(
            E_PLATFORM,
            "ado-pipeline-mi",
            ["platform"],
            f"Sandbox deployments {marker}",
            "c1c1c1c1-0000-4000-8000-000000000001",
        ),
        _endpoint(E_SHARED, "shared-deploy", ["team-a", "platform", "team-b"], marker),
        _endpoint(E_OLD, "old-deploy", ["team-b"], marker),
        _endpoint(E_HAND, "made-by-hand", ["platform"], "nobody's"),
    ]
    contoso["pipelinePermissions"] = [
        {"project": "platform", "endpoint": "ado-pipeline-mi", "pipelines": ["infra-deploy"]},
        {"project": "team-a", "endpoint": "shared-deploy", "allPipelines": True},
    ]
    fabrikam["serviceEndpoints"] = [
        _endpoint(E_LEGACY, "legacy-release", ["legacy-app"], marker),
    ]
    return seed


def _desired() -> DesiredBuilder:
    d = DesiredBuilder()
    mi = d.identity("ado-pipeline-mi", tags={"purpose": "deploy"})
    d.assignment(mi, SANDBOX_RG, CONTRIBUTOR, "Deploy the sandbox")
    d.connection("contoso", "platform", "ado-pipeline-mi", mi, permissions=["infra-deploy"])
    d.connection("contoso", "team-a", "shared-deploy", mi, permissions="all")
    d.connection("fabrikam", "legacy-app", "legacy-release", mi)
    return d


def _ops(sim: Simulator) -> Counter[str]:
    return Counter(e["op"] for e in sim.request_log())


def test_example_specs_on_the_default_world(sim: Simulator, services: Services) -> None:
    from reconciler.specs import load_desired_state

    desired = load_desired_state(["specs"])
    live = observe(services, desired, workers=4)

    # nothing declared exists yet; unmarked and foreign objects are not ours to show
    assert live.resources == {}
    roles = {d.name: d for d in live.role_definitions[SANDBOX]}
    assert roles["Contributor"].guid == CONTRIBUTOR
    assert roles["Identity Auditor"].guid == "9f0c2a8e-5b7d-4c3e-8a1f-6d2e4b8c0a11"
    assert roles["Identity Auditor"].role_type == "CustomRole"
    assert set(live.role_definitions) == {SANDBOX, PRODUCTION}
    assert live.role_assignment_counts == {SANDBOX: 2, PRODUCTION: 0}
    assert live.organizations == {"contoso": CONTOSO_ID, "fabrikam": FABRIKAM_ID}
    assert set(live.projects) == {
        "contoso/platform",
        "contoso/team-a",
        "contoso/team-b",
        "fabrikam/legacy-app",
    }
    assert live.pipelines["contoso/platform"] == {"infra-deploy": 1, "app-ci": 2}
    assert live.tenant_id == TENANT

    # plan never writes: only reads (the token requests and Resource Graph queries are POSTs)
    log = sim.request_log()
    assert {(e["method"], e["op"]) for e in log if e["method"] != "GET"} == {
        ("POST", "Token"),
        ("POST", "Resources"),
    }
    api_versions = {e["op"]: e["query"].get("api-version") for e in log}
    assert api_versions["UserAssignedIdentities_ListBySubscription"] == "2024-11-30"
    assert api_versions["RoleAssignments_ListForSubscription"] == "2022-04-01"
    assert api_versions["RoleDefinitions_List"] == "2022-04-01"
    assert api_versions["ResourceGroups_List"] == "2021-04-01"
    assert api_versions["ServiceEndpoints_List"] == "7.1"
    assert api_versions["Projects_List"] == "7.1"
    assert all(e["status"] == 200 for e in log)


def test_canonical_form_and_ownership(sim: Simulator, services: Services) -> None:
    sim.reset(_world())
    live = observe(services, _desired().build(), workers=4)
    by_kind = {kind: {r.address.key: r for r in live.of_kind(kind)} for kind in Kind}

    identities = by_kind[Kind.IDENTITY]
    assert set(identities) == {MI, OLD}  # desired, and owned but no longer in the specs
    mi = identities[MI]
    assert mi.owner == OWNER
    assert mi.attrs["tags"] == {"purpose": "deploy"}  # owner tag split off
    assert mi.attrs["subscription"] == SANDBOX
    assert mi.attrs["resourceGroup"] == "identities-rg"
    assert mi.attrs["location"] == "westeurope"
    assert mi.attrs["clientId"] == "c1c1c1c1-0000-4000-8000-000000000001"
    assert mi.attrs["tenantId"] == TENANT
    assert mi.attrs["id"].lower().endswith("/userassignedidentities/ado-pipeline-mi")
    assert len(mi.fingerprint) == 64

    creds = by_kind[Kind.FEDERATED_CREDENTIAL]
    assert set(creds) == {
        f"{MI}/ado-contoso-platform-ado-pipeline-mi",
        f"{MI}/github-main",
        f"{OLD}/gh-old",
    }
    github = creds[f"{MI}/github-main"]
    assert github.owner == OWNER  # a credential belongs to its identity
    assert github.attrs["identity"] == MI
    assert github.attrs["audiences"] == ["api://AzureADTokenExchange"]
    assert github.attrs["subject"] == "repo:contoso/app:ref:refs/heads/main"

    assignments = by_kind[Kind.ROLE_ASSIGNMENT]
    owned = assignments[f"{MI}/{SANDBOX_RG.lower()}/{CONTRIBUTOR}"]
    assert owned.owner == OWNER
    assert owned.attrs["description"] == "Deploy the sandbox"
    assert owned.attrs["roleDefinitionId"] == CONTRIBUTOR
    assert owned.attrs["principalType"] == "ServicePrincipal"
    assert owned.attrs["name"] == "11111111-aaaa-4aaa-8aaa-000000000001"
    foreign = assignments[f"{MI}//subscriptions/{SANDBOX}/{READER}"]
    assert foreign.owner == "data-team" and foreign.attrs["description"] is None
    orphan = assignments[f"orphan:{ORPHAN_PRINCIPAL}/{SANDBOX_RG.lower()}/{READER}"]
    assert orphan.attrs["identity"] is None and orphan.owner == OWNER
    # alice's unmarked assignment is neither ours nor on an identity of ours
    assert len(assignments) == 3

    connections = by_kind[Kind.SERVICE_CONNECTION]
    assert set(connections) == {
        "contoso/platform/ado-pipeline-mi",
        "contoso/team-a/shared-deploy",  # keyed by its first project, listed once
        "contoso/team-b/old-deploy",  # owned, no longer in the specs
        "fabrikam/legacy-app/legacy-release",
    }
    platform = connections["contoso/platform/ado-pipeline-mi"].attrs
    assert platform["description"] == "Sandbox deployments"
    assert platform["identity"] == MI  # found by client id
    assert platform["servicePrincipalId"] == "c1c1c1c1-0000-4000-8000-000000000001"
    assert platform["subscriptionId"] == SANDBOX
    assert platform["issuer"] == entra_issuer(TENANT)
    assert platform["subject"] == entra_subject(TENANT, CONTOSO_ID, E_PLATFORM)
    assert platform["issuerType"] == "EntraID"
    assert platform["isReady"] is True
    assert platform["pipelinePermissions"] == ["infra-deploy"]
    assert platform["sharedWith"] == []
    shared = connections["contoso/team-a/shared-deploy"].attrs
    assert shared["sharedWith"] == ["platform", "team-b"]
    assert shared["pipelinePermissions"] == "all"
    assert shared["identity"] is None
    old = connections["contoso/team-b/old-deploy"].attrs
    assert old["pipelinePermissions"] is None  # not managed: not read
    legacy = connections["fabrikam/legacy-app/legacy-release"].attrs
    assert legacy["issuer"] == f"https://vstoken.dev.azure.com/{FABRIKAM_ID}"
    assert legacy["subject"] == "sc://fabrikam/legacy-app/legacy-release"
    assert legacy["issuerType"] == "AzureDevOps"
    assert legacy["pipelinePermissions"] is None

    # permissions only for the two connections whose specs manage them
    assert _ops(sim)["PipelinePermissions_Get"] == 2
    assert _ops(sim)["FederatedIdentityCredentials_List"] == 2


def test_fingerprints_move_only_when_the_object_moves(sim: Simulator, services: Services) -> None:
    sim.reset(_world())
    desired = _desired().build()
    first = observe(services, desired, workers=2)
    again = observe(services, desired, workers=2)
    assert {a: r.fingerprint for a, r in first.resources.items()} == {
        a: r.fingerprint for a, r in again.resources.items()
    }
    sim.edit(
        "fic",
        f"{first.resources[Address(Kind.IDENTITY, MI)].attrs['id']}"
        "/federatedIdentityCredentials/github-main",
        {"subject": "repo:contoso/app:ref:refs/heads/release"},
    )
    sim.edit("pipeline_permissions", f"contoso/platform/endpoint/{E_PLATFORM}", {"pipelines": [2]})
    moved = observe(services, desired, workers=2)
    changed = {
        str(a)
        for a, r in moved.resources.items()
        if r.fingerprint != first.resources[a].fingerprint
    }
    assert changed == {
        f"federated_credential.{MI}/github-main",
        "service_connection.contoso/platform/ado-pipeline-mi",
    }
    assert moved.resources[
        Address(Kind.SERVICE_CONNECTION, "contoso/platform/ado-pipeline-mi")
    ].attrs["pipelinePermissions"] == ["app-ci"]


def test_paging_is_followed(sim: Simulator, services: Services) -> None:
    sim.reset(large_seed(7, credentials_per_identity=3, assignments_per_identity=3, owner=OWNER))
    sim.update_faults(identity_page_size=2, credential_page_size=2, role_assignment_page_size=4)
    d = DesiredBuilder()
    for n in range(7):
        d.identity(f"bench-mi-{n:05d}")
    live = observe(services, d.build(), workers=4)
    assert len(live.of_kind(Kind.IDENTITY)) == 7
    assert len(live.of_kind(Kind.FEDERATED_CREDENTIAL)) == 7 * 4  # 3 + the connection's
    assert len(live.of_kind(Kind.ROLE_ASSIGNMENT)) == 7 * 3
    ops = _ops(sim)
    assert ops["UserAssignedIdentities_ListBySubscription"] == 5  # 9 identities, pages of 2
    assert ops["FederatedIdentityCredentials_List"] == 7 * 2
    assert live.role_assignment_counts[SANDBOX] == 2 + 21


def _scaled_world_and_specs(identities: int, connections: int) -> tuple[dict[str, Any], Any]:
    seed = large_seed(
        identities,
        credentials_per_identity=3,
        assignments_per_identity=3,
        connections=connections,
        owner=OWNER,
    )
    d = DesiredBuilder()
    scopes = [
        f"/subscriptions/{SANDBOX}/resourceGroups/{rg}"
        for rg in ("sandbox-rg", "team-a-rg", "team-b-rg")
    ]
    for n in range(identities):
        name = f"bench-mi-{n:05d}"
        mi = d.identity(name)
        for k in range(3):
            d.credential(mi, f"gh-{k}", "https://token.actions.githubusercontent.com", f"s{k}")
            d.assignment(mi, scopes[k], READER, "bench")
        if n < connections:
            d.connection("contoso", "platform", name, mi, permissions="all")
    return seed, d.build()


@pytest.mark.parametrize(("identities", "connections"), [(10, 4), (40, 16)])
def test_requests_grow_with_identities_and_connections_only(
    sim: Simulator, services: Services, identities: int, connections: int
) -> None:
    seed, desired = _scaled_world_and_specs(identities, connections)
    sim.reset(seed)
    sim.clear_log()
    live = observe(services, desired, workers=8)

    assert len(live.of_kind(Kind.FEDERATED_CREDENTIAL)) == identities * 3 + connections
    assert len(live.of_kind(Kind.ROLE_ASSIGNMENT)) == identities * 3
    assert len(live.of_kind(Kind.SERVICE_CONNECTION)) == connections
    ops = _ops(sim)
    ops.pop("Token")
    ops.pop("OpenIdConfiguration", None)
    assert dict(ops) == {
        # constant: one list per subscription, organisation or project
        "UserAssignedIdentities_ListBySubscription": 1,
        "RoleAssignments_ListForSubscription": 1,
        "RoleDefinitions_List": 1,
        # the one extra read that lets plan tell a missing resource group or subscription
        "ResourceGroups_List": 1,
        "ConnectionData": 1,
        "Projects_List": 1,
        "ServiceEndpoints_List": 3,  # contoso's three projects
        "Pipelines_List": 1,
        # one per identity or connection; never one per credential or assignment
        "FederatedIdentityCredentials_List": identities,
        "PipelinePermissions_Get": connections,
        # reach: one Resource Graph query for identities, one for role assignments
        "Resources": 2,
    }


def test_unknown_issuer_in_desired_state_is_harmless(sim: Simulator, services: Services) -> None:
    # the implied credential's UNKNOWN issuer must not leak into what observe reads
    d = DesiredBuilder()
    mi = d.identity("ado-pipeline-mi")
    d.connection("contoso", "platform", "ado-pipeline-mi", mi)
    desired = d.build()
    assert any(r.attrs.get("issuer") is UNKNOWN for r in desired.resources.values())
    live = observe(services, desired, workers=2)
    assert isinstance(live, LiveState) and live.resources == {}


def test_management_group_scopes_are_read_once_per_group(
    sim: Simulator, services: Services
) -> None:
    seed = copy.deepcopy(_world())
    mg = "/providers/Microsoft.Management/managementGroups/contoso-root"
    seed["roleAssignments"].append(
        {
            "name": "11111111-aaaa-4aaa-8aaa-000000000009",
            "identity": f"{SANDBOX}/identities-rg/ado-pipeline-mi",
            "scope": mg,
            "role": "Reader",
            "description": f"[reconciler-owner: {OWNER}]",
        }
    )
    sim.reset(seed)
    d = _desired()
    d.assignment(MI, mg, READER)
    live = observe(services, d.build(), workers=4)
    key = f"{MI}/{mg.lower()}/{READER}"
    assert live.resources[Address(Kind.ROLE_ASSIGNMENT, key)].owner == OWNER
    assert live.role_assignment_counts[mg.lower()] == 1
    assert mg.lower() in live.role_definitions
    log = [e for e in sim.request_log() if e["op"] == "RoleAssignments_ListForScope"]
    assert len(log) == 1 and log[0]["query"].get("$filter") == "atScope()"
