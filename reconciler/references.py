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
from collections.abc import Iterable
from typing import Final

from reconciler.errors import Problem
from reconciler.model import DesiredState, Kind, LiveState, Resource, RoleDefinition, Source
from reconciler.normalize import catalogue, role_guid, subscription_of

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


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
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


class _Report:
    def __init__(self) -> None:
        self.problems: dict[tuple[str, int, int, str, str], Problem] = {}

    def add(self, resource: Resource, field: str, message: str) -> None:
        where: Source | None = resource.fields.get(field) or resource.source
        if where is None:
            where = Source("<specs>", 1, 1, str(resource.address))
        path = where.path
        key = (where.file, where.line, where.column, path, message)
        self.problems.setdefault(key, Problem(where.file, where.line, where.column, path, message))


def check_references(desired: DesiredState, live: LiveState) -> list[Problem]:
    """Every organisation, project (owning or shared), pipeline, role name, subscription and
    resource group the specs name that live state shows does not exist or cannot be read.

    Returns the problems (``file:line:column`` of the field that names the missing thing, its
    path, and a message with a suggestion when a close name exists); empty when all exist.
    """
    report = _Report()
    _check_subscriptions(desired, live, report)
    _check_devops(desired, live, report)
    _check_roles(desired, live, report)
    return list(report.problems.values())


# -- subscriptions and resource groups ----------------------------------------------------


def _check_place(
    live: LiveState,
    report: _Report,
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
        report.add(resource, sub_field, message + _did_you_mean(sub, live.resource_groups))
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
        f"signed-in caller cannot read it" + _did_you_mean(group, names),
    )


def _check_subscriptions(desired: DesiredState, live: LiveState, report: _Report) -> None:
    if not live.resource_groups and not live.subscription_errors:
        return
    for resource in desired.resources.values():
        attrs = resource.attrs
        kind = resource.address.kind
        if kind is Kind.IDENTITY:
            _check_place(
                live,
                report,
                resource,
                str(attrs["subscription"]),
                "subscription",
                str(attrs["resourceGroup"]),
                "resourceGroup",
            )
        elif kind is Kind.ROLE_ASSIGNMENT:
            scope = str(attrs.get("scope") or "")
            sub = subscription_of(scope)
            if sub is not None:
                group = resource_group_of(scope)
                _check_place(live, report, resource, sub, "scope", group, "scope")
        elif kind is Kind.SERVICE_CONNECTION:
            connection_scope = attrs.get("scope")
            _check_place(
                live,
                report,
                resource,
                str(attrs["subscriptionId"]),
                "subscription",
                resource_group_of(str(connection_scope)) if connection_scope else None,
                "resourceGroup",
            )


# -- Azure DevOps ---------------------------------------------------------------------------


def _check_devops(desired: DesiredState, live: LiveState, report: _Report) -> None:
    for resource in desired.of_kind(Kind.SERVICE_CONNECTION):
        attrs = resource.attrs
        org = str(attrs["organization"])
        reason = live.organization_errors.get(org.lower())
        if reason is not None:
            report.add(
                resource,
                "organization",
                f"Azure DevOps organization '{org}' does not exist or the signed-in caller "
                f"cannot read it ({reason})" + _did_you_mean(org, live.organizations),
            )
            continue
        if org.lower() not in live.organizations:
            continue  # not read
        names = live.project_names.get(org.lower(), ())
        known = {n.lower() for n in names}
        project = str(attrs["project"])
        missing = project.lower() not in known
        if missing:
            report.add(
                resource,
                "project",
                f"project '{project}' does not exist in Azure DevOps organization '{org}'"
                + _did_you_mean(project, names),
            )
        for other in attrs.get("sharedWith") or ():
            if str(other).lower() not in known:
                report.add(
                    resource,
                    f"sharedWith/{str(other).lower()}",
                    f"project '{other}' (to share the connection with) does not exist in Azure "
                    f"DevOps organization '{org}'" + _did_you_mean(str(other), names),
                )
        permissions = attrs.get("pipelinePermissions")
        if missing or not isinstance(permissions, list | tuple):
            continue
        pipelines = live.pipelines.get(f"{org}/{project}".lower())
        if pipelines is None:
            continue  # not read
        present = {name.lower() for name in pipelines}
        for pipeline in permissions:
            if str(pipeline).lower() not in present:
                report.add(
                    resource,
                    f"pipelinePermissions/{str(pipeline).lower()}",
                    f"pipeline '{pipeline}' does not exist in project '{project}' of "
                    f"'{org}'" + _did_you_mean(str(pipeline), pipelines),
                )


# -- roles ----------------------------------------------------------------------------------


def _observed_catalogue(live: LiveState, scope: str) -> tuple[RoleDefinition, ...] | None:
    sub = subscription_of(scope)
    if sub is not None:
        if sub in live.subscription_errors or sub not in live.role_definitions:
            return None  # the subscription is reported instead, or was not read
        return catalogue(live, scope)
    return catalogue(live, scope) if live.role_definitions else None


def _check_roles(desired: DesiredState, live: LiveState, report: _Report) -> None:
    for resource in desired.of_kind(Kind.ROLE_ASSIGNMENT):
        attrs = resource.attrs
        role = str(attrs.get("role") or "")
        if attrs.get("roleDefinitionId") or not role or role_guid(role) is not None:
            continue
        scope = str(attrs.get("scope") or "")
        definitions = _observed_catalogue(live, scope)
        if definitions is None:
            continue
        if any(d.name.lower() == role.lower() for d in definitions):
            continue
        hint = _did_you_mean(role, (d.name for d in definitions)) or (
            " (give a built-in or custom role name, a GUID or a full role id)"
        )
        report.add(
            resource,
            "role",
            f"unknown role '{role}': no role definition with that name is assignable at "
            f"{scope}" + hint,
        )
