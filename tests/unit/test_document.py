from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.errors import PlanError
from reconciler.model import UNKNOWN, Address, Kind, Ownership, Source
from reconciler.plan import Action, Change, FieldChange, Notice, NoticeLevel, Plan, Reason
from reconciler.render.document import (
    FORMAT_VERSION,
    UNKNOWN_TEXT,
    dumps,
    first_difference,
    from_document,
    loads,
    to_document,
)

IDENTITY = Address(Kind.IDENTITY, "s/rg/mi")
CONNECTION = Address(Kind.SERVICE_CONNECTION, "org/project/conn")


def _plan() -> Plan:
    return Plan(
        owner="platform-team",
        changes=(
            Change(
                IDENTITY,
                Action.DELETE_THEN_CREATE,
                Reason.IMMUTABLE_CHANGED,
                "location cannot change in place",
                before={"location": "westeurope", "tags": {"a": "1"}},
                after={"location": "northeurope", "tags": {"a": "1"}},
                fields=(FieldChange("location", "westeurope", "northeurope"),),
                ownership=Ownership.OWNED,
                source=Source("specs/a.yaml", 3, 5, "identities[0]"),
                destructive=True,
            ),
            Change(
                CONNECTION,
                Action.UPDATE,
                Reason.DEPENDENCY_REPLACED,
                before={"servicePrincipalId": "x", "sharedWith": ["b"]},
                after={"servicePrincipalId": UNKNOWN, "sharedWith": ["b"]},
                fields=(FieldChange("servicePrincipalId", "x", UNKNOWN),),
                unknowns=("servicePrincipalId",),
                ownership=Ownership.OWNED,
                depends_on=(IDENTITY,),
                wave=1,
            ),
        ),
        notices=(Notice(NoticeLevel.WARNING, "look", IDENTITY), Notice(NoticeLevel.INFO, "fyi")),
        unchanged=7,
        fingerprints={str(IDENTITY): "sha256:1"},
        spec_digest="sha256:abc",
    )


def test_round_trip_is_exact_through_json() -> None:
    plan = _plan()
    document = json.loads(dumps(to_document(plan)))
    assert from_document(document) == plan


def test_unknown_is_spelled_out_everywhere() -> None:
    change = to_document(_plan())["changes"][1]
    assert change["after"]["servicePrincipalId"] == UNKNOWN_TEXT
    assert change["fields"][0]["after"] == UNKNOWN_TEXT
    assert change["unknowns"] == ["servicePrincipalId"]


def test_document_shape_and_summary() -> None:
    document = to_document(_plan(), mode="drift")
    assert document["format_version"] == FORMAT_VERSION
    assert document["mode"] == "drift"
    assert document["summary"] == {
        "create": 0,
        "update": 1,
        "replace": 1,
        "delete": 0,
        "unchanged": 7,
        "destructive": 1,
        "notices": 2,
        "total": 2,
    }
    assert document["changes"][0]["source"] == {
        "file": "specs/a.yaml",
        "line": 3,
        "column": 5,
        "path": "identities[0]",
    }
    assert document["changes"][1]["depends_on"] == [str(IDENTITY)]


def test_dumps_is_stable() -> None:
    assert dumps(to_document(_plan())) == dumps(to_document(_plan()))
    text = dumps(to_document(_plan()))
    assert text.endswith("\n") and "timestamp" not in text


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        to_document(_plan(), mode="apply")


def test_extra_keys_are_tolerated() -> None:
    document = to_document(_plan())
    document["spec_paths"] = ["specs"]
    assert from_document(document) == _plan()


@pytest.mark.parametrize("version", ["2.0", "", "0.9"])
def test_other_major_versions_are_refused(version: str) -> None:
    document = to_document(_plan())
    document["format_version"] = version
    with pytest.raises(PlanError, match="not supported"):
        from_document(document)


def test_minor_versions_are_read() -> None:
    document = to_document(_plan())
    document["format_version"] = "1.7"
    assert from_document(document).owner == "platform-team"


def test_loads_rejects_what_is_not_a_plan() -> None:
    with pytest.raises(PlanError, match="line 1"):
        loads("{not json")
    with pytest.raises(PlanError, match="object"):
        loads("[]")
    with pytest.raises(PlanError, match="not a valid plan document"):
        from_document({"format_version": "1.0"})
    assert loads(dumps(to_document(_plan())))["owner"] == "platform-team"


# -- a saved document against a fresh plan ----------------------------------------------------


def _saved() -> dict[str, Any]:
    # what apply FILE reads: the document after a trip through JSON
    document: dict[str, Any] = json.loads(dumps(to_document(_plan())))
    return document


def test_a_saved_plan_equals_its_fresh_plan_whatever_its_folder_and_notices() -> None:
    saved = _saved()
    assert first_difference(saved, to_document(_plan())) is None
    # spelled from another folder, notices in another order, extra keys: nothing that runs
    for change in saved["changes"]:
        if change["source"]:
            change["source"]["file"] = "/elsewhere/checkout/" + change["source"]["file"]
        change["note"] = "a key this version does not know"
    saved["notices"] = list(reversed(saved["notices"]))
    saved["summary"] = {}
    assert first_difference(saved, to_document(_plan())) is None


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda c: c.update(destructive=1), "change 1 (identity.s/rg/mi): destructive differs"),
        (lambda c: c.update(action="delete"), "action differs"),
        (lambda c: c["after"].update(location="westus"), "after.location differs"),
        (lambda c: c.update(unknowns=["principalId"]), "unknowns differs"),
        (lambda c: c["source"].update(line=99), "source.line differs"),
        (lambda c: c.pop("ownership"), "ownership differs: the saved plan has (absent)"),
    ],
)
def test_every_field_that_decides_what_runs_is_compared(
    edit: Callable[[dict[str, Any]], object], named: str
) -> None:
    saved = _saved()
    edit(saved["changes"][0])
    found = first_difference(saved, to_document(_plan()))
    assert found is not None and named in found


def test_added_removed_and_reordered_changes_are_named() -> None:
    fresh = to_document(_plan())
    saved = _saved()
    first, second = saved["changes"]
    saved["changes"] = [second, first]
    assert "change 1 (service_connection.org/project/conn): out of order" in str(
        first_difference(saved, fresh)
    )
    saved["changes"] = [first]
    assert "change 2 (service_connection.org/project/conn): a fresh plan would" in str(
        first_difference(saved, fresh)
    )
    saved["changes"] = [first, second, {**second, "address": "identity.s/rg/other"}]
    assert "change 3 (identity.s/rg/other): not in a fresh plan" in str(
        first_difference(saved, fresh)
    )
    saved["changes"] = [first, second]
    saved["owner"] = "someone-else"
    assert "owner" in str(first_difference(saved, fresh))
