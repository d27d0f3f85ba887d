from __future__ import annotations

import pytest

from reconciler import normalize
from reconciler.errors import PlanError
from reconciler.kinds.role_assignment import resolve_roles
from reconciler.model import (
    UNKNOWN,
    Address,
    DesiredState,
    Kind,
    LiveState,
    Resource,
    RoleDefinition,
    Source,
    role_assignment_key,
)

SUB = "11111111-1111-1111-1111-111111111111"
MI = f"{SUB}/identities-rg/ado-pipeline-mi"
AUDITOR = "9f0c2a8e-5b7d-4c3e-8a1f-6d2e4b8c0a11"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
LIVE = LiveState(
    role_definitions={
        SUB: (
            RoleDefinition(READER, "Reader"),
            RoleDefinition(AUDITOR, "Identity Auditor", "CustomRole"),
        )
    }
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            f"/subscriptions/{SUB}/resourceGroups/Sandbox-RG/",
            f"/subscriptions/{SUB}/resourcegroups/sandbox-rg",
        ),
        (f"subscriptions/{SUB}", f"/subscriptions/{SUB}"),
        (None, None),
    ],
)
def test_scope_is_case_and_slash_insensitive(given: str | None, expected: str | None) -> None:
    assert normalize.scope(given) == expected


def test_unknown_passes_through_every_canonical_form() -> None:
    for fn in (normalize.scope, normalize.location, normalize.guid, normalize.text):
        assert fn(UNKNOWN) is UNKNOWN


def test_location_spelling() -> None:
    assert normalize.location("West Europe") == "westeurope"


@pytest.mark.parametrize(
    "reference",
    [
        AUDITOR.upper(),
        f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{AUDITOR}",
        f"/providers/microsoft.authorization/roleDefinitions/{AUDITOR}",
    ],
)
def test_role_guid_from_guid_or_full_id(reference: str) -> None:
    assert normalize.role_guid(reference) == AUDITOR


def test_role_guid_of_a_name_is_none() -> None:
    assert normalize.role_guid("Identity Auditor") is None


def test_name_set_sorts_and_folds_case() -> None:
    assert normalize.name_set(["team-b", "Team-A", "team-a"]) == ["team-a", "team-b"]
    assert normalize.pipeline_permissions("All") == "all"
    assert normalize.pipeline_permissions(None) is None


def test_subscription_and_management_group_of_a_scope() -> None:
    assert normalize.subscription_of(f"/subscriptions/{SUB.upper()}/resourceGroups/x") == SUB
    mg = "/providers/Microsoft.Management/managementGroups/Root"
    assert normalize.subscription_of(mg) is None
    assert normalize.management_group_of(mg) == "root"


def _ra(role: str, role_id: str | None, scope: str = f"/subscriptions/{SUB}") -> Resource:
    ref = role_id or f"name:{role}"
    address = Address(Kind.ROLE_ASSIGNMENT, role_assignment_key(MI, scope, ref))
    attrs = {"identity": MI, "role": role, "roleDefinitionId": role_id, "scope": scope}
    return Resource(address, attrs, Source("specs/a.yaml", 7))


def test_resolve_roles_rekeys_a_custom_role_name_and_its_dependents() -> None:
    ra = _ra("identity auditor", None)
    other = Resource(Address(Kind.IDENTITY, "x"), {}, depends_on=(ra.address,))
    desired = DesiredState("me", {ra.address: ra, other.address: other})
    resolved = resolve_roles(desired, LIVE)
    new = Address(Kind.ROLE_ASSIGNMENT, role_assignment_key(MI, f"/subscriptions/{SUB}", AUDITOR))
    assert set(resolved.resources) == {new, other.address}
    assert resolved.resources[new].attrs["roleDefinitionId"] == AUDITOR
    assert resolved.resources[other.address].depends_on == (new,)


def test_unknown_role_names_file_line_and_role() -> None:
    ra = _ra("Bucket Wrangler", None)
    with pytest.raises(PlanError, match=r"^specs/a.yaml:7:1: unknown role 'Bucket Wrangler'"):
        resolve_roles(DesiredState("me", {ra.address: ra}), LIVE)


def test_the_same_role_by_name_and_by_guid_is_a_duplicate() -> None:
    by_name, by_guid = _ra("Reader", None), _ra(READER, READER)
    desired = DesiredState("me", {by_name.address: by_name, by_guid.address: by_guid})
    with pytest.raises(PlanError, match="duplicates"):
        resolve_roles(desired, LIVE)


def test_management_group_scope_finds_roles_of_any_subscription() -> None:
    ra = _ra("Identity Auditor", None, "/providers/Microsoft.Management/managementGroups/root")
    resolved = resolve_roles(DesiredState("me", {ra.address: ra}), LIVE)
    (only,) = resolved.resources.values()
    assert only.attrs["roleDefinitionId"] == AUDITOR
