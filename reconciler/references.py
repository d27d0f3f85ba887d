"""What only live state can tell about the names in the specs: do they exist?

A misspelt project, pipeline, role, subscription or resource group passes ``validate`` (which
talks to no service) and would fail half-way through ``apply``. The planner asks this module
first, against what ``observe`` already read (projects, pipelines and role definitions are lists
the plan needs anyway; resource groups cost one list per subscription), and refuses the plan
with every problem located at the field that names the missing thing, with the closest existing
name when one is close. Pure: no I/O.

Only what was observed is judged: an organisation, subscription or catalogue that was not read
(a planner case without it, say) is not reported as missing.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

from reconciler.errors import Problem
from reconciler.model import DesiredState, Kind, LiveState, Resource, Source

# difflib's ratio: 'Serach'/'Search' 0.83, 'Contributer'/'Contributor' 0.91; unrelated names of
# similar length stay under 0.5
SUGGESTION_CUTOFF: Final = 0.75


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word`` (case-insensitive), as the candidate spells it, or
    None when none is close (``difflib`` ratio below ``SUGGESTION_CUTOFF``)."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    found = difflib.get_close_matches(word.lower(), list(by_lower), 1, SUGGESTION_CUTOFF)
    return by_lower[found[0]] if found else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    suggestion = closest(word, candidates)
    return f" (did you mean '{suggestion}'?)" if suggestion is not None else ""


def resource_group_of(scope: str) -> str | None:
    """``rg`` of ``/subscriptions/{sub}/resourceGroups/{rg}[/...]``, else None."""
    parts = scope.strip("/").split("/")
    if (
        len(parts) >= 4
        and parts[0].lower() == "subscriptions"
        and parts[2].lower() == ("resourcegroups")
    ):
        return parts[3]
    return None


class Report:
    """The problems found, each once, located at the field that names the missing thing."""

    def __init__(self) -> None:
        self.problems: dict[tuple[str, int, int, str, str], Problem] = {}

    def add(self, resource: Resource, field: str, message: str) -> None:
        where: Source | None = resource.fields.get(field) or resource.source
        if where is None:
            where = Source("<specs>", 1, 1, str(resource.address))
        path = where.path
        key = (where.file, where.line, where.column, path, message)
        self.problems.setdefault(key, Problem(where.file, where.line, where.column, path, message))


class ReferenceRules(Protocol):
    """What ``check_references`` asks of a kind (``reconciler.kinds.KindSpec``)."""

    plan_order: int

    def place(self, attrs: Mapping[str, Any]) -> Place | None: ...

    def check_references(
        self, resources: Iterable[Resource], live: LiveState, report: Report
    ) -> None: ...


# (subscription, its field, resource group or None, its field)
Place = tuple[str, str, str | None, str]


def check_references(
    desired: DesiredState, live: LiveState, kinds: Mapping[Kind, ReferenceRules]
) -> list[Problem]:
    """Every organisation, project (owning or shared), pipeline, role name, subscription and
    resource group the specs name that live state shows does not exist or cannot be read.

    ``kinds`` (``reconciler.kinds.REGISTRY``) tells each kind's subscription and resource group
    (``place``) and checks the rest of its names (``check_references``), in plan order.

    Returns the problems (``file:line:column`` of the field that names the missing thing, its
    path, and a message with a suggestion when a close name exists); empty when all exist.
    """
    report = Report()
    _check_subscriptions(desired, live, report, kinds)
    for spec in sorted(kinds.values(), key=lambda spec: spec.plan_order):
        by_kind = [r for r in desired.resources.values() if kinds[r.address.kind] is spec]
        spec.check_references(sorted(by_kind, key=lambda r: r.address.key), live, report)
    return list(report.problems.values())


# -- subscriptions and resource groups ----------------------------------------------------


def check_place(
    live: LiveState,
    report: Report,
    resource: Resource,
    subscription: str,
    sub_field: str,
    group: str | None,
    group_field: str,
) -> None:
    sub = subscription.lower()
    reason = live.subscription_errors.get(sub)
    if reason is not None:
        if reason.startswith("SubscriptionNotFound"):
            message = f"subscription {subscription} does not exist (SubscriptionNotFound)"
        else:
            message = (
                f"subscription {subscription} cannot be read by the signed-in caller ({reason})"
            )
        report.add(resource, sub_field, message + did_you_mean(sub, live.resource_groups))
        return
    names = live.resource_groups.get(sub)
    if group is None or names is None:
        return  # not read: nothing to judge
    if group.lower() in {n.lower() for n in names}:
        return
    report.add(
        resource,
        group_field,
        f"resource group '{group}' does not exist in subscription {subscription}, or the "
        f"signed-in caller cannot read it" + did_you_mean(group, names),
    )


def _check_subscriptions(
    desired: DesiredState, live: LiveState, report: Report, kinds: Mapping[Kind, ReferenceRules]
) -> None:
    if not live.resource_groups and not live.subscription_errors:
        return
    for resource in desired.resources.values():
        place = kinds[resource.address.kind].place(resource.attrs)
        if place is not None:
            check_place(live, report, resource, *place)
