"""One registry per half of a kind (rules, executor): every kind is in both, everything that
differs by kind is asked of them, and a kind missing from one is an error, never a fallback."""

from __future__ import annotations

import pytest

from reconciler import apply, progress
from reconciler.changes import Action, Change, Reason
from reconciler.errors import PermanentError
from reconciler.kinds import REGISTRY, UnknownKindError, kind_of, rules_named
from reconciler.kinds.executors import EXECUTORS, ApplyContext, executor_for, lane, perform
from reconciler.model import Address, Kind, LiveState

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
