from __future__ import annotations

import pytest

from reconciler.errors import PlanError
from reconciler.graph import restrict, waves


def test_waves_follow_the_longest_chain() -> None:
    edges = {"b": {"a"}, "c": {"b"}, "d": {"a"}, "e": {"c", "d"}}
    assert waves(edges, {"a", "b", "c", "d", "e"}) == {"a": 0, "b": 1, "d": 1, "c": 2, "e": 3}


def test_independent_nodes_share_wave_zero() -> None:
    assert waves({}, {"x", "y", "z"}) == {"x": 0, "y": 0, "z": 0}


def test_edges_to_nodes_outside_the_set_are_ignored() -> None:
    assert waves({"b": {"a", "elsewhere"}}, {"a", "b"}) == {"a": 0, "b": 1}


def test_a_cycle_is_a_plan_error_naming_its_nodes() -> None:
    with pytest.raises(PlanError, match="cycle") as info:
        waves({"a": {"b"}, "b": {"a"}}, {"a", "b"})
    assert "a" in str(info.value) and "b" in str(info.value)


def test_restrict_keeps_order_through_nodes_without_a_change() -> None:
    # c depends on b (no change) which depends on a: c must still come after a
    edges = {"c": {"b"}, "b": {"a"}}
    assert restrict(edges, {"a", "c"}) == {"a": set(), "c": {"a"}}


def test_restrict_drops_paths_that_reach_no_kept_node() -> None:
    edges = {"c": {"b"}, "b": {"x"}}
    assert restrict(edges, {"c", "a"}) == {"c": set(), "a": set()}


def test_restrict_survives_a_cycle_among_dropped_nodes() -> None:
    edges = {"c": {"b"}, "b": {"d"}, "d": {"b", "a"}}
    assert restrict(edges, {"a", "c"}) == {"a": set(), "c": {"a"}}
