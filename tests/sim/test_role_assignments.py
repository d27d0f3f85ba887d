"""Role assignments and role definitions through the real azure-mgmt-authorization client."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from reconciler.sim.server import Simulator

from .clients import PRODUCTION, SANDBOX, Http

SUB = f"/subscriptions/{SANDBOX}"
RG = f"{SUB}/resourceGroups/sandbox-rg"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
AUDITOR = "9f0c2a8e-5b7d-4c3e-8a1f-6d2e4b8c0a11"
USER = "0a0b0c0d-1111-4222-8333-444455556666"
SHARED_READER = "3c8e2a91-5f4d-4b7a-9e1c-0d2f6a8b4c11"


def role(guid: str, sub: str = SANDBOX) -> str:
    return f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def new_identity(msi: Any, name: str) -> Any:
    return msi.user_assigned_identities.create_or_update(
        "identities-rg", name, {"location": "westeurope"}
    )


def test_create_get_update_delete(sim: Simulator, msi: Any, authz: Any) -> None:
    mi = new_identity(msi, "ra-mi")
    ops = authz.role_assignments
    name = str(uuid.uuid4())
    created = ops.create(
        RG,
        name,
        {
            "role_definition_id": role(READER),
            "principal_id": mi.principal_id,
            "principal_type": "ServicePrincipal",
            "description": "d1",
        },
    )
    assert (
        created.scope == RG
        and created.role_definition_id == role(READER)
        and created.description == "d1"
    )
    again = ops.create(
        RG,
        name,
        {
            "role_definition_id": role(READER),
            "principal_id": mi.principal_id,
            "principal_type": "ServicePrincipal",
            "description": "d2",
        },
    )
    assert again.description == "d2"
    assert [e["status"] for e in sim.request_log(op="RoleAssignments_Create")] == [201, 200]
    assert ops.get(RG.upper().replace("SUBSCRIPTIONS", "subscriptions"), name).name == name
    assert ops.get_by_id(created.id).name == name
    deleted = ops.delete(RG, name)
    assert deleted.name == name
    assert ops.delete(RG, name) is None  # 204
    with pytest.raises(ResourceNotFoundError) as err:
        ops.get(RG, name)
    assert err.value.error.code == "RoleAssignmentNotFound"


def test_same_triple_under_another_name_exists(sim: Simulator, msi: Any, authz: Any) -> None:
    mi = new_identity(msi, "dup-mi")
    body = {
        "role_definition_id": role(READER),
        "principal_id": mi.principal_id,
        "principal_type": "ServicePrincipal",
    }
    first = "1a2b3c4d-5e6f-4a0b-8c1d-2e3f4a5b6c7d"
    authz.role_assignments.create(RG, first, body)
    with pytest.raises(ResourceExistsError) as err:
        authz.role_assignments.create(RG, str(uuid.uuid4()), body)
    assert err.value.status_code == 409 and err.value.error.code == "RoleAssignmentExists"
    assert err.value.error.message.endswith(
        "The ID of the existing role assignment is 1a2b3c4d5e6f4a0b8c1d2e3f4a5b6c7d."
    )


def test_same_name_with_another_scope_or_principal_is_not_permitted(
    sim: Simulator, msi: Any, authz: Any
) -> None:
    a, b = new_identity(msi, "one-mi"), new_identity(msi, "two-mi")
    name = str(uuid.uuid4())
    authz.role_assignments.create(
        RG,
        name,
        {
            "role_definition_id": role(READER),
            "principal_id": a.principal_id,
            "principal_type": "ServicePrincipal",
        },
    )
    for scope, principal in ((RG, b.principal_id), (SUB, a.principal_id)):
        with pytest.raises(HttpResponseError) as err:
            authz.role_assignments.create(
                scope,
                name,
                {
                    "role_definition_id": role(READER),
                    "principal_id": principal,
                    "principal_type": "ServicePrincipal",
                },
            )
        assert (err.value.status_code, err.value.error.code) == (
            400,
            "RoleAssignmentUpdateNotPermitted",
        )


def test_unknown_principal_without_type_is_not_found(sim: Simulator, authz: Any) -> None:
    ghost = str(uuid.uuid4())
    body = {"role_definition_id": role(READER), "principal_id": ghost}
    with pytest.raises(HttpResponseError) as err:
        authz.role_assignments.create(RG, str(uuid.uuid4()), body)
    assert (err.value.status_code, err.value.error.code) == (400, "PrincipalNotFound")
    assert f"does not exist in the directory {sim.tenant_id}" in err.value.error.message


def test_unknown_principal_with_type_is_created_as_told(sim: Simulator, authz: Any) -> None:
    # principalType makes ARM skip the directory look-up (README: A-principal-type), so a
    # principal it cannot see, replicating or never created, gets its assignment
    ghost = str(uuid.uuid4())
    name = str(uuid.uuid4())
    created = authz.role_assignments.create(
        RG,
        name,
        {
            "role_definition_id": role(READER),
            "principal_id": ghost,
            "principal_type": "ServicePrincipal",
        },
    )
    assert (created.principal_id, created.principal_type) == (ghost, "ServicePrincipal")
    listed = [a for a in authz.role_assignments.list_for_scope(RG) if a.name == name]
    assert [(a.principal_id, a.principal_type) for a in listed] == [(ghost, "ServicePrincipal")]


def test_replication_window_needs_principal_type(sim: Simulator, msi: Any, authz: Any) -> None:
    sim.update_faults(replication_ms=60_000)
    mi = new_identity(msi, "fresh-mi")
    with pytest.raises(HttpResponseError) as err:
        authz.role_assignments.create(
            RG,
            str(uuid.uuid4()),
            {"role_definition_id": role(READER), "principal_id": mi.principal_id},
        )
    assert err.value.error.code == "PrincipalNotFound"
    ok = authz.role_assignments.create(
        RG,
        str(uuid.uuid4()),
        {
            "role_definition_id": role(READER),
            "principal_id": mi.principal_id,
            "principal_type": "ServicePrincipal",
        },
    )
    assert ok.principal_type == "ServicePrincipal"


def test_principal_window_fault_defeats_principal_type(
    sim: Simulator, msi: Any, authz: Any
) -> None:
    sim.update_faults(principal_window_s=60)
    mi = new_identity(msi, "young-mi")
    with pytest.raises(HttpResponseError) as err:
        authz.role_assignments.create(
            RG,
            str(uuid.uuid4()),
            {
                "role_definition_id": role(READER),
                "principal_id": mi.principal_id,
                "principal_type": "ServicePrincipal",
            },
        )
    assert err.value.error.code == "PrincipalNotFound"
    sim.update_faults(principal_window_s=0)
    authz.role_assignments.create(
        RG,
        str(uuid.uuid4()),
        {
            "role_definition_id": role(READER),
            "principal_id": mi.principal_id,
            "principal_type": "ServicePrincipal",
        },
    )


def test_seeded_users_and_groups_are_principals(sim: Simulator, authz: Any) -> None:
    got = authz.role_assignments.create(
        RG, str(uuid.uuid4()), {"role_definition_id": role(READER), "principal_id": USER}
    )
    assert got.principal_type == "User"


def test_lists_and_filters(sim: Simulator, msi: Any, authz: Any) -> None:
    mi = new_identity(msi, "list-mi")
    body = {"principal_id": mi.principal_id, "principal_type": "ServicePrincipal"}
    authz.role_assignments.create(
        SUB, str(uuid.uuid4()), {**body, "role_definition_id": role(CONTRIBUTOR)}
    )
    authz.role_assignments.create(
        RG, str(uuid.uuid4()), {**body, "role_definition_id": role(READER)}
    )
    mg = "/providers/Microsoft.Management/managementGroups/contoso-root"
    authz.role_assignments.create(
        mg,
        str(uuid.uuid4()),
        {
            "principal_id": USER,
            "role_definition_id": f"/providers/Microsoft.Authorization/roleDefinitions/{READER}",
        },
    )
    everything = {a.scope for a in authz.role_assignments.list_for_subscription()}
    assert {SUB, RG, mg} <= everything
    assert f"{SUB}/resourceGroups/sandbox-rg" in everything
    at_rg = {a.scope for a in authz.role_assignments.list_for_scope(RG, filter="atScope()")}
    assert at_rg == {
        SUB,
        RG,
        mg,
    }  # at or above the group
    at_sub = {a.scope for a in authz.role_assignments.list_for_scope(SUB, filter="atScope()")}
    assert RG not in at_sub and SUB in at_sub
    mine = {
        a.role_definition_id.rsplit("/", 1)[-1]
        for a in authz.role_assignments.list_for_scope(
            SUB, filter=f"principalId eq '{mi.principal_id}'"
        )
    }
    assert mine == {CONTRIBUTOR, READER}
    group = list(authz.role_assignments.list_for_resource_group("sandbox-rg"))
    assert {a.scope for a in group} >= {RG, SUB}
    prod = {a.scope for a in authz.role_assignments.list_for_scope(f"/subscriptions/{PRODUCTION}")}
    assert SUB not in prod and mg in prod


def test_list_pages_keep_the_filter(sim: Simulator, msi: Any, authz: Any, http: Http) -> None:
    mi = new_identity(msi, "paged-mi")
    for rg in ("sandbox-rg", "team-a-rg", "team-b-rg"):
        authz.role_assignments.create(
            f"{SUB}/resourceGroups/{rg}",
            str(uuid.uuid4()),
            {
                "role_definition_id": role(READER),
                "principal_id": mi.principal_id,
                "principal_type": "ServicePrincipal",
            },
        )
    sim.update_faults(role_assignment_page_size=1)
    page = http.arm(
        "GET",
        f"{SUB}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=principalId eq '{mi.principal_id}'",
    ).json()
    assert len(page["value"]) == 1 and "$filter=principalId" in page["nextLink"]
    sim.clear_log()
    got = list(
        authz.role_assignments.list_for_scope(SUB, filter=f"principalId eq '{mi.principal_id}'")
    )
    assert len(got) == 3
    assert sim.count("RoleAssignments_ListForSubscription") == 3


def test_role_must_exist_and_be_assignable(sim: Simulator, msi: Any, authz: Any) -> None:
    mi = new_identity(msi, "role-mi")
    mg = "/providers/Microsoft.Management/managementGroups/contoso-root"
    for scope, bad in ((RG, role("00000000-0000-4000-8000-000000000000")), (mg, role(AUDITOR))):
        # unknown, and a custom role outside its assignable scopes
        with pytest.raises(HttpResponseError) as err:
            authz.role_assignments.create(
                scope,
                str(uuid.uuid4()),
                {
                    "role_definition_id": bad,
                    "principal_id": mi.principal_id,
                    "principal_type": "ServicePrincipal",
                },
            )
        assert (err.value.status_code, err.value.error.code) == (400, "RoleDefinitionDoesNotExist")
    ok = authz.role_assignments.create(
        RG,
        str(uuid.uuid4()),
        {
            "role_definition_id": role(AUDITOR),
            "principal_id": mi.principal_id,
            "principal_type": "ServicePrincipal",
        },
    )
    assert ok.role_definition_id.endswith(AUDITOR)
    with pytest.raises(HttpResponseError) as err:
        authz.role_assignments.create(
            RG, "not-a-guid", {"role_definition_id": role(READER), "principal_id": mi.principal_id}
        )
    assert err.value.error.code == "InvalidRoleAssignmentId"


def test_role_definitions(sim: Simulator, authz: Any) -> None:
    ops = authz.role_definitions
    found = list(ops.list(SUB, filter="roleName eq 'Contributor'"))
    assert [(d.name, d.role_name, d.role_type) for d in found] == [
        (CONTRIBUTOR, "Contributor", "BuiltInRole")
    ]
    assert found[0].id == role(CONTRIBUTOR)
    custom = list(ops.list(RG, filter="type eq 'CustomRole'"))
    assert [d.role_name for d in custom] == ["Identity Auditor"]
    assert ops.get(SUB, READER).role_name == "Reader"
    assert (
        ops.get_by_id(f"/providers/Microsoft.Authorization/roleDefinitions/{READER}").role_name
        == "Reader"
    )
    listed = {d.name: (d.role_name, d.role_type) for d in ops.list(SUB)}
    catalogue = json.loads(
        (Path(__file__).parents[2] / "reconciler/sim/data/azure-builtin-roles.json").read_text()
    )["roles"]
    assert len(catalogue) > 400  # Azure's whole documented catalogue, not a handful
    expected = {r["id"]: (r["roleName"], "BuiltInRole") for r in catalogue}
    expected[AUDITOR] = ("Identity Auditor", "CustomRole")
    assert listed == expected
    with pytest.raises(ResourceNotFoundError):
        ops.get(SUB, "00000000-0000-4000-8000-000000000000")


def test_any_builtin_role_can_be_assigned(sim: Simulator, msi: Any, authz: Any) -> None:
    mi = new_identity(msi, "acr-mi")
    acr_pull = "7f951dda-4ed3-4680-a7ca-43fe172d538d"  # far from the few the tool writes
    found = list(authz.role_definitions.list(SUB, filter="roleName eq 'AcrPull'"))
    assert [d.name for d in found] == [acr_pull]
    made = authz.role_assignments.create(
        RG,
        str(uuid.uuid4()),
        {
            "role_definition_id": role(acr_pull),
            "principal_id": mi.principal_id,
            "principal_type": "ServicePrincipal",
        },
    )
    assert made.role_definition_id.endswith(acr_pull)


def test_seeded_unmarked_assignment(sim: Simulator, authz: Any) -> None:
    got = authz.role_assignments.get(SUB, SHARED_READER)
    assert got.role_definition_id.endswith(READER) and got.description is None
