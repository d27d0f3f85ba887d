"""Steps of multi-request changes: resume, budgets, naming; and the connection body and
owning-project rules (issue 9 §6, issue 10 §2). No network."""

from __future__ import annotations

import random
from typing import Any

import pytest

from reconciler.errors import (
    PermanentError,
    StepPermanentError,
    StepTransientError,
    TransientError,
)
from reconciler.kinds.executors import ApplyContext
from reconciler.kinds.executors.context import step as _step
from reconciler.kinds.executors.service_connection import connection_body
from reconciler.kinds.executors.service_connection import owning_project as _owning_project
from reconciler.kinds.service_connection import endpoint_gone
from reconciler.model import Address, Kind, LiveState
from reconciler.plan import Action, Change, Reason
from reconciler.retry import FakeClock, RetryPolicy, call_with_retry, steps_completed

CONN = Address(Kind.SERVICE_CONNECTION, "contoso/platform/sc")


def _ctx() -> ApplyContext:
    return ApplyContext(services=None, live=LiveState(resources={}), owner="team")  # type: ignore[arg-type]


def _change() -> Change:
    return Change(CONN, Action.CREATE, Reason.NEW, after={"name": "sc"})


def test_a_done_step_is_not_run_again_and_a_later_failure_names_what_was_done() -> None:
    ctx, change = _ctx(), _change()
    calls: list[str] = []

    def create() -> dict[str, str]:
        calls.append("create")
        return {"id": "e1"}

    def permissions() -> None:
        calls.append("permissions")
        raise TransientError("busy", code="TF400733", status=429, delay=3.0)

    def run() -> None:
        _step(ctx, change, "create", create)
        _step(ctx, change, "wait until ready", lambda: {"id": "e1", "isReady": True})
        _step(ctx, change, "set pipeline permissions", permissions)

    for _ in range(2):
        with pytest.raises(StepTransientError) as err:
            run()
    assert calls == ["create", "permissions", "permissions"]
    exc = err.value
    assert str(exc) == "created, ready; set pipeline permissions failed: busy"
    assert exc.step == "set pipeline permissions"
    assert exc.completed == ("create", "wait until ready")
    assert (exc.code, exc.status, exc.delay) == ("TF400733", 429, 3.0)


def test_a_first_step_failure_keeps_its_type_and_names_the_step() -> None:
    ctx, change = _ctx(), _change()

    def boom() -> None:
        raise PermanentError("no", code="AccessDenied")

    with pytest.raises(PermanentError) as err:
        _step(ctx, change, "create", boom)
    assert type(err.value) is PermanentError
    assert str(err.value) == "no" and err.value.step == "create" and err.value.completed == ()


def test_a_permanent_later_failure_stays_permanent() -> None:
    ctx, change = _ctx(), _change()
    _step(ctx, change, "create", lambda: {"id": "e1"})

    def boom() -> None:
        raise PermanentError("pipeline(s) x not found", code="PipelineNotFound")

    with pytest.raises(StepPermanentError) as err:
        _step(ctx, change, "set pipeline permissions", boom)
    assert err.value.code == "PipelineNotFound"
    assert str(err.value) == "created; set pipeline permissions failed: pipeline(s) x not found"


def test_two_changes_at_one_address_keep_their_own_steps() -> None:
    ctx = _ctx()
    first, second = _change(), _change()
    assert _step(ctx, first, "create", lambda: 1) == 1
    assert _step(ctx, second, "create", lambda: 2) == 2
    assert _step(ctx, first, "create", lambda: 3) == 1


def test_retry_gives_each_step_a_budget_of_its_own() -> None:
    """Three steps that each fail three times in a row: 4 attempts per step are enough when
    progress restarts the count, and not without."""
    failures = {"a": 3, "b": 3, "c": 3}
    done: list[str] = []

    def attempt() -> str:
        for step in ("a", "b", "c"):
            if step in done:
                continue
            if failures[step]:
                failures[step] -= 1
                raise StepTransientError("later", step=step, completed=tuple(done), delay=0.0)
            done.append(step)
        return "ok"

    policy = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.01)
    assert (
        call_with_retry(
            attempt,
            clock=FakeClock(),
            policy=policy,
            rng=random.Random(1),
            progress=steps_completed,
        )
        == "ok"
    )
    failures.update(a=3, b=3, c=3)
    done.clear()
    with pytest.raises(StepTransientError):
        call_with_retry(attempt, clock=FakeClock(), policy=policy, rng=random.Random(1))


def test_connection_body_carries_nothing_the_service_generates() -> None:
    current: dict[str, Any] = {
        "id": "e1",
        "name": "sc",
        "type": "azurerm",
        "url": "https://management.azure.com/",
        "owner": "library",
        "createdBy": {"id": "u1"},
        "isReady": True,
        "isShared": True,
        "operationStatus": {"state": "Ready"},
        "authorization": {
            "scheme": "WorkloadIdentityFederation",
            "parameters": {
                "serviceprincipalid": "old",
                "tenantid": "t",
                "workloadIdentityFederationIssuer": "https://login.microsoftonline.com/t/v2.0",
                "workloadIdentityFederationSubject": "/eid1/...",
                "workloadIdentityFederationIssuerType": "EntraID",
            },
        },
        "data": {"environment": "AzureUSGovernment", "identityType": "ManagedIdentity"},
        "serviceEndpointProjectReferences": [
            {"projectReference": {"id": "p-team-a", "name": "team-a"}, "name": "sc"},
            {"projectReference": {"id": "p-platform", "name": "platform"}, "name": "sc"},
        ],
    }
    after = {
        "name": "sc",
        "project": "platform",
        "description": "Deploys",
        "subscriptionId": "sub",
        "subscriptionName": "Sandbox",
        "scope": None,
    }
    body = connection_body(current, after, "team", "client", "tenant", "p-platform")
    assert set(body) == {
        "name",
        "type",
        "url",
        "owner",
        "description",
        "authorization",
        "data",
        "serviceEndpointProjectReferences",
    }
    assert body["authorization"] == {
        "scheme": "WorkloadIdentityFederation",
        "parameters": {"serviceprincipalid": "client", "tenantid": "tenant"},
    }
    assert body["data"] == {
        "subscriptionId": "sub",
        "subscriptionName": "Sandbox",
        "environment": "AzureUSGovernment",
        "scopeLevel": "Subscription",
        "creationMode": "Manual",
    }
    (ref,) = body["serviceEndpointProjectReferences"]
    assert ref["projectReference"]["id"] == "p-platform"
    assert ref["description"] == "Deploys [reconciler-owner: team]"


@pytest.mark.parametrize(
    "answer",
    [None, {"id": None, "name": "sc"}, {"id": "e1", "authorization": None}, {"id": "e1"}],
)
def test_null_and_partial_answers_mean_gone(answer: Any) -> None:
    assert endpoint_gone(answer)


def test_a_whole_connection_is_not_gone() -> None:
    assert not endpoint_gone(
        {"id": "e1", "authorization": {"scheme": "WorkloadIdentityFederation"}}
    )


NAMES = {"p1": "platform", "p2": "team-a", "p3": "legacy-app"}


def _endpoint(refs: list[str], subject: str = "/eid1/x", name: str = "sc") -> dict[str, Any]:
    return {
        "id": "e1",
        "name": name,
        "authorization": {"parameters": {"workloadIdentityFederationSubject": subject}},
        # the reference's own name may be missing: the project list names it
        "serviceEndpointProjectReferences": [{"projectReference": {"id": p}} for p in refs],
    }


def test_owning_project_is_the_declared_one_in_any_order() -> None:
    declared = {"contoso/platform/sc"}
    for refs in (["p1", "p2"], ["p2", "p1"]):
        for listed in ("platform", "team-a"):
            assert (
                _owning_project(_endpoint(refs), "contoso", listed, NAMES, declared) == "platform"
            )


def test_owning_project_of_an_undeclared_legacy_connection_is_in_its_subject() -> None:
    endpoint = _endpoint(["p2", "p3"], subject="sc://contoso/legacy-app/sc")
    assert _owning_project(endpoint, "contoso", "team-a", NAMES, set()) == "legacy-app"


def test_owning_project_otherwise_does_not_depend_on_reference_order() -> None:
    found = {
        _owning_project(_endpoint(refs), "contoso", "platform", NAMES, set())
        for refs in (["p1", "p2"], ["p2", "p1"])
    }
    assert found == {"platform"}
    assert _owning_project(_endpoint([]), "contoso", "platform", NAMES, set()) is None
