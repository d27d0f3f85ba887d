"""The pure live-reference checks, the built-in role catalogue, and validate's role warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.kinds import REGISTRY
from reconciler.model import Address, DesiredState, Kind, LiveState, Resource, Source
from reconciler.references import check_references, closest
from reconciler.specs import builtin_roles

REPO = Path(__file__).resolve().parents[2]
SUB = "11111111-1111-1111-1111-111111111111"


def test_closest_is_case_insensitive_keeps_the_live_spelling_and_has_a_cutoff() -> None:
    assert closest("serach", ["platform", "Search"]) == "Search"
    assert closest("Contributer", ["Reader", "Contributor", "Owner"]) == "Contributor"
    assert closest("zzzz-unrelated", ["platform", "team-a"]) is None
    assert closest("anything", []) is None


def test_tool_and_simulator_read_the_same_dated_public_catalogue() -> None:
    tool = (REPO / "reconciler/schema/azure-builtin-roles.json").read_bytes()
    sim = (REPO / "reconciler/sim/data/azure-builtin-roles.json").read_bytes()
    assert tool == sim, "the two copies of Azure's catalogue differ: copy one onto the other"
    data = json.loads(tool)
    assert "learn.microsoft.com" in data["source"] and data["retrieved"]
    names = [r["roleName"] for r in data["roles"]]
    ids = [r["id"] for r in data["roles"]]
    assert len(set(ids)) == len(ids) == len({n.lower() for n in names}) > 400
    roles = builtin_roles()
    assert roles["Contributor"] == "b24988ac-6180-42a0-ab88-20f7382dd24c"
    assert roles["AcrPull"] == "7f951dda-4ed3-4680-a7ca-43fe172d538d"


def _assignment(role: str, scope: str) -> Resource:
    identity = f"{SUB}/identities-rg/a-mi"
    key = f"{identity}/{scope}/name:{role}".lower()
    return Resource(
        Address(Kind.ROLE_ASSIGNMENT, key),
        {"identity": identity, "role": role, "roleDefinitionId": None, "scope": scope},
        Source("s.yaml", 3),
        fields={
            "role": Source("s.yaml", 4, 15, "identities[0].roleAssignments[0].role"),
            "scope": Source("s.yaml", 5, 16, "identities[0].roleAssignments[0].scope"),
        },
    )


def test_nothing_is_judged_that_was_not_read() -> None:
    resource = _assignment("Contributer", f"/subscriptions/{SUB}")
    desired = DesiredState("o", {resource.address: resource})
    assert check_references(desired, LiveState(), REGISTRY) == []


def test_a_subscription_the_caller_cannot_read_is_reported_as_such() -> None:
    scope = f"/subscriptions/{SUB}/resourceGroups/sandbox-rg"
    resource = _assignment("Contributer", scope)
    desired = DesiredState("o", {resource.address: resource})
    live = LiveState(
        role_definitions={SUB: ()},
        subscription_errors={SUB: "AuthorizationFailed: no access"},
    )
    [problem] = check_references(desired, live, REGISTRY)
    # one problem: the role is not judged against a catalogue that could not be read
    assert str(problem) == (
        f"s.yaml:5:16: identities[0].roleAssignments[0].scope: subscription {SUB} cannot be "
        "read by the signed-in caller (AuthorizationFailed: no access)"
    )


SPEC = """\
version: 1
owner: t
defaults: {subscription: 11111111-1111-1111-1111-111111111111, resourceGroup: identities-rg, location: westeurope}
identities:
  - name: a-mi
    roleAssignments:
      - {role: Contributer, resourceGroup: sandbox-rg}
      - {role: Storage Blob Data Reeder, resourceGroup: sandbox-rg}
      - {role: Identity Auditor, resourceGroup: sandbox-rg}
      - {role: contributor, resourceGroup: team-a-rg}
      - {role: AcrPull, resourceGroup: team-b-rg}
"""


def test_validate_warns_only_for_names_close_to_a_built_in_role(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "roles.yaml"
    spec.write_text(SPEC)
    assert main(["validate", str(spec)]) == 0  # a custom role may bear any name
    out, err = capsys.readouterr()
    assert "valid: 1 file" in out
    assert err.splitlines() == [
        f"{spec}:7:16: identities[0].roleAssignments[0].role: warning: 'Contributer' is not an "
        "Azure built-in role; did you mean 'Contributor'? (if it is a custom role, plan checks "
        "it against the live role definitions)",
        f"{spec}:8:16: identities[0].roleAssignments[1].role: warning: 'Storage Blob Data "
        "Reeder' is not an Azure built-in role; did you mean 'Storage Blob Data Reader'? (if it "
        "is a custom role, plan checks it against the live role definitions)",
    ]
