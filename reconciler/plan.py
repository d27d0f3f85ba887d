"""``make_plan``: desired and live state in, the ordered plan out (values in ``changes.py``).

Pure: no I/O. The plan's values live in ``reconciler.changes`` and are re-exported here for
the callers that read them together with ``make_plan``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from reconciler import graph
from reconciler.changes import (
    Action,
    Change,
    FieldChange,
    Notice,
    NoticeLevel,
    Plan,
    Reason,
)
from reconciler.diff import diff_fields
from reconciler.errors import LiveReferenceError, PlanError
from reconciler.kinds import REGISTRY, KindSpec, kind_of
from reconciler.kinds.base import DELETES, unknowns
from reconciler.model import (
    Address,
    DesiredState,
    Kind,
    LiveResource,
    LiveState,
    Ownership,
    Resource,
)
from reconciler.ownership import classify
from reconciler.references import check_references

__all__ = [
    "Action",
    "Change",
    "FieldChange",
    "Notice",
    "NoticeLevel",
    "Plan",
    "Reason",
    "make_plan",
    "name_roles",
    "restrict",
]

# --- planning -------------------------------------------------------------------------------
#
# make_plan runs in passes, identities first, because what happens to an identity (created,
# replaced) decides what its dependents can know: a connection's servicePrincipalId, a role
# assignment's principal, whether credentials are recreated.


def name_roles(plan: Plan, live: LiveState, builtin: Mapping[str, str] | None = None) -> Plan:
    """``plan`` with each role assignment change's ``role_name`` filled in from the live role
    definitions it was planned against, else from ``builtin`` (GUID -> name of Azure's
    built-in roles, the same in every tenant): a pruned assignment may sit in a subscription
    whose catalogue the plan had no reason to read. Pure: the catalogues are passed in."""
    names: dict[str, str] = {}
    for definitions in live.role_definitions.values():
        for definition in definitions:
            names.setdefault(definition.guid.lower(), definition.name)
    for guid, name in (builtin or {}).items():
        names.setdefault(guid.lower(), name)
    if not names:
        return plan
    changes = []
    for change in plan.changes:
        role = kind_of(change.address.kind).role_guid(change.after or change.before or {})
        if role is not None and change.role_name is None and role in names:
            change = replace(change, role_name=names[role])
        changes.append(change)
    return replace(plan, changes=tuple(changes))


def make_plan(
    desired: DesiredState, live: LiveState, *, force: bool = False, spec_digest: str = ""
) -> Plan:
    """Diff the specs against live state into an ordered plan. Pure: no I/O.

    Raises ``LiveReferenceError`` (a ``PlanError``) listing every organisation, project,
    pipeline, role, subscription or resource group the specs name that live state lacks;
    ``PlanError`` for an ambiguous role name, an object another owner marked (unless
    ``force``), a hard Azure limit the plan would exceed, or an order that cannot exist.
    """
    problems = check_references(desired, live, REGISTRY)
    if problems:
        raise LiveReferenceError(problems)
    for spec in REGISTRY.values():
        desired = spec.resolve(desired, live)
    planner = _Planner(desired, live, force=force)
    return planner.run(spec_digest)


class _Planner:
    """The generic planner: matches desired and live objects, classifies ownership, and asks
    each kind's rules (``reconciler.kinds``) what the rest means. It is the ``PlanView`` the
    rules see."""

    def __init__(self, desired: DesiredState, live: LiveState, *, force: bool) -> None:
        self.desired = desired
        self.live = live
        self.owner = desired.owner
        self.force = force
        self.changes: dict[Address, Change] = {}
        self.notices: list[Notice] = []
        self.conflicts: list[str] = []
        self.unchanged = 0
        self.fingerprints: dict[str, str] = {}
        self.created: set[Address] = set()  # created by this plan
        self.replaced: set[Address] = set()  # replaced by this plan
        self.adopted: set[Address] = set()  # taken over (unmarked or forced)
        self.memo: dict[str, Any] = {}
        # indexed once: DesiredState/LiveState.of_kind sort everything on every call
        self.desired_of: dict[Kind, list[Resource]] = _by_kind(desired.resources)
        self.live_of: dict[Kind, list[LiveResource]] = _by_kind(live.resources)
        # every kind's rules, in the order kinds are planned
        self.kinds = sorted(REGISTRY.values(), key=lambda spec: spec.plan_order)

    # -- passes ---------------------------------------------------------------------------

    def run(self, spec_digest: str) -> Plan:
        for spec in self.kinds:
            spec.prepare(self)
        for spec in self.kinds:
            for resource in self.desired_of[spec.kind]:
                self._plan_desired(resource)
        for address, current in sorted(self.live.resources.items(), key=_address_order):
            if address not in self.desired.resources:
                ownership = classify(current.owner, self.owner)
                kind_of(address.kind).plan_live_only(current, ownership, self)
        if self.conflicts:
            raise PlanError("\n".join(self.conflicts))
        for checks in ("conflicts", "checks"):
            problems = [p for spec in self.kinds for p in getattr(spec, checks)(self)]
            if problems:
                raise PlanError("\n".join(problems))
        ordered = self._order()
        return Plan(
            owner=self.owner,
            changes=ordered,
            notices=tuple(sorted(self.notices, key=_notice_sort_key)),
            unchanged=self.unchanged,
            fingerprints=dict(sorted(self.fingerprints.items())),
            spec_digest=spec_digest,
        )

    def _plan_desired(self, resource: Resource) -> None:
        address = resource.address
        spec = kind_of(address.kind)
        after = dict(resource.attrs)
        spec.enrich(address, after, self)
        current = self.live.resources.get(address)
        if current is None:
            self.created.add(address)
            self.add(
                Change(
                    address,
                    Action.CREATE,
                    Reason.NEW,
                    after=after,
                    unknowns=unknowns(after),
                    source=resource.source,
                    destructive=spec.is_destructive(Action.CREATE),
                )
            )
            return
        if current.fingerprint:
            self.fingerprints[str(address)] = current.fingerprint
        ownership = classify(current.owner, self.owner)
        other = current.owner
        if spec.has_marker and ownership is Ownership.FOREIGN and not self.force:
            self.conflicts.append(
                f"{resource.source or address}: {address} carries the owner marker of "
                f"'{other}', not '{self.owner}'; refusing to take it over (use --force)"
            )
            return
        fields = self._fields(spec, current.attrs, after)
        taken_over = spec.has_marker and ownership is not Ownership.OWNED
        if taken_over:
            fields = (*fields, FieldChange("owner", other, self.owner))
            self.adopted.add(address)
        parent = spec.parent(after)
        immutable = [f.path for f in fields if f.path.split(".")[0] in spec.immutable_fields]
        common: dict[str, Any] = {
            "before": current.attrs,
            "after": after,
            "fields": fields,
            "unknowns": unknowns(after),
            "ownership": ownership,
            "source": resource.source,
        }
        if immutable:
            self.replaced.add(address)
            detail = f"{', '.join(immutable)} cannot change in place"
            if ownership is Ownership.FOREIGN:
                detail += f"; taking over from {other}"
            if spec.replace_action is None:  # a kind with immutable fields says how it is replaced
                raise PlanError(
                    f"{address}: {detail}, and a {address.kind.value} is never replaced"
                )
            action = Action(spec.replace_action)
            self.add(
                Change(
                    address,
                    action,
                    Reason.IMMUTABLE_CHANGED,
                    detail,
                    destructive=spec.is_destructive(action),
                    **common,
                )
            )
        elif parent is not None and parent in self.replaced:
            # a dependent of a replaced object: it follows the new one's ids
            action, detail = spec.cascade(parent)
            self.add(
                Change(
                    address,
                    action,
                    Reason.DEPENDENCY_REPLACED,
                    detail,
                    destructive=spec.is_destructive(action),
                    **common,
                )
            )
        elif taken_over:
            detail = (
                f"taking over from {other}"
                if ownership is Ownership.FOREIGN
                else "no owner marker yet; it is added"
            )
            operation, said = self._operation(spec, address, fields, current.attrs, after)
            detail = f"{said}; {detail}" if said else detail
            self.add(
                Change(
                    address,
                    Action.UPDATE,
                    Reason.ADOPTION,
                    detail,
                    operation=operation,
                    **common,
                )
            )
        elif fields:
            operation, said = self._operation(spec, address, fields, current.attrs, after)
            self.add(
                Change(
                    address,
                    Action.UPDATE,
                    Reason.FIELDS_CHANGED,
                    said,
                    operation=operation,
                    **common,
                )
            )
        else:
            self.unchanged += 1

    def _operation(
        self,
        spec: KindSpec,
        address: Address,
        fields: tuple[FieldChange, ...],
        before: Mapping[str, Any],
        after: Mapping[str, Any],
    ) -> tuple[str, str]:
        """The operation an update performs (one its kind lists, else ''), and the detail the
        kind adds to it."""
        operation = spec.operation_of(fields, before, after)
        if operation and operation not in spec.operations:
            raise PlanError(
                f"{address}: the {address.kind.value} rules name the operation "
                f"{operation!r}, which they do not list"
            )
        return operation, spec.operation_detail(operation, before, after) if operation else ""

    # -- what the rules call --------------------------------------------------------------

    def add(self, change: Change) -> None:
        self.changes[change.address] = change

    def prune(
        self, current: LiveResource, reason: Reason, detail: str, *, destructive: bool
    ) -> None:
        if current.fingerprint:
            self.fingerprints[str(current.address)] = current.fingerprint
        self.add(
            Change(
                current.address,
                Action.DELETE,
                reason,
                detail,
                before=current.attrs,
                ownership=classify(current.owner, self.owner),
                destructive=destructive,
            )
        )

    def replace_desired(self, resources: dict[Address, Resource]) -> None:
        self.desired = dataclasses.replace(self.desired, resources=resources)
        self.desired_of = _by_kind(resources)

    def _fields(
        self, spec: KindSpec, before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> tuple[FieldChange, ...]:
        names = [
            f
            for f in spec.declared_fields
            if not (f in spec.optional_fields and after.get(f) is None)
        ]
        return diff_fields(
            spec.canonical(before),
            spec.canonical(after),
            names,
            shown_before=before,
            shown_after=after,
        )

    # -- order ----------------------------------------------------------------------------

    def _order(self) -> tuple[Change, ...]:
        before: dict[Address, set[Address]] = {}

        def edge(first: Address, then: Address) -> None:
            if first != then:
                before.setdefault(then, set()).add(first)

        changes = self.changes
        # creates and updates follow the desired dependencies (through unchanged resources too)
        for address, resource in self.desired.resources.items():
            spec = kind_of(address.kind)
            for dep in (*resource.depends_on, *spec.dependencies(resource.attrs)):
                edge(dep, address)
        deletes = [c for c in changes.values() if c.action is Action.DELETE]
        creates = [c for c in changes.values() if c.action is Action.CREATE]
        for gone in deletes:
            spec = kind_of(gone.address.kind)
            attrs = gone.before or {}
            # deletes run in reverse: dependents go before what they depend on
            for dep in spec.dependencies(attrs):
                dep_change = changes.get(dep)
                if dep_change is not None and dep_change.action in DELETES:
                    edge(gone.address, dep)
            parent = spec.parent(attrs)
            if parent is not None:
                parent_change = changes.get(parent)
                if parent_change is not None and parent_change.action in DELETES:
                    edge(gone.address, parent)
        self._create_before_delete(creates, deletes, edge)
        for spec in self.kinds:
            spec.edges(self, edge)

        kept = set(changes)
        edges = graph.restrict(before, kept)
        waves = graph.waves(edges, kept)
        ordered = [
            dataclasses.replace(
                change,
                depends_on=tuple(sorted(edges.get(address, ()))),
                wave=waves[address],
            )
            for address, change in changes.items()
        ]
        return tuple(sorted(ordered, key=lambda c: (c.wave, c.address.kind.value, c.address.key)))

    def _create_before_delete(
        self,
        creates: list[Change],
        deletes: list[Change],
        edge: Callable[[Address, Address], None],
    ) -> None:
        """A delete and the creates of its kind under the same parent: the kind orders them
        (by default the new object exists before the old one goes)."""
        groups: dict[tuple[Kind, Address], list[Change]] = {}
        for change in creates:
            parent = kind_of(change.address.kind).parent(change.after or {})
            if parent is not None:
                groups.setdefault((change.address.kind, parent), []).append(change)
        for gone in deletes:
            spec = kind_of(gone.address.kind)
            parent = spec.parent(gone.before or {})
            if parent is None or parent in self.replaced:
                continue  # a replaced identity takes its old grants with it anyway
            spec.order_replacement(gone, groups.get((gone.address.kind, parent), []), self, edge)


_R = TypeVar("_R", Resource, LiveResource)


def _address_order(item: tuple[Address, Any]) -> tuple[str, str]:
    return (item[0].kind.value, item[0].key)


def _by_kind(resources: Mapping[Address, _R]) -> dict[Kind, list[_R]]:
    grouped: dict[Kind, list[_R]] = {kind: [] for kind in Kind}
    for _, resource in sorted(resources.items(), key=_address_order):
        grouped[resource.address.kind].append(resource)
    return grouped


def _notice_sort_key(notice: Notice) -> tuple[str, str]:
    return (str(notice.address or ""), notice.message)


# -- --only: a partial plan ----------------------------------------------------------------


def restrict(
    plan: Plan, desired: DesiredState, only: Sequence[str], *, missing_ok: bool = False
) -> Plan:
    """``plan`` limited to the objects ``only`` names and what depends on them (``--only``).

    A selector is a full address (``identity.{sub}/{rg}/{name}``, any kind) or a name that
    ends an identity's or a service connection's key (``deploy-mi``, ``team-a-rg/deploy-mi``,
    ``contoso/platform/deploy``), matched case-insensitively against the desired objects and
    the live ones the plan read. What depends on an identity: its federated credentials, its
    role assignments and the connections that sign in as it (and theirs); on a connection: its
    implied credential. A change kept this way also keeps the changes it depends on (an
    identity being created before its connection), as Terraform's ``-target`` does, so the
    partial plan can be applied. Everything else, prunes included, is left out.

    Raises ``PlanError`` for a selector that matches nothing (unless ``missing_ok``: the
    plan made after an apply that deleted the object), or a name that matches more than one
    object, listing the candidates. Pure: no I/O.
    """
    if not only:
        return plan
    changes = {c.address: c for c in plan.changes}
    attrs: dict[Address, Mapping[str, Any]] = {}
    for change in plan.changes:
        attrs[change.address] = change.after or change.before or {}
    for address, resource in desired.resources.items():
        attrs[address] = resource.attrs
    universe = set(attrs)
    for text in plan.fingerprints:
        try:
            universe.add(Address.parse(text))
        except ValueError:
            continue
    roots = {a for text in only if (a := _select(text, universe, missing_ok)) is not None}
    chosen = _dependents(roots, universe, attrs)
    # what a kept change must wait for comes along, so that the partial plan can run
    queue = [a for a in chosen if a in changes]
    while queue:
        for before in changes[queue.pop()].depends_on:
            if before not in chosen and before in changes:
                chosen.add(before)
                queue.append(before)
    kept = tuple(
        replace(c, depends_on=tuple(a for a in c.depends_on if a in chosen))
        for c in plan.changes
        if c.address in chosen
    )
    changed = {c.address for c in kept}
    return replace(
        plan,
        changes=kept,
        notices=tuple(n for n in plan.notices if n.address is None or n.address in chosen),
        unchanged=sum(1 for a in desired.resources if a in chosen and a not in changed),
        fingerprints={k: v for k, v in plan.fingerprints.items() if _parses_into(k, chosen)},
        only=tuple(only),
    )


def _parses_into(text: str, addresses: set[Address]) -> bool:
    try:
        return Address.parse(text) in addresses
    except ValueError:
        return False


def _select(text: str, universe: set[Address], missing_ok: bool = False) -> Address | None:
    wanted = text.strip()
    kind, dot, key = wanted.partition(".")
    kinds = tuple(spec.kind for spec in REGISTRY.values() if spec.selectable)
    name = wanted.lower().strip("/")
    if dot and kind in {k.value for k in Kind}:
        # a full address, or KIND.NAME: a name within one kind
        address = Address(Kind(kind), key.lower())
        if address in universe:
            return address
        kinds, name = (Kind(kind),), key.lower().strip("/")
    named = [a for a in universe if a.kind in kinds]
    matches = sorted((a for a in named if a.key == name or a.key.endswith(f"/{name}")), key=str)
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise PlanError(
            f"--only {text} is ambiguous: give one of these addresses (or KIND.NAME) instead"
            + _listing([str(a) for a in matches])
        )
    if missing_ok:
        return None
    what = " or ".join(k.value for k in kinds)
    raise PlanError(
        f"--only {text}: no {what} with that name or address in the specs or live state; "
        "known:" + _listing(sorted(str(a) for a in named))
    )


def _listing(items: Sequence[str], limit: int = 20) -> str:
    if not items:
        return " (none)"
    shown = "".join(f"\n  {item}" for item in items[:limit])
    more = f"\n  … and {len(items) - limit} more" if len(items) > limit else ""
    return shown + more


def _dependents(
    roots: set[Address], universe: set[Address], attrs: Mapping[Address, Mapping[str, Any]]
) -> set[Address]:
    """``roots`` and everything that depends on them, transitively."""
    chosen = set(roots)
    queue = list(roots)
    while queue:
        address = queue.pop()
        for other in universe:
            if other in chosen:
                continue
            other_attrs = attrs.get(other) or {}
            depends = kind_of(address.kind).includes(address, other, other_attrs)
            if depends:
                chosen.add(other)
                queue.append(other)
    return chosen
