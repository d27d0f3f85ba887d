"""Dependency order: a topological sort grouped into waves, with graphlib.

Generic over hashable, orderable nodes (the planner uses ``Address``). ``edges[n]`` is the set of
nodes that must be done before ``n``. A cycle is a planning error that names the nodes involved.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from graphlib import CycleError, TopologicalSorter
from typing import Any, Protocol, TypeVar

from reconciler.errors import PlanError


class _Orderable(Hashable, Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


N = TypeVar("N", bound=_Orderable)


def restrict(edges: Mapping[N, Collection[N]], keep: Collection[N]) -> dict[N, set[N]]:
    """The edges between ``keep`` nodes, following paths through nodes that are not kept.

    A change can depend on another through a resource that has no change of its own (a no-op
    connection between a new role assignment and its new credential): the order must survive.
    """
    memo: dict[N, set[N]] = {}

    def reach(node: N, trail: frozenset[N]) -> set[N]:
        if node in memo:
            return memo[node]
        found: set[N] = set()
        for dep in edges.get(node, ()):
            if dep in trail:
                continue  # a cycle: reported by waves() on the kept graph if it matters
            if dep in keep:
                found.add(dep)
            else:
                found |= reach(dep, trail | {dep})
        memo[node] = found
        return found

    return {node: reach(node, frozenset({node})) - {node} for node in keep}


def waves(edges: Mapping[N, Collection[N]], nodes: Collection[N]) -> dict[N, int]:
    """Wave of every node: 0 without dependencies, else 1 + the highest wave it depends on."""
    sorter: TopologicalSorter[N] = TopologicalSorter()
    for node in nodes:
        sorter.add(node, *[d for d in edges.get(node, ()) if d in nodes])
    try:
        order = list(sorter.static_order())
    except CycleError as exc:
        cycle = exc.args[1] if len(exc.args) > 1 else []
        raise PlanError(
            "the changes depend on each other in a cycle: "
            + " -> ".join(str(n) for n in cycle)
            + " (for example two federated credentials swapping issuer and subject; "
            "split the change over two runs)"
        ) from exc
    wave: dict[N, int] = {}
    for node in order:
        deps = [wave[d] for d in edges.get(node, ()) if d in wave]
        wave[node] = 1 + max(deps) if deps else 0
    return {n: wave[n] for n in nodes}
