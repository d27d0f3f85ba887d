"""``make_plan``: desired and live state in, the ordered plan out (values in ``changes.py``).

Pure: no I/O. The plan's values live in ``reconciler.changes`` and are re-exported here for
the callers that read them together with ``make_plan``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from reconciler import graph, normalize
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
from reconciler.kinds import REGISTRY, KindSpec
from reconciler.model import (
    MAX_CREDENTIALS_PER_IDENTITY,
    MAX_ROLE_ASSIGNMENTS_PER_MANAGEMENT_GROUP,
    MAX_ROLE_ASSIGNMENTS_PER_SUBSCRIPTION,
    MAX_TAGS_PER_RESOURCE,
    UNKNOWN,
    Address,
    DesiredState,
    Kind,
    LiveResource,
    LiveState,
    Ownership,
    Resource,
    implied_credential_name,
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
        if change.address.kind is Kind.ROLE_ASSIGNMENT and change.role_name is None:
            attrs = change.after or change.before or {}
            guid = str(attrs.get("roleDefinitionId") or "").rpartition("/")[2].lower()
            if guid in names:
                change = replace(change, role_name=names[guid])
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
    problems = check_references(desired, live)
    if problems:
        raise LiveReferenceError(problems)
    planner = _Planner(normalize.resolve_roles(desired, live), live, force=force)
    return planner.run(spec_digest)


_DELETES = (Action.DELETE, Action.DELETE_THEN_CREATE)


class _Planner:
    def __init__(self, desired: DesiredState, live: LiveState, *, force: bool) -> None:
        self.kinds = REGISTRY
        self.desired = desired
        self.live = live
        self.owner = desired.owner
        self.force = force
        self.changes: dict[Address, Change] = {}
        self.notices: list[Notice] = []
        self.conflicts: list[str] = []
        self.unchanged = 0
        self.fingerprints: dict[str, str] = {}
        self.created: set[str] = set()  # identity keys created by this plan
        self.replaced: set[str] = set()  # identity keys replaced by this plan
        self.adopted: set[str] = set()  # identity keys taken over (unmarked or forced)
        # (identity, issuer, subject) of every declared credential, built on first use
        self._declared_pairs: set[tuple[Any, Any, Any]] | None = None
        # indexed once: DesiredState/LiveState.of_kind sort everything on every call
        self.desired_of: dict[Kind, list[Resource]] = _by_kind(desired.resources)
        self.live_of: dict[Kind, list[LiveResource]] = _by_kind(live.resources)

    # -- passes ---------------------------------------------------------------------------

    def run(self, spec_digest: str) -> Plan:
        self._match_implied_credentials()
        for kind in (
            Kind.IDENTITY,
            Kind.SERVICE_CONNECTION,
            Kind.FEDERATED_CREDENTIAL,
            Kind.ROLE_ASSIGNMENT,
        ):
            for resource in self.desired_of[kind]:
                self._plan_desired(resource)
        for address, current in sorted(self.live.resources.items(), key=_address_order):
            if address not in self.desired.resources:
                self._plan_live_only(current)
        if self.conflicts:
            raise PlanError("\n".join(self.conflicts))
        self._check_duplicate_credentials()
        self._check_limits()
        ordered = self._order()
        return Plan(
            owner=self.owner,
            changes=ordered,
            notices=tuple(sorted(self.notices, key=_notice_sort_key)),
            unchanged=self.unchanged,
            fingerprints=dict(sorted(self.fingerprints.items())),
            spec_digest=spec_digest,
        )

    def _match_implied_credentials(self) -> None:
        """Take an existing credential that already serves a connection, whatever its name.

        Set up by hand (Microsoft's walkthrough names it freely), it has the connection's
        issuer and subject; a second one with the same pair would be refused by Azure, and
        renaming it would break sign-in for a moment. So the spec's implied credential is
        matched to it instead.
        """
        by_pair: dict[tuple[str, Any, Any], LiveResource] = {}
        for current in self.live_of[Kind.FEDERATED_CREDENTIAL]:
            attrs = current.attrs
            pair = (str(attrs.get("identity")), attrs.get("issuer"), attrs.get("subject"))
            by_pair.setdefault(pair, current)
        resources = dict(self.desired.resources)
        changed = False
        for resource in self.desired_of[Kind.FEDERATED_CREDENTIAL]:
            attrs = resource.attrs
            if not attrs.get("serviceConnection") or resource.address in self.live.resources:
                continue
            connection = self.live.resources.get(
                Address(Kind.SERVICE_CONNECTION, str(attrs["serviceConnection"]))
            )
            if connection is None or not connection.attrs.get("issuer"):
                continue
            pair = (
                str(attrs.get("identity")),
                connection.attrs.get("issuer"),
                connection.attrs.get("subject"),
            )
            existing = by_pair.get(pair)
            if existing is None or existing.address in resources:
                continue
            del resources[resource.address]
            name = existing.attrs.get("name")
            resources[existing.address] = dataclasses.replace(
                resource, address=existing.address, attrs={**attrs, "name": name}
            )
            changed = True
            self.notices.append(
                Notice(
                    NoticeLevel.INFO,
                    f"the federated credential of connection {connection.address.key} already "
                    f"exists as {name} on identity {_short(pair[0])}: it is kept under that name",
                    existing.address,
                )
            )
        if changed:
            self.desired = dataclasses.replace(self.desired, resources=resources)
            self.desired_of = _by_kind(resources)

    def _plan_desired(self, resource: Resource) -> None:
        address = resource.address
        spec = self.kinds[address.kind]
        after = self._enrich(resource)
        current = self.live.resources.get(address)
        if current is None:
            if address.kind is Kind.IDENTITY:
                self.created.add(address.key)
            self._add(
                Change(
                    address,
                    Action.CREATE,
                    Reason.NEW,
                    after=after,
                    unknowns=_unknowns(after),
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
            if address.kind is Kind.IDENTITY:
                self.adopted.add(address.key)
        parent = spec.identity_of(after)
        immutable = [f.path for f in fields if f.path.split(".")[0] in spec.immutable_fields]
        common: dict[str, Any] = {
            "before": current.attrs,
            "after": after,
            "fields": fields,
            "unknowns": _unknowns(after),
            "ownership": ownership,
            "source": resource.source,
        }
        if immutable:
            if address.kind is Kind.IDENTITY:
                self.replaced.add(address.key)
            detail = f"{', '.join(immutable)} cannot change in place"
            if ownership is Ownership.FOREIGN:
                detail += f"; taking over from {other}"
            if spec.replace_action is None:  # a kind with immutable fields says how it is replaced
                raise PlanError(
                    f"{address}: {detail}, and a {address.kind.value} is never replaced"
                )
            action = Action(spec.replace_action)
            self._add(
                Change(
                    address,
                    action,
                    Reason.IMMUTABLE_CHANGED,
                    detail,
                    destructive=spec.is_destructive(action),
                    **common,
                )
            )
        elif address.kind is not Kind.IDENTITY and parent in self.replaced:
            self._plan_cascade(resource, spec, common, parent)
        elif taken_over:
            detail = (
                f"taking over from {other}"
                if ownership is Ownership.FOREIGN
                else "no owner marker yet; it is added"
            )
            self._add(Change(address, Action.UPDATE, Reason.ADOPTION, detail, **common))
        elif fields:
            self._add(Change(address, Action.UPDATE, Reason.FIELDS_CHANGED, **common))
        else:
            self.unchanged += 1

    def _plan_cascade(
        self, resource: Resource, spec: KindSpec, common: dict[str, Any], identity: str
    ) -> None:
        """A dependent of a replaced identity: it follows the new principal and client ids."""
        address = resource.address
        name = identity.rsplit("/", 1)[-1]
        if address.kind is Kind.SERVICE_CONNECTION:
            action = Action.UPDATE
            detail = f"identity {name} is replaced; the connection follows its new client id"
        elif address.kind is Kind.ROLE_ASSIGNMENT:
            action = Action.DELETE_THEN_CREATE
            detail = f"identity {name} is replaced; granted again to its new principal"
        else:
            action = Action.DELETE_THEN_CREATE
            detail = f"identity {name} is replaced; its credentials go with it and are made again"
        self._add(
            Change(
                address,
                action,
                Reason.DEPENDENCY_REPLACED,
                detail,
                destructive=spec.is_destructive(action),
                **common,
            )
        )

    def _plan_live_only(self, current: LiveResource) -> None:
        address = current.address
        spec = self.kinds[address.kind]
        attrs = current.attrs
        ownership = classify(current.owner, self.owner)
        parent = spec.identity_of(attrs)
        parent_desired = (
            parent is not None and Address(Kind.IDENTITY, parent) in self.desired.resources
        )
        if ownership is Ownership.OWNED:
            detail = ""
            reason = Reason.NOT_IN_SPEC
            destructive = spec.is_destructive(Action.DELETE)
            if address.kind is Kind.ROLE_ASSIGNMENT and parent is None:
                detail = f"its identity no longer exists (principal {attrs.get('principalId')})"
            if address.kind is Kind.FEDERATED_CREDENTIAL:
                reason, detail, destructive = self._credential_delete(
                    attrs, kept=parent_desired, destructive=destructive
                )
            if current.fingerprint:
                self.fingerprints[str(address)] = current.fingerprint
            self._add(
                Change(
                    address,
                    Action.DELETE,
                    reason,
                    detail,
                    before=attrs,
                    ownership=ownership,
                    destructive=destructive,
                )
            )
            return
        if address.kind is Kind.ROLE_ASSIGNMENT and parent is not None:
            parent_live = self.live.resources.get(Address(Kind.IDENTITY, parent))
            parent_owned = parent_live is not None and parent_live.owner == self.owner
            if parent_desired or parent_owned:
                who = f"owner '{current.owner}'" if current.owner else "no owner marker"
                self.notices.append(
                    Notice(
                        NoticeLevel.WARNING,
                        f"role assignment {self._role_name(attrs)} at {attrs.get('scope')} on "
                        f"identity {_short(parent)} was not made by these specs ({who}): "
                        "reported, not removed",
                        address,
                    )
                )
        elif address.kind is Kind.FEDERATED_CREDENTIAL and parent in self.adopted:
            # Once adopted the identity is owned, and an owned identity's credentials are the
            # ones the specs declare: prune now, in the plan the reviewer sees, rather than in
            # the next plan (which would also make this apply fail to converge).
            if current.fingerprint:
                self.fingerprints[str(address)] = current.fingerprint
            reason, detail, destructive = self._credential_delete(
                attrs,
                kept=True,
                destructive=spec.is_destructive(Action.DELETE),
                adopted="its identity is adopted; declare it to keep it",
            )
            self._add(
                Change(
                    address,
                    Action.DELETE,
                    reason,
                    detail,
                    before=attrs,
                    ownership=ownership,
                    destructive=destructive,
                )
            )

    def _credential_delete(
        self,
        attrs: Mapping[str, Any],
        *,
        kept: bool,
        destructive: bool,
        adopted: str | None = None,
    ) -> tuple[Reason, str, bool]:
        """Reason, detail and destructiveness of deleting a live-only federated credential.

        "added out of band" when its identity stays (``kept``: declared or adopted), no
        service connection of this owner uses it (by issuer and subject, or by the name the
        tool gives a connection's credential) and the specs do not declare its issuer and
        subject on that identity under another name (a rename); otherwise "not in spec" (it
        goes with its identity, with a connection that left the specs, or it is renamed).
        The tool keeps no record of past specs, so a credential removed from the specs of a
        kept identity also shows as "added out of band". Destructive whenever a live
        connection that was read (owned or not) signs in with its issuer and subject: that
        connection would stop working."""
        reason = Reason.NOT_IN_SPEC
        detail = "" if adopted is None else adopted
        if kept and not (self._made_for_owned_connection(attrs) or self._renamed(attrs)):
            reason = Reason.OUT_OF_BAND
            detail = detail or "the specs do not declare it and no connection of this owner uses it"
        users = self.live.federations.get((str(attrs.get("issuer")), str(attrs.get("subject"))))
        if users:
            noun = "service connection" if len(users) == 1 else "service connections"
            verb = "signs" if len(users) == 1 else "sign"
            used = f"{noun} {', '.join(users)} {verb} in with it and would stop working"
            detail = f"{detail}; {used}" if detail else used
            destructive = True
        return reason, detail, destructive

    def _renamed(self, attrs: Mapping[str, Any]) -> bool:
        if self._declared_pairs is None:
            self._declared_pairs = {
                (r.attrs.get("identity"), r.attrs.get("issuer"), r.attrs.get("subject"))
                for r in self.desired_of[Kind.FEDERATED_CREDENTIAL]
            }
        return (
            attrs.get("identity"),
            attrs.get("issuer"),
            attrs.get("subject"),
        ) in self._declared_pairs

    def _made_for_owned_connection(self, attrs: Mapping[str, Any]) -> bool:
        pair = (attrs.get("issuer"), attrs.get("subject"))
        name = str(attrs.get("name") or "").lower()
        for connection in self.live_of[Kind.SERVICE_CONNECTION]:
            if connection.owner != self.owner:
                continue
            c = connection.attrs
            if c.get("issuer") and (c.get("issuer"), c.get("subject")) == pair:
                return True
            implied = implied_credential_name(
                str(c.get("organization")), str(c.get("project")), str(c.get("name"))
            )
            if implied.lower() == name:
                return True
        return False

    # -- attribute helpers ----------------------------------------------------------------

    def _enrich(self, resource: Resource) -> dict[str, Any]:
        """The desired attributes plus what the plan derives from live state for apply."""
        after = dict(resource.attrs)
        kind = resource.address.kind
        if kind is Kind.IDENTITY:
            after["organizations"] = self._inventory_of(resource.address.key)
        elif kind is Kind.SERVICE_CONNECTION:
            identity = self._identity_live(after.get("identity"))
            known = identity is not None and after.get("identity") not in self.replaced
            after["servicePrincipalId"] = (
                identity.attrs.get("clientId") if known and identity else UNKNOWN
            )
            tenant = (identity.attrs.get("tenantId") if identity else None) or self.live.tenant_id
            after["tenantId"] = tenant or UNKNOWN
        elif kind is Kind.FEDERATED_CREDENTIAL and after.get("serviceConnection"):
            connection = self.live.resources.get(
                Address(Kind.SERVICE_CONNECTION, after["serviceConnection"])
            )
            for field_name in ("issuer", "subject"):
                value = connection.attrs.get(field_name) if connection else None
                after[field_name] = value if value not in (None, "", UNKNOWN) else UNKNOWN
        elif kind is Kind.ROLE_ASSIGNMENT:
            identity = self._identity_live(after.get("identity"))
            known = identity is not None and after.get("identity") not in self.replaced
            after["principalId"] = (
                identity.attrs.get("principalId") if known and identity else UNKNOWN
            )
        return after

    def _inventory_of(self, identity: str) -> dict[str, str]:
        """The identity's inventory (README "Safety"): organisation id -> name for every declared
        connection that signs in as it. The ids come from live state: observe reads every
        organisation the specs name, and a plan naming one it could not read has already
        failed (``check_references``); one left unread (planner cases) is left out."""
        inventory: dict[str, str] = {}
        for connection in self.desired_of[Kind.SERVICE_CONNECTION]:
            if str(connection.attrs.get("identity")) != identity:
                continue
            org = str(connection.attrs["organization"])
            org_id = self.live.organizations.get(org.lower())
            if org_id:
                inventory.setdefault(str(org_id).lower(), org)
        return dict(sorted(inventory.items()))

    def _role_name(self, attrs: Mapping[str, Any]) -> str:
        """A live assignment's role as people know it (its name), falling back to the GUID."""
        guid = str(attrs.get("roleDefinitionId") or "")
        sub = normalize.subscription_of(str(attrs.get("scope") or ""))
        catalogues = [self.live.role_definitions.get(sub or "", ())]
        catalogues += list(self.live.role_definitions.values())
        for catalogue in catalogues:
            for definition in catalogue:
                if definition.guid.lower() == guid.lower():
                    return f"'{definition.name}'"
        return guid or "?"

    def _identity_live(self, key: Any) -> LiveResource | None:
        if not key or key in self.created:
            return None
        return self.live.resources.get(Address(Kind.IDENTITY, str(key)))

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

    def _add(self, change: Change) -> None:
        self.changes[change.address] = change

    # -- checks ---------------------------------------------------------------------------

    def _credentials_after(self) -> dict[str, dict[Address, Mapping[str, Any]]]:
        """Per identity: every credential it will hold after apply, with its attributes."""
        holding: dict[str, dict[Address, Mapping[str, Any]]] = {}
        for resource in self.desired_of[Kind.FEDERATED_CREDENTIAL]:
            change = self.changes.get(resource.address)
            attrs = change.after if change and change.after is not None else resource.attrs
            holding.setdefault(str(resource.attrs["identity"]), {})[resource.address] = attrs
        for current in self.live_of[Kind.FEDERATED_CREDENTIAL]:
            identity = str(current.attrs.get("identity"))
            change = self.changes.get(current.address)
            if current.address in self.desired.resources or identity in self.replaced:
                continue  # declared (counted above), or gone with its identity
            if change is not None and change.action is Action.DELETE:
                continue
            holding.setdefault(identity, {})[current.address] = current.attrs
        return holding

    def _check_duplicate_credentials(self) -> None:
        problems = []
        for identity, credentials in sorted(self._credentials_after().items()):
            seen: dict[tuple[str, str], Address] = {}
            # declared credentials last, so that the message points at the spec line to change
            order = sorted(credentials, key=lambda a: (a in self.desired.resources, a))
            for address in order:
                attrs = credentials[address]
                pair = (attrs.get("issuer"), attrs.get("subject"))
                if UNKNOWN in pair or None in pair:
                    continue
                key = (str(pair[0]), str(pair[1]))
                first = seen.setdefault(key, address)
                if first == address:
                    continue
                resource = self.desired.resources.get(address)
                where = f"{resource.source}: " if resource and resource.source else ""
                problems.append(
                    f"{where}federated credential {_short(address.key)} on identity "
                    f"{_short(identity)} has the same issuer and subject as "
                    f"{_short(first.key)} ({key[0]}, {key[1]}); Azure rejects a second "
                    "credential with the same pair on one identity"
                )
        if problems:
            raise PlanError("\n".join(problems))

    def _check_limits(self) -> None:
        problems = []
        for identity, credentials in sorted(self._credentials_after().items()):
            if len(credentials) > MAX_CREDENTIALS_PER_IDENTITY:
                declared = sum(1 for a in credentials if a in self.desired.resources)
                resource = self.desired.resources.get(Address(Kind.IDENTITY, identity))
                where = f"{resource.source}: " if resource and resource.source else ""
                problems.append(
                    f"{where}identity {_short(identity)} would hold {len(credentials)} "
                    f"federated credentials ({declared} in the specs, "
                    f"{len(credentials) - declared} kept from live); Azure allows at most "
                    f"{MAX_CREDENTIALS_PER_IDENTITY}"
                )
        for change in self.changes.values():
            after = change.after
            if change.address.kind is not Kind.IDENTITY or after is None:
                continue
            user, inventory = len(after.get("tags") or {}), len(after.get("organizations") or {})
            if user + 1 + inventory > MAX_TAGS_PER_RESOURCE:
                where = f"{change.source}: " if change.source else ""
                problems.append(
                    f"{where}identity {_short(change.address.key)} would carry "
                    f"{user + 1 + inventory} tags ({user} in the specs, the owner tag, and one "
                    f"per Azure DevOps organisation its connections are in: {inventory}); "
                    f"Azure allows at most {MAX_TAGS_PER_RESOURCE}"
                )
        delta: dict[str, list[int]] = {}
        for change in self.changes.values():
            if change.address.kind is not Kind.ROLE_ASSIGNMENT:
                continue
            step = {Action.CREATE: 0, Action.DELETE: 1}.get(change.action)
            if step is None:
                continue
            attrs = change.after if change.action is Action.CREATE else change.before
            scope_text = str((attrs or {}).get("scope") or "")
            bucket = normalize.subscription_of(scope_text) or normalize.scope(scope_text) or ""
            delta.setdefault(bucket, [0, 0])[step] += 1
        for bucket, (creates, deletes) in sorted(delta.items()):
            if creates <= deletes:
                continue
            held = self.live.role_assignment_counts.get(bucket, 0)
            total = held + creates - deletes
            if bucket.startswith("/"):
                limit, what = MAX_ROLE_ASSIGNMENTS_PER_MANAGEMENT_GROUP, "management group"
            else:
                limit, what = MAX_ROLE_ASSIGNMENTS_PER_SUBSCRIPTION, "subscription"
            if total > limit:
                problems.append(
                    f"{what} {bucket} would hold {total:,} role assignments ({held:,} live + "
                    f"{creates} new - {deletes} removed); Azure allows at most {limit:,}"
                )
        if problems:
            raise PlanError("\n".join(problems))

    # -- order ----------------------------------------------------------------------------

    def _order(self) -> tuple[Change, ...]:
        before: dict[Address, set[Address]] = {}

        def edge(first: Address, then: Address) -> None:
            if first != then:
                before.setdefault(then, set()).add(first)

        changes = self.changes
        # creates and updates follow the desired dependencies (through unchanged resources too)
        ras_of: dict[str, list[Address]] = {}
        for resource in self.desired_of[Kind.ROLE_ASSIGNMENT]:
            ras_of.setdefault(str(resource.attrs["identity"]), []).append(resource.address)
        for address, resource in self.desired.resources.items():
            spec = self.kinds[address.kind]
            for dep in (*resource.depends_on, *spec.dependencies(resource.attrs)):
                edge(dep, address)
            if address.kind is Kind.SERVICE_CONNECTION:
                # Microsoft's walkthrough: grant the roles, then create the connection
                for ra in ras_of.get(str(resource.attrs.get("identity")), ()):
                    edge(ra, address)
        deletes = [c for c in changes.values() if c.action is Action.DELETE]
        creates = [c for c in changes.values() if c.action is Action.CREATE]
        for gone in deletes:
            spec = self.kinds[gone.address.kind]
            attrs = gone.before or {}
            # deletes run in reverse: dependents go before what they depend on
            for dep in spec.dependencies(attrs):
                dep_change = changes.get(dep)
                if dep_change is not None and dep_change.action in _DELETES:
                    edge(gone.address, dep)
            parent = spec.identity_of(attrs)
            if gone.address.kind is not Kind.IDENTITY and parent is not None:
                identity_change = changes.get(Address(Kind.IDENTITY, parent))
                if identity_change is not None and identity_change.action in _DELETES:
                    edge(gone.address, identity_change.address)
            if gone.address.kind is Kind.SERVICE_CONNECTION:
                for credential in self._credentials_of_connection(gone):
                    edge(credential, gone.address)
        self._create_before_delete(creates, deletes, edge)
        self._same_issuer_subject(edge)
        self._inventory_removals(edge)

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

    def _credentials_of_connection(self, connection: Change) -> list[Address]:
        """Credential deletes that belong to a connection being deleted (DevOps refuses else)."""
        attrs = connection.before or {}
        implied = implied_credential_name(
            str(attrs.get("organization")), str(attrs.get("project")), str(attrs.get("name"))
        ).lower()
        pair = (attrs.get("issuer"), attrs.get("subject"))
        found = []
        for change in self.changes.values():
            if change.address.kind is not Kind.FEDERATED_CREDENTIAL:
                continue
            if change.action not in _DELETES or change.before is None:
                continue
            cred = change.before
            same_pair = pair[0] and (cred.get("issuer"), cred.get("subject")) == pair
            if same_pair or str(cred.get("name", "")).lower() == implied:
                found.append(change.address)
        return found

    def _create_before_delete(
        self,
        creates: list[Change],
        deletes: list[Change],
        edge: Callable[[Address, Address], None],
    ) -> None:
        """The new object of a kind exists before the old one of that identity goes."""
        groups: dict[tuple[Kind, str], list[Change]] = {}
        for change in creates:
            parent = self.kinds[change.address.kind].identity_of(change.after or {})
            if parent is not None and change.address.kind is not Kind.IDENTITY:
                groups.setdefault((change.address.kind, parent), []).append(change)
        # the organisation of the connection a credential delete goes with, if it goes with one
        serving: dict[Address, str] = {}
        for gone in deletes:
            if gone.address.kind is Kind.SERVICE_CONNECTION:
                org = str((gone.before or {}).get("organization") or "").lower()
                for credential in self._credentials_of_connection(gone):
                    serving.setdefault(credential, org)
        live_counts: dict[str, int] = {}
        for current in self.live_of[Kind.FEDERATED_CREDENTIAL]:
            identity = str(current.attrs.get("identity"))
            live_counts[identity] = live_counts.get(identity, 0) + 1
        for gone in deletes:
            kind = gone.address.kind
            parent = self.kinds[kind].identity_of(gone.before or {})
            if parent is None or kind is Kind.IDENTITY or parent in self.replaced:
                continue  # a replaced identity takes its old grants with it anyway
            new = groups.get((kind, parent), [])
            # room for the new credential first when the identity is at Azure's limit
            full = (
                kind is Kind.FEDERATED_CREDENTIAL
                and live_counts.get(parent, 0) + len(new) > MAX_CREDENTIALS_PER_IDENTITY
            )
            for created in new:
                if kind is Kind.SERVICE_CONNECTION and not _same_organization(
                    created.after, gone.before
                ):
                    # no pipeline of one organisation can use a connection of another, and
                    # the identity's inventory drops the old organisation only after the
                    # delete while the create waits for the identity: ordering these two
                    # would close a cycle
                    continue
                if (
                    gone.address in serving
                    and _served_organization(created) != serving[gone.address]
                ):
                    # the credential of a connection that leaves an organisation keeps nothing
                    # signing in for a credential made for anything else (same cycle)
                    if full:
                        edge(gone.address, created.address)
                    continue
                if full or _same_pair(created.after, gone.before):
                    edge(gone.address, created.address)
                else:
                    edge(created.address, gone.address)

    def _inventory_removals(self, edge: Callable[[Address, Address], None]) -> None:
        """An identity update that drops an organisation from its inventory runs after the
        delete of every connection of this owner in that organisation that signs in as it: an
        apply stopped half-way never loses the record while such a connection lives.
        (Additions need nothing: a connection's create already waits for its identity.) A
        connection moved to another identity in place needs no edge: the other identity's
        inventory records the organisation before the move (the update waits for it)."""
        for change in self.changes.values():
            if change.address.kind is not Kind.IDENTITY or change.action is not Action.UPDATE:
                continue
            before = dict((change.before or {}).get("organizations") or {})
            after = {str(k).lower() for k in ((change.after or {}).get("organizations") or {})}
            dropped = {str(k).lower() for k in before} - after
            if not dropped:
                continue
            for other in self.changes.values():
                if other.address.kind is not Kind.SERVICE_CONNECTION or other.before is None:
                    continue
                if other.action is not Action.DELETE or str(other.before.get("identity")) != (
                    change.address.key
                ):
                    continue
                org = str(other.before.get("organization") or "").lower()
                if str(self.live.organizations.get(org) or "").lower() in dropped:
                    edge(other.address, change.address)

    def _same_issuer_subject(self, edge: Callable[[Address, Address], None]) -> None:
        """A credential write that takes over another's issuer+subject waits until it moved."""
        moving = [
            c
            for c in self.changes.values()
            if c.address.kind is Kind.FEDERATED_CREDENTIAL
            and c.before is not None
            and c.action in (Action.UPDATE, Action.DELETE)
        ]
        for write in self.changes.values():
            if write.address.kind is not Kind.FEDERATED_CREDENTIAL or write.after is None:
                continue
            for old in moving:
                if old.address == write.address:
                    continue
                if old.before and old.before.get("identity") != write.after.get("identity"):
                    continue
                if _same_pair(write.after, old.before) and not _same_pair(old.after, old.before):
                    edge(old.address, write.address)


def _served_organization(change: Change) -> str | None:
    """The organisation (lower case) of the connection a credential create is made for."""
    served = (change.after or {}).get("serviceConnection")
    return str(served).split("/", 1)[0].lower() if served else None


def _same_organization(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    return (
        str((a or {}).get("organization") or "").lower()
        == str((b or {}).get("organization") or "").lower()
    )


def _same_pair(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    if not a or not b:
        return False
    pair_a = (a.get("issuer"), a.get("subject"))
    pair_b = (b.get("issuer"), b.get("subject"))
    if UNKNOWN in pair_a or UNKNOWN in pair_b or None in pair_a:
        return False
    return pair_a == pair_b


_R = TypeVar("_R", Resource, LiveResource)


def _address_order(item: tuple[Address, Any]) -> tuple[str, str]:
    return (item[0].kind.value, item[0].key)


def _by_kind(resources: Mapping[Address, _R]) -> dict[Kind, list[_R]]:
    grouped: dict[Kind, list[_R]] = {kind: [] for kind in Kind}
    for _, resource in sorted(resources.items(), key=_address_order):
        grouped[resource.address.kind].append(resource)
    return grouped


def _unknowns(attrs: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k, v in attrs.items() if v is UNKNOWN))


def _short(identity_key_text: str | None) -> str:
    """An identity's name from its key (``sub/rg/name``), for messages."""
    return (identity_key_text or "?").rsplit("/", 1)[-1]


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
    kinds: tuple[Kind, ...] = (Kind.IDENTITY, Kind.SERVICE_CONNECTION)
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
            if address.kind is Kind.IDENTITY:
                under = other.kind in (
                    Kind.FEDERATED_CREDENTIAL,
                    Kind.ROLE_ASSIGNMENT,
                ) and other.key.startswith(f"{address.key}/")
                signs_in = other.kind is Kind.SERVICE_CONNECTION and (
                    str(other_attrs.get("identity") or "").lower() == address.key
                )
                depends = under or signs_in
            elif address.kind is Kind.SERVICE_CONNECTION:
                depends = other.kind is Kind.FEDERATED_CREDENTIAL and (
                    str(other_attrs.get("serviceConnection") or "").lower() == address.key
                )
            else:
                depends = False
            if depends:
                chosen.add(other)
                queue.append(other)
    return chosen
