"""Targeted assertions on the planner's rules (the cases pin whole documents; these say why)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from reconciler.errors import PlanError
from reconciler.model import (
    UNKNOWN,
    Address,
    DesiredState,
    Kind,
    LiveResource,
    LiveState,
    Ownership,
    Resource,
    credential_key,
    identity_key,
    role_assignment_key,
)
from reconciler.plan import Action, Change, Plan, Reason, make_plan

sys.path.insert(0, str(Path(__file__).parents[1] / "cases"))
from caseload import BUILT_IN, SANDBOX, TENANT, load_case, world_catalogue


def _plan(name: str, **kwargs: bool) -> Plan:
    desired, live, args = load_case(name)
    return make_plan(desired, live, force=kwargs.get("force", args.get("force", False)))


def _by_kind(plan: Plan, kind: Kind, action: Action | None = None) -> list[Change]:
    return [
        c for c in plan.changes if c.address.kind is kind and (action is None or c.action is action)
    ]


def _one(plan: Plan, kind: Kind, action: Action | None = None) -> Change:
    (change,) = _by_kind(plan, kind, action)
    return change


def test_walkthrough_follows_microsofts_order() -> None:
    plan = _plan("create_walkthrough_from_nothing")
    wave = {c.address.kind: c.wave for c in plan.changes}
    assert (
        wave[Kind.IDENTITY]
        < wave[Kind.ROLE_ASSIGNMENT]
        < wave[Kind.SERVICE_CONNECTION]
        < wave[Kind.FEDERATED_CREDENTIAL]
    )
    credential = _one(plan, Kind.FEDERATED_CREDENTIAL)
    assert credential.after is not None
    assert credential.after["issuer"] is UNKNOWN and credential.after["subject"] is UNKNOWN
    assert credential.unknowns == ("issuer", "subject")
    connection = _one(plan, Kind.SERVICE_CONNECTION)
    assert connection.after is not None and connection.after["tenantId"] == TENANT


def test_in_sync_is_silent_and_reads_every_matched_object() -> None:
    plan = _plan("in_sync_walkthrough_no_changes")
    assert plan.empty and plan.unchanged == 4 and not plan.notices
    assert len(plan.fingerprints) == 4


@pytest.mark.parametrize(
    ("case", "issuer_prefix"),
    [
        ("implied_credential_vstoken_issuer", "https://vstoken.dev.azure.com/"),
        ("implied_credential_entra_issuer_subject_drift", "https://login.microsoftonline.com/"),
    ],
)
def test_implied_credential_takes_the_connections_issuer(case: str, issuer_prefix: str) -> None:
    change = _one(_plan(case), Kind.FEDERATED_CREDENTIAL)
    assert change.after is not None
    assert str(change.after["issuer"]).startswith(issuer_prefix)
    assert change.unknowns == ()


def test_replaced_identity_cascades_to_everything_that_holds_its_ids() -> None:
    plan = _plan("identity_location_replace_cascade")
    identity = _one(plan, Kind.IDENTITY)
    assert identity.action is Action.DELETE_THEN_CREATE and identity.destructive
    assert identity.reason is Reason.IMMUTABLE_CHANGED
    ra = _one(plan, Kind.ROLE_ASSIGNMENT)
    assert ra.action is Action.DELETE_THEN_CREATE and ra.reason is Reason.DEPENDENCY_REPLACED
    assert ra.after is not None and ra.after["principalId"] is UNKNOWN
    connection = _one(plan, Kind.SERVICE_CONNECTION)
    assert connection.action is Action.UPDATE and connection.reason is Reason.DEPENDENCY_REPLACED
    assert connection.after is not None and connection.after["servicePrincipalId"] is UNKNOWN
    for credential in _by_kind(plan, Kind.FEDERATED_CREDENTIAL, Action.DELETE_THEN_CREATE):
        assert credential.reason is Reason.DEPENDENCY_REPLACED
        assert identity.address in credential.depends_on
    for change in plan.changes:
        if change is not identity:
            assert change.wave > identity.wave


def test_credential_rename_with_the_same_pair_deletes_first() -> None:
    plan = _plan("credential_rename_same_issuer_subject_deletes_first")
    delete = _one(plan, Kind.FEDERATED_CREDENTIAL, Action.DELETE)
    create = _one(plan, Kind.FEDERATED_CREDENTIAL, Action.CREATE)
    assert delete.address in create.depends_on and create.address not in delete.depends_on


def test_credential_rename_with_a_new_pair_creates_first() -> None:
    plan = _plan("credential_rename_new_subject_creates_first")
    delete = _one(plan, Kind.FEDERATED_CREDENTIAL, Action.DELETE)
    create = _one(plan, Kind.FEDERATED_CREDENTIAL, Action.CREATE)
    assert create.address in delete.depends_on and delete.address not in create.depends_on


def test_role_assignment_moves_create_before_delete() -> None:
    plan = _plan("role_assignment_scope_change_creates_first")
    delete = _one(plan, Kind.ROLE_ASSIGNMENT, Action.DELETE)
    create = _one(plan, Kind.ROLE_ASSIGNMENT, Action.CREATE)
    assert create.address in delete.depends_on


def test_connection_goes_after_its_credential_and_before_its_identity() -> None:
    plan = _plan("identity_pruned_with_connection")
    credential = _one(plan, Kind.FEDERATED_CREDENTIAL, Action.DELETE)
    connection = _one(plan, Kind.SERVICE_CONNECTION, Action.DELETE)
    identity = _one(plan, Kind.IDENTITY, Action.DELETE)
    assert credential.address in connection.depends_on
    assert {credential.address, connection.address} <= set(identity.depends_on)
    # the connection signs in with the credential: deleting it is destructive too
    assert connection.destructive and identity.destructive and credential.destructive
    assert "contoso/platform/ado-pipeline-mi signs in with it" in credential.detail


def test_prune_touches_only_owned_objects() -> None:
    plan = _plan("prune_owned_only")
    assert all(c.action is Action.DELETE for c in plan.changes)
    assert all(c.ownership is Ownership.OWNED for c in plan.changes)
    assert {c.address.key.split("/")[2] for c in plan.changes} == {"old-mi"}


def test_adoption_adds_the_marker_and_prunes_undeclared_credentials_at_once() -> None:
    plan = _plan("adoption_of_unmarked_objects")
    (credential,) = _by_kind(plan, Kind.FEDERATED_CREDENTIAL)
    # an adopted identity's credentials follow the specs in this plan, not only in the next
    # one (which would make the apply that adopts it fail its convergence check)
    # made before the identity was adopted, so never by these specs
    assert credential.action is Action.DELETE and credential.reason is Reason.OUT_OF_BAND
    assert "adopted" in credential.detail
    for change in plan.changes:
        if change is credential:
            continue
        assert change.reason is Reason.ADOPTION and change.ownership is Ownership.UNMARKED
        assert any(f.path == "owner" and f.after == "platform-team" for f in change.fields)
    # the foreign-made role assignment is still only reported
    assert len(plan.notices) == 1 and "reported, not removed" in plan.notices[0].message


def test_foreign_owner_is_an_error_unless_forced() -> None:
    with pytest.raises(PlanError) as info:
        _plan("foreign_owner_taken_over_with_force", force=False)
    message = str(info.value)
    assert "'data-team'" in message and "specs/example.yaml:3" in message and "--force" in message
    plan = _plan("foreign_owner_taken_over_with_force", force=True)
    assert {c.detail for c in plan.changes} == {"taking over from data-team"}


def test_orphaned_assignment_we_own_is_removed() -> None:
    change = _one(_plan("orphaned_role_assignment_pruned"), Kind.ROLE_ASSIGNMENT)
    assert change.action is Action.DELETE and "no longer exists" in change.detail


def test_depends_on_lists_only_changes_of_the_same_plan() -> None:
    for name in ("service_connection_move_creates_first", "waves_two_identities_in_parallel"):
        plan = _plan(name)
        addresses = {c.address for c in plan.changes}
        for change in plan.changes:
            assert set(change.depends_on) <= addresses


def _big_world(identities: int) -> tuple[DesiredState, LiveState]:
    """N identities, each with 3 credentials, 3 role assignments and a connection, all live."""
    desired: dict[Address, Resource] = {}
    live: dict[Address, LiveResource] = {}
    roles = list(BUILT_IN.values())[:3]

    def both(address: Address, attrs: dict[str, object], extra: dict[str, object]) -> None:
        desired[address] = Resource(address, attrs)
        live[address] = LiveResource(address, {**attrs, **extra}, "me", f"fp-{address}")

    for i in range(identities):
        name = f"mi-{i:04d}"
        key = identity_key(SANDBOX, "identities-rg", name)
        client = f"c-{i}"
        both(
            Address(Kind.IDENTITY, key),
            {
                "subscription": SANDBOX,
                "resourceGroup": "identities-rg",
                "name": name,
                "location": "westeurope",
                "tags": {"n": str(i)},
            },
            {"principalId": f"p-{i}", "clientId": client, "tenantId": TENANT},
        )
        for j in range(3):
            both(
                Address(Kind.FEDERATED_CREDENTIAL, credential_key(key, f"gh-{j}")),
                {
                    "identity": key,
                    "name": f"gh-{j}",
                    "issuer": "https://token.actions.githubusercontent.com",
                    "subject": f"repo:contoso/app{i}:ref:refs/heads/b{j}",
                    "audiences": ["api://AzureADTokenExchange"],
                },
                {},
            )
            scope = f"/subscriptions/{SANDBOX}/resourceGroups/rg-{i}"
            both(
                Address(Kind.ROLE_ASSIGNMENT, role_assignment_key(key, scope, roles[j])),
                {
                    "identity": key,
                    "roleDefinitionId": roles[j],
                    "scope": scope,
                    "description": None,
                    "condition": None,
                    "conditionVersion": None,
                },
                {"principalId": f"p-{i}"},
            )
        conn = Address(Kind.SERVICE_CONNECTION, f"contoso/platform/{name}")
        both(
            conn,
            {
                "organization": "contoso",
                "project": "platform",
                "name": name,
                "identity": key,
                "description": None,
                "subscriptionId": SANDBOX,
                "subscriptionName": "Sandbox",
                "scope": None,
                "sharedWith": [],
                "pipelinePermissions": "all",
            },
            {"servicePrincipalId": client, "tenantId": TENANT},
        )
    state = LiveState(live, role_definitions=world_catalogue(), tenant_id=TENANT)
    return DesiredState("me", desired), state


def test_a_thousand_identities_plan_in_sync_and_from_nothing() -> None:
    # speed is measured by `make bench`; this pins the result at that size
    desired, live = _big_world(1000)
    plan = make_plan(desired, live)
    assert plan.empty and plan.unchanged == len(desired.resources) == 8000
    empty = LiveState(role_definitions=world_catalogue(), tenant_id=TENANT)
    plan = make_plan(desired, empty)
    assert len(plan.changes) == 8000 and max(c.wave for c in plan.changes) == 2


def test_handmade_credential_for_a_connection_is_kept_under_its_name() -> None:
    plan = _plan("adoption_of_handmade_walkthrough")
    assert not _by_kind(plan, Kind.FEDERATED_CREDENTIAL)
    (notice,) = plan.notices
    assert "ado-pipeline-mi-federated" in notice.message
    assert notice.address is not None and notice.address.key.endswith("/ado-pipeline-mi-federated")


def test_restrict_keeps_the_named_objects_their_dependents_and_what_they_wait_for() -> None:
    import sys
    from pathlib import Path

    from reconciler.plan import restrict

    sys.path.insert(0, str(Path(__file__).parents[1] / "cases"))
    from caseload import load_case

    desired, live, _ = load_case("create_walkthrough_from_nothing")
    plan = make_plan(desired, live)
    assert len(plan.changes) == 4
    whole = restrict(plan, desired, ["identity.ado-pipeline-mi"])
    assert [c.address for c in whole.changes] == [c.address for c in plan.changes]
    assert whole.partial and whole.only == ("identity.ado-pipeline-mi",)
    assert restrict(plan, desired, []) == plan
    with pytest.raises(PlanError, match="is ambiguous") as caught:
        restrict(plan, desired, ["ado-pipeline-mi"])
    assert "\n  identity." in str(caught.value) and "\n  service_connection." in str(caught.value)
    with pytest.raises(PlanError, match="no identity or service_connection"):
        restrict(plan, desired, ["nope"])
    assert restrict(plan, desired, ["nope"], missing_ok=True).changes == ()
    (role,) = [c for c in plan.changes if c.address.kind.value == "role_assignment"]
    only_role = restrict(plan, desired, [str(role.address)])
    # a role assignment waits for its identity's creation: both, nothing else
    assert sorted(c.address.kind.value for c in only_role.changes) == [
        "identity",
        "role_assignment",
    ]
    assert all(
        set(c.depends_on) <= {d.address for d in only_role.changes} for c in only_role.changes
    )
