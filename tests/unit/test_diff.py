from __future__ import annotations

from reconciler.diff import diff_fields
from reconciler.model import UNKNOWN
from reconciler.plan import FieldChange


def test_equal_projections_have_no_changes() -> None:
    a = {"tags": {"x": "1"}, "location": "westeurope"}
    assert diff_fields(a, dict(a), ["tags", "location"]) == ()


def test_tags_are_reported_per_key() -> None:
    before = {"tags": {"keep": "1", "old": "2", "moved": "a"}}
    after = {"tags": {"keep": "1", "new": "3", "moved": "b"}}
    assert diff_fields(before, after, ["tags"]) == (
        FieldChange("tags.moved", "a", "b"),
        FieldChange("tags.new", None, "3"),
        FieldChange("tags.old", "2", None),
    )


def test_lists_are_reported_whole() -> None:
    assert diff_fields({"a": ["x", "y"]}, {"a": ["x"]}, ["a"]) == (
        FieldChange("a", ["x", "y"], ["x"]),
    )


def test_only_declared_fields_are_compared() -> None:
    assert diff_fields({"a": 1, "id": "live"}, {"a": 1, "id": "other"}, ["a"]) == ()


def test_unknown_is_always_a_change_unless_both_unknown() -> None:
    assert diff_fields({"s": "x"}, {"s": UNKNOWN}, ["s"]) == (FieldChange("s", "x", UNKNOWN),)
    assert diff_fields({"s": UNKNOWN}, {"s": UNKNOWN}, ["s"]) == ()


def test_shown_values_keep_the_users_spelling() -> None:
    changes = diff_fields(
        {"scope": "/a"},
        {"scope": "/b"},
        ["scope"],
        shown_before={"scope": "/A"},
        shown_after={"scope": "/B"},
    )
    assert changes == (FieldChange("scope", "/A", "/B"),)


def test_type_change_of_a_mapping_field_is_reported_whole() -> None:
    assert diff_fields({"t": None}, {"t": {"a": "1"}}, ["t"]) == (
        FieldChange("t", None, {"a": "1"}),
    )
