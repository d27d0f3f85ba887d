"""One registry per half of a kind (rules, executor): every kind is in both, everything that
differs by kind is asked of them, and a kind missing from one is an error, never a fallback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from reconciler import apply, progress
from reconciler.changes import Action, Change, Plan, Reason
from reconciler.errors import PermanentError, PlanError
from reconciler.kinds import REGISTRY, UnknownKindError, kind_of, rules_named
from reconciler.kinds.executors import EXECUTORS, ApplyContext, executor_for, lane, perform
from reconciler.model import Address, Kind, LiveState
from reconciler.plan import make_plan
from reconciler.render import render
from reconciler.render.document import from_document, to_document

sys.path.insert(0, str(Path(__file__).parents[1] / "cases"))
from caseload import load_case

CONNECTION = Address(Kind.SERVICE_CONNECTION, "contoso/platform/sc")
CONNECTION_ATTRS = {"organization": "contoso", "project": "platform", "name": "sc", "id": "e1"}


def test_every_kind_has_rules_and_an_executor_under_its_own_name() -> None:
    assert set(REGISTRY) == set(EXECUTORS) == set(Kind)
    for kind in Kind:
        assert kind_of(kind).kind is kind
        assert executor_for(kind).kind is kind
        assert rules_named(kind.value) is REGISTRY[kind]
    assert rules_named("storage_account") is None


def test_an_unregistered_kind_is_an_error_not_another_kinds_lane(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    change = Change(CONNECTION, Action.CREATE, Reason.NEW, after=CONNECTION_ATTRS)
    assert lane(change) == "devops"
    monkeypatch.delitem(EXECUTORS, Kind.SERVICE_CONNECTION)
    with pytest.raises(UnknownKindError, match="no executor registered for kind"):
        lane(change)
    plan = apply.Plan(owner="team", changes=(change,))
    with pytest.raises(UnknownKindError):
        apply.apply_plan(plan, lambda c: {}, lane=lane)
    monkeypatch.delitem(REGISTRY, Kind.SERVICE_CONNECTION)
    with pytest.raises(UnknownKindError, match="no rules registered for kind"):
        progress.display(CONNECTION)


@pytest.mark.parametrize("action", [Action.DELETE_THEN_CREATE, Action.CREATE_THEN_DELETE])
def test_a_connection_is_never_replaced_even_from_a_hand_edited_plan(action: Action) -> None:
    """The planner never plans it (no field is immutable; a replaced identity's connection is
    updated to the new client id); a plan edited to ask for it fails before any request."""
    assert REGISTRY[Kind.SERVICE_CONNECTION].replace_action is None
    ctx = ApplyContext(services=None, live=LiveState(resources={}), owner="team")  # type: ignore[arg-type]
    change = Change(
        CONNECTION, action, Reason.FIELDS_CHANGED, before=CONNECTION_ATTRS, after=CONNECTION_ATTRS
    )
    with pytest.raises(
        PermanentError, match="which this tool never plans for a service_connection"
    ) as err:
        perform(change, ctx)
    assert err.value.code == "Plan"


# -- a kind names the operation of an update --------------------------------------------------

MIGRATE = "migrate issuer"


def _plan_with_operation(monkeypatch: pytest.MonkeyPatch) -> Plan:
    """The connection kind, made to name an operation for any update (what the issuer
    migration of the estate issue would do for an issuer change), planned on a case whose one
    change is a connection update."""
    rules = REGISTRY[Kind.SERVICE_CONNECTION]
    monkeypatch.setattr(rules, "operations", {MIGRATE: "its issuer moves to Microsoft Entra ID"})
    monkeypatch.setattr(rules, "operation_of", lambda fields, before, after: MIGRATE)
    desired, live, _ = load_case("service_principal_id_mismatch_update")
    return make_plan(desired, live)


def test_an_update_carries_the_operation_its_kind_names_into_the_document_and_renders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = _plan_with_operation(monkeypatch)
    [change] = plan.changes
    assert (change.action, change.operation) == (Action.UPDATE, MIGRATE)
    document = to_document(plan)
    assert document["changes"][0]["operation"] == MIGRATE
    assert from_document(document).changes[0].operation == MIGRATE
    text = render(document, "text")
    assert "will be updated in place: its issuer moves to Microsoft Entra ID" in text
    assert "its issuer moves to Microsoft Entra ID" in render(document, "markdown")


def test_a_plain_update_has_no_operation_key(monkeypatch: pytest.MonkeyPatch) -> None:
    desired, live, _ = load_case("service_principal_id_mismatch_update")
    document = to_document(make_plan(desired, live))
    assert "operation" not in document["changes"][0]


def test_an_operation_the_rules_do_not_list_is_refused_by_the_planner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rules = REGISTRY[Kind.SERVICE_CONNECTION]
    monkeypatch.setattr(rules, "operation_of", lambda fields, before, after: "rename")
    desired, live, _ = load_case("service_principal_id_mismatch_update")
    with pytest.raises(
        PlanError, match="rules name the operation 'rename', which they do not list"
    ):
        make_plan(desired, live)


@pytest.mark.parametrize(
    ("action", "operation"), [(Action.UPDATE, "rename"), (Action.CREATE, MIGRATE)]
)
def test_apply_refuses_an_operation_the_kind_does_not_have(
    monkeypatch: pytest.MonkeyPatch, action: Action, operation: str
) -> None:
    rules = REGISTRY[Kind.SERVICE_CONNECTION]
    monkeypatch.setattr(rules, "operations", {MIGRATE: "its issuer moves to Microsoft Entra ID"})
    ctx = ApplyContext(services=None, live=LiveState(resources={}), owner="team")  # type: ignore[arg-type]
    change = Change(
        CONNECTION,
        action,
        Reason.FIELDS_CHANGED,
        before=CONNECTION_ATTRS,
        after=CONNECTION_ATTRS,
        operation=operation,
    )
    with pytest.raises(PermanentError, match="names the operation") as err:
        perform(change, ctx)
    assert err.value.code == "Plan"
