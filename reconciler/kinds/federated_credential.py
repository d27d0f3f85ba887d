"""Federated identity credential: updated in place, writes under one identity serialised."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.changes import Action, Change, Notice, NoticeLevel, Reason
from reconciler.kinds.base import (
    DELETE_THEN_CREATE,
    TRANSITIONS,
    BuildContext,
    DeclaredIdentity,
    Edge,
    Exported,
    ExportView,
    PlanView,
    Rules,
    credentials_of_connection,
    identity_label,
    short_identity,
    short_name,
)
from reconciler.model import (
    DEFAULT_AUDIENCE,
    MAX_CREDENTIALS_PER_IDENTITY,
    UNKNOWN,
    Address,
    Kind,
    LiveResource,
    Ownership,
    Resource,
    credential_key,
    implied_credential_name,
)


class FederatedCredentialKind(Rules):
    kind: Kind = Kind.FEDERATED_CREDENTIAL
    # after connections: a connection's credential takes the issuer and subject it generates
    plan_order: int = 2
    spec_section: str = "federatedCredentials"
    spec_parent: str | None = "identities"
    # issuer, subject and audiences change in place: a delete/create window breaks sign-in
    declared_fields: tuple[str, ...] = ("issuer", "subject", "audiences")
    immutable_fields: tuple[str, ...] = ()
    replace_action: str | None = DELETE_THEN_CREATE
    optional_fields: tuple[str, ...] = ()
    has_marker: bool = False
    noun: str = "federated credential"
    shown_fields: tuple[str, ...] = ("issuer", "subject", "audiences")
    # a credential is destructive only when a live connection signs in with it
    destructive_warning: str = (
        "!! DESTRUCTIVE: a service connection stops working; apply needs --allow-destroy"
    )

    def natural_key(self, attrs: Mapping[str, Any]) -> str:
        return credential_key(attrs["identity"], attrs["name"])

    def canonical(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        audiences = attrs.get("audiences")
        return {
            "issuer": attrs.get("issuer"),
            "subject": attrs.get("subject"),
            "audiences": audiences if not isinstance(audiences, list) else sorted(audiences),
        }

    def dependencies(self, attrs: Mapping[str, Any]) -> tuple[Address, ...]:
        deps = [Address(Kind.IDENTITY, attrs["identity"])]
        if attrs.get("serviceConnection"):
            # Azure DevOps generates issuer and subject: the connection comes first
            deps.append(Address(Kind.SERVICE_CONNECTION, attrs["serviceConnection"]))
        return tuple(deps)

    def identity_of(self, attrs: Mapping[str, Any]) -> str | None:
        value = attrs.get("identity")
        return str(value) if value else None

    def is_destructive(self, action: str) -> bool:
        return False

    def title(self, change: Mapping[str, Any]) -> str:
        attrs = change.get("after") or change.get("before") or {}
        return f"federated_credential {attrs.get('name')} on {short_name(attrs.get('identity'))}"

    def display(
        self, address: Address, attrs: Mapping[str, Any], label: Callable[[str], str | None]
    ) -> str | None:
        parts = address.key.split("/")
        if len(parts) != 4:
            return None
        return f"{identity_label('/'.join(parts[:3]), label)}/{attrs.get('name') or parts[3]}"

    def identity_in_key(self, address: Address) -> str | None:
        return address.key.rpartition("/")[0]

    # -- planning ---------------------------------------------------------------------------

    def build(
        self,
        ctx: BuildContext,
        file: str,
        root: Any,
        path: list[str | int],
        spec: Mapping[str, Any],
        identity: DeclaredIdentity | None,
        defaults: Mapping[str, Any],
        bad: set[tuple[str | int, ...]],
    ) -> None:
        """An entry of an identity's ``federatedCredentials``."""
        if identity is None:
            return
        source = ctx.source(file, spec, path)
        address = Address(Kind.FEDERATED_CREDENTIAL, credential_key(identity.key, spec["name"]))
        pair = (spec["issuer"], spec["subject"])
        resource = Resource(
            address,
            {
                "identity": identity.key,
                "name": spec["name"],
                "issuer": spec["issuer"],
                "subject": spec["subject"],
                "audiences": sorted(spec.get("audiences") or [DEFAULT_AUDIENCE]),
                "serviceConnection": None,
            },
            source,
            (identity.address,),
        )
        label = f"federated credential '{spec['name']}' on identity {identity.key}"
        if not ctx.add(resource, label, file, root, path):
            return
        identity.credentials.append(spec["name"])
        first = identity.issuer_subjects.get(pair)
        if first is not None:
            ctx.problem(
                file,
                root,
                path,
                f"issuer and subject already used by federated credential '{first[0]}' at "
                f"{first[1]} (they must be unique per identity)",
            )
        else:
            identity.issuer_subjects[pair] = (spec["name"], str(source))

    def count_text(self, resources: list[Resource]) -> str:
        text = super().count_text(resources)
        implied = sum(1 for c in resources if c.attrs["serviceConnection"] is not None)
        return f"{text} ({implied} implied by service connections)" if implied else text

    def describe(self, resource: Resource, roles: Mapping[str, str]) -> list[str]:
        c = resource.attrs
        if c["serviceConnection"] is not None:
            return [
                f"    federated credential {c['name']}, for service connection "
                f"{c['serviceConnection']} (issuer and subject known after apply)"
            ]
        return [
            f"    federated credential {c['name']}",
            f"        issuer {c['issuer']}  subject {c['subject']}",
        ]

    def parent(self, attrs: Mapping[str, Any]) -> Address | None:
        identity = attrs.get("identity")
        return Address(Kind.IDENTITY, str(identity)) if identity else None

    def prepare(self, view: PlanView) -> None:
        """Take an existing credential that already serves a connection, whatever its name.

        Set up by hand (Microsoft's walkthrough names it freely), it has the connection's
        issuer and subject; a second one with the same pair would be refused by Azure, and
        renaming it would break sign-in for a moment. So the spec's implied credential is
        matched to it instead.
        """
        by_pair: dict[tuple[str, Any, Any], LiveResource] = {}
        for current in view.live_of[Kind.FEDERATED_CREDENTIAL]:
            attrs = current.attrs
            pair = (str(attrs.get("identity")), attrs.get("issuer"), attrs.get("subject"))
            by_pair.setdefault(pair, current)
        resources = dict(view.desired.resources)
        changed = False
        for resource in view.desired_of[Kind.FEDERATED_CREDENTIAL]:
            attrs = resource.attrs
            if not attrs.get("serviceConnection") or resource.address in view.live.resources:
                continue
            connection = view.live.resources.get(
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
            if connection.owner == view.owner:
                # said when the connection was taken over (or written by a migration, under
                # its ``-entra`` name): repeating it on every later plan is noise
                continue
            view.notices.append(
                Notice(
                    NoticeLevel.INFO,
                    f"the federated credential of connection {connection.address.key} already "
                    f"exists as {name} on identity {short_identity(pair[0])}: it is kept under "
                    "that name",
                    existing.address,
                )
            )
        if changed:
            view.replace_desired(resources)

    def enrich(self, address: Address, after: dict[str, Any], view: PlanView) -> None:
        """A connection's credential: the issuer and subject the connection has (unknown for
        a new one: Azure DevOps generates them)."""
        if not after.get("serviceConnection"):
            return
        connection = view.live.resources.get(
            Address(Kind.SERVICE_CONNECTION, after["serviceConnection"])
        )
        for field_name in ("issuer", "subject"):
            value = connection.attrs.get(field_name) if connection else None
            after[field_name] = value if value not in (None, "", UNKNOWN) else UNKNOWN

    def cascade(self, parent: Address) -> tuple[Action, str]:
        name = parent.key.rsplit("/", 1)[-1]
        return (
            Action.DELETE_THEN_CREATE,
            f"identity {name} is replaced; its credentials go with it and are made again",
        )

    def plan_live_only(self, current: LiveResource, ownership: Ownership, view: PlanView) -> None:
        attrs = current.attrs
        parent = self.parent(attrs)
        if _moved_by_connection(attrs, view):
            return  # the connection's migration or conversion writes and deletes it
        if ownership is Ownership.OWNED:
            kept = parent is not None and parent in view.desired.resources
            reason, detail, destructive = _credential_delete(
                attrs, view, kept=kept, destructive=False
            )
            view.prune(current, reason, detail, destructive=destructive)
        elif parent is not None and parent in view.adopted:
            # Once adopted the identity is owned, and an owned identity's credentials are the
            # ones the specs declare: prune now, in the plan the reviewer sees, rather than in
            # the next plan (which would also make this apply fail to converge).
            reason, detail, destructive = _credential_delete(
                attrs,
                view,
                kept=True,
                destructive=False,
                adopted="its identity is adopted; declare it to keep it",
            )
            view.prune(current, reason, detail, destructive=destructive)

    def conflicts(self, view: PlanView) -> list[str]:
        """Two credentials with one issuer and subject on one identity: Azure refuses it."""
        problems = []
        for identity, credentials in sorted(_credentials_after(view).items()):
            seen: dict[tuple[str, str], Address] = {}
            # declared credentials last, so that the message points at the spec line to change
            order = sorted(credentials, key=lambda a: (a in view.desired.resources, a))
            for address in order:
                attrs = credentials[address]
                pair = (attrs.get("issuer"), attrs.get("subject"))
                if UNKNOWN in pair or None in pair:
                    continue
                key = (str(pair[0]), str(pair[1]))
                first = seen.setdefault(key, address)
                if first == address:
                    continue
                resource = view.desired.resources.get(address)
                where = f"{resource.source}: " if resource and resource.source else ""
                problems.append(
                    f"{where}federated credential {short_identity(address.key)} on identity "
                    f"{short_identity(identity)} has the same issuer and subject as "
                    f"{short_identity(first.key)} ({key[0]}, {key[1]}); Azure rejects a second "
                    "credential with the same pair on one identity"
                )
        return problems

    def checks(self, view: PlanView) -> list[str]:
        """At most 20 federated credentials per identity."""
        problems = []
        for identity, credentials in sorted(_credentials_after(view).items()):
            if len(credentials) > MAX_CREDENTIALS_PER_IDENTITY:
                declared = sum(1 for a in credentials if a in view.desired.resources)
                resource = view.desired.resources.get(Address(Kind.IDENTITY, identity))
                where = f"{resource.source}: " if resource and resource.source else ""
                problems.append(
                    f"{where}identity {short_identity(identity)} would hold {len(credentials)} "
                    f"federated credentials ({declared} in the specs, "
                    f"{len(credentials) - declared} kept from live); Azure allows at most "
                    f"{MAX_CREDENTIALS_PER_IDENTITY}"
                )
        return problems

    def edges(self, view: PlanView, edge: Edge) -> None:
        """A credential write that takes over another's issuer+subject waits until it moved."""
        moving = [
            c
            for c in view.changes.values()
            if c.address.kind is Kind.FEDERATED_CREDENTIAL
            and c.before is not None
            and c.action in (Action.UPDATE, Action.DELETE)
        ]
        for write in view.changes.values():
            if write.address.kind is not Kind.FEDERATED_CREDENTIAL or write.after is None:
                continue
            for old in moving:
                if old.address == write.address:
                    continue
                if old.before and old.before.get("identity") != write.after.get("identity"):
                    continue
                if _same_pair(write.after, old.before) and not _same_pair(old.after, old.before):
                    edge(old.address, write.address)

    def order_replacement(
        self, gone: Change, new: list[Change], view: PlanView, edge: Edge
    ) -> None:
        """Create first, unless the identity is at Azure's limit (room first), the new one
        takes the old one's issuer and subject (Azure refuses a duplicate pair), or the old
        one goes with a connection that leaves an organisation."""
        parent = str((gone.before or {}).get("identity"))
        full = _live_count(view, parent) + len(new) > MAX_CREDENTIALS_PER_IDENTITY
        serving = _serving(view)
        for created in new:
            if gone.address in serving and _served_organization(created) != serving[gone.address]:
                # the credential of a connection that leaves an organisation keeps nothing
                # signing in for a credential made for anything else (an edge would close a
                # cycle through the identity's inventory)
                if full:
                    edge(gone.address, created.address)
                continue
            if full or _same_pair(created.after, gone.before):
                edge(gone.address, created.address)
            else:
                edge(created.address, gone.address)

    # after the connections: one that is exported writes its credential itself
    export_order: int = 3

    def export(self, current: LiveResource, view: ExportView) -> Exported | None:
        """The credential as a ``federatedCredentials[]`` entry of its identity; implied (not
        written) when an exported connection signs in as that identity with its issuer and
        subject. A credential that cannot be declared blocks its identity: adopting the
        identity would delete every credential the specs do not declare."""
        attrs = current.attrs
        identity = str(attrs["identity"])
        parent = Address(Kind.IDENTITY, identity)
        label = f"federated credential {attrs['name']} on identity {short_name(identity)}"
        pair = (str(attrs.get("issuer")), str(attrs.get("subject")))
        for key in view.live.federations.get(pair, ()):
            address = Address(Kind.SERVICE_CONNECTION, key)
            found = view.exported.get(address)
            connection = view.live.resources.get(address)
            if (
                found is not None
                and not found.unexpressed
                and connection is not None
                and connection.attrs.get("identity") == identity
            ):
                return Exported(label, parent=parent, implied=True)
        node: dict[str, Any] = {
            "name": attrs["name"],
            "issuer": attrs.get("issuer"),
            "subject": attrs.get("subject"),
        }
        audiences = list(attrs.get("audiences") or [])
        unexpressed = ""
        taken = _implied_names(view).get((identity, str(attrs["name"]).lower()))
        if taken is not None:
            # the spec would declare this name twice: the connection's credential and this one
            return Exported(
                label,
                node,
                parent=parent,
                under="federatedCredentials",
                unexpressed=(
                    f"it has the name of the credential {taken} implies, but not the issuer "
                    "and subject that connection signs in with; rename or delete it, then "
                    "export again"
                ),
                blocks_parent=True,
            )
        if audiences != [DEFAULT_AUDIENCE]:
            node["audiences"] = audiences
            if len(audiences) != 1:
                unexpressed = (
                    f"it has {len(audiences)} audiences and a spec declares exactly one; "
                    "adopting its identity would delete it, so the identity is not exported"
                )
        return Exported(
            label,
            node,
            parent=parent,
            under="federatedCredentials",
            unexpressed=unexpressed,
            blocks_parent=bool(unexpressed),
        )


KIND = FederatedCredentialKind()


def _implied_names(view: ExportView) -> dict[tuple[str, str], str]:
    """(identity key, lower-case name) -> the exported connection whose implied credential
    has that name on that identity (``implied_credential_name``)."""
    found: dict[tuple[str, str], str] = view.memo.get("implied names") or {}
    if "implied names" not in view.memo:
        for address, item in view.exported.items():
            if item.section != "serviceConnections" or item.unexpressed:
                continue
            attrs = view.live.resources[address].attrs
            name = implied_credential_name(
                str(attrs["organization"]), str(attrs["project"]), str(attrs["name"])
            )
            found[(str(attrs.get("identity")), name.lower())] = f"connection {address.key}"
        view.memo["implied names"] = found
    return found


def _moved_by_connection(attrs: Mapping[str, Any], view: PlanView) -> bool:
    """Whether a connection's planned migration or conversion (``view.memo``, set by the
    service connection's rules) signs in with this credential now or afterwards: its change
    writes the new credential and deletes the old one itself, in the order that keeps sign-in
    working, so neither is planned on its own (an apply stopped between those steps leaves
    both)."""
    moves: Mapping[str, Any] = view.memo.get(TRANSITIONS) or {}
    pair = (attrs.get("issuer"), attrs.get("subject"))
    identity = str(attrs.get("identity") or "")
    return any(
        move.identity == identity and pair in (move.before, move.after) for move in moves.values()
    )


def _live_count(view: PlanView, identity: str) -> int:
    counts: dict[str, int] | None = view.memo.get("credentials per identity")
    if counts is None:
        counts = {}
        for current in view.live_of[Kind.FEDERATED_CREDENTIAL]:
            key = str(current.attrs.get("identity"))
            counts[key] = counts.get(key, 0) + 1
        view.memo["credentials per identity"] = counts
    return counts.get(identity, 0)


def _serving(view: PlanView) -> dict[Address, str]:
    """Credential deletes that go with a connection delete -> that connection's organisation
    (lower case). Built once per plan, when the order is made."""
    serving: dict[Address, str] | None = view.memo.get("serving")
    if serving is None:
        serving = {}
        for gone in view.changes.values():
            if gone.address.kind is Kind.SERVICE_CONNECTION and gone.action is Action.DELETE:
                org = str((gone.before or {}).get("organization") or "").lower()
                for credential in credentials_of_connection(view, gone):
                    serving.setdefault(credential, org)
        view.memo["serving"] = serving
    return serving


def _served_organization(change: Change) -> str | None:
    """The organisation (lower case) of the connection a credential create is made for."""
    served = (change.after or {}).get("serviceConnection")
    return str(served).split("/", 1)[0].lower() if served else None


def _same_pair(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    if not a or not b:
        return False
    pair_a = (a.get("issuer"), a.get("subject"))
    pair_b = (b.get("issuer"), b.get("subject"))
    if UNKNOWN in pair_a or UNKNOWN in pair_b or None in pair_a:
        return False
    return pair_a == pair_b


def _credentials_after(view: PlanView) -> dict[str, dict[Address, Mapping[str, Any]]]:
    """Per identity: every credential it will hold after apply, with its attributes."""
    holding: dict[str, dict[Address, Mapping[str, Any]]] = {}
    for resource in view.desired_of[Kind.FEDERATED_CREDENTIAL]:
        change = view.changes.get(resource.address)
        attrs = change.after if change and change.after is not None else resource.attrs
        holding.setdefault(str(resource.attrs["identity"]), {})[resource.address] = attrs
    for current in view.live_of[Kind.FEDERATED_CREDENTIAL]:
        identity = str(current.attrs.get("identity"))
        change = view.changes.get(current.address)
        if current.address in view.desired.resources:
            continue  # declared: counted above
        if Address(Kind.IDENTITY, identity) in view.replaced:
            continue  # gone with its identity
        if change is not None and change.action is Action.DELETE:
            continue
        holding.setdefault(identity, {})[current.address] = current.attrs
    return holding


def _credential_delete(
    attrs: Mapping[str, Any],
    view: PlanView,
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
    if kept and not (_made_for_owned_connection(attrs, view) or _renamed(attrs, view)):
        reason = Reason.OUT_OF_BAND
        detail = detail or "the specs do not declare it and no connection of this owner uses it"
    users = view.live.federations.get((str(attrs.get("issuer")), str(attrs.get("subject"))))
    if users:
        noun = "service connection" if len(users) == 1 else "service connections"
        verb = "signs" if len(users) == 1 else "sign"
        used = f"{noun} {', '.join(users)} {verb} in with it and would stop working"
        detail = f"{detail}; {used}" if detail else used
        destructive = True
    return reason, detail, destructive


def _renamed(attrs: Mapping[str, Any], view: PlanView) -> bool:
    declared: set[tuple[Any, Any, Any]] | None = view.memo.get("declared pairs")
    if declared is None:
        declared = {
            (r.attrs.get("identity"), r.attrs.get("issuer"), r.attrs.get("subject"))
            for r in view.desired_of[Kind.FEDERATED_CREDENTIAL]
        }
        view.memo["declared pairs"] = declared
    return (attrs.get("identity"), attrs.get("issuer"), attrs.get("subject")) in declared


def _made_for_owned_connection(attrs: Mapping[str, Any], view: PlanView) -> bool:
    pair = (attrs.get("issuer"), attrs.get("subject"))
    name = str(attrs.get("name") or "").lower()
    for connection in view.live_of[Kind.SERVICE_CONNECTION]:
        if connection.owner != view.owner:
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
