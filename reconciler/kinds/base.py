"""What a resource kind is: its semantics, as data and small pure functions.

A kind knows its natural key, which fields are declared (compared), which are immutable (a
change forces a replacement, and how), what it depends on, which writes must not overlap, and
whether losing it hurts. It makes no service calls: those live in the providers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from reconciler.changes import Action, Change, FieldChange, Notice, Reason
from reconciler.errors import Problem
from reconciler.model import (
    UNKNOWN,
    Address,
    DesiredState,
    Kind,
    LiveResource,
    LiveState,
    Ownership,
    Resource,
    Source,
    implied_credential_name,
)
from reconciler.references import Place, Report

# Action values (reconciler.plan.Action is a StrEnum): kinds do not import the planner, which
# imports them, so that no kind reaches another through it.
DELETE: Final = "delete"
CREATE: Final = "create"
DELETE_THEN_CREATE: Final = "delete-then-create"
CREATE_THEN_DELETE: Final = "create-then-delete"
LOSING: Final = frozenset({DELETE, DELETE_THEN_CREATE, CREATE_THEN_DELETE})


class ChangeLike(Protocol):
    """What a kind reads of a ``reconciler.plan.Change``."""

    @property
    def address(self) -> Address: ...

    @property
    def before(self) -> Mapping[str, Any] | None: ...

    @property
    def after(self) -> Mapping[str, Any] | None: ...


class KindSpec(Protocol):
    kind: Kind
    # fields compared between desired and live (live-only computed fields never make a diff)
    declared_fields: tuple[str, ...]
    # declared fields that cannot change in place: a change replaces the object
    immutable_fields: tuple[str, ...]
    # how a replacement runs (delete first when the name must be free, create first
    # otherwise); None for a kind that is never replaced (no field is immutable)
    replace_action: str | None  # an Action value
    # declared fields left alone when the spec does not set them (None = unmanaged)
    optional_fields: tuple[str, ...]
    # whether the object carries its own owner marker (credentials belong to their identity)
    has_marker: bool
    # how a person names the kind in progress lines and messages ("federated credential")
    noun: str
    # what a created or deleted object shows besides its title in the text and Markdown
    # renders: what a reviewer checks, plus the ids a delete will need
    shown_fields: tuple[str, ...]
    # the line next to a destructive change of this kind in the renders
    destructive_warning: str

    def natural_key(self, attrs: Mapping[str, Any]) -> str:
        """The canonical key (``Address.key``) of an object with these attributes."""
        ...

    def canonical(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """The declared fields in comparable form (case, order and spelling folded away)."""
        ...

    def dependencies(self, attrs: Mapping[str, Any]) -> tuple[Address, ...]:
        """Objects that must exist before this one (deletes run the other way round)."""
        ...

    def identity_of(self, attrs: Mapping[str, Any]) -> str | None:
        """The identity key this object belongs to (for grouping and create-before-delete)."""
        ...

    def is_destructive(self, action: str) -> bool:
        """Whether this action loses something a user cannot get back by applying again."""
        ...

    def title(self, change: Mapping[str, Any]) -> str:
        """A change of the plan document (its JSON form: ``key``, ``after``, ``before``,
        ``role_name``) as a reader names its object in the text and Markdown renders."""
        ...

    def display(
        self, address: Address, attrs: Mapping[str, Any], label: Callable[[str], str | None]
    ) -> str | None:
        """The object's short name in apply progress (after the noun), from its key with the
        declared spelling of ``attrs``; ``label(key)`` is an identity's label when identities
        share a name (else None). None when the key has not the kind's shape."""
        ...

    def identity_in_key(self, address: Address) -> str | None:
        """The identity key an address names (its own, or its parent's), else None."""
        ...

    # the planning hooks (defaults in ``Rules``; see there)
    plan_order: int
    selectable: bool

    def parent(self, attrs: Mapping[str, Any]) -> Address | None: ...

    def prepare(self, view: PlanView) -> None: ...

    def enrich(self, address: Address, after: dict[str, Any], view: PlanView) -> None: ...

    def cascade(self, parent: Address) -> tuple[Action, str]: ...

    def plan_live_only(
        self, current: LiveResource, ownership: Ownership, view: PlanView
    ) -> None: ...

    def conflicts(self, view: PlanView) -> list[str]: ...

    def checks(self, view: PlanView) -> list[str]: ...

    def edges(self, view: PlanView, edge: Edge) -> None: ...

    def order_replacement(
        self, gone: Change, new: list[Change], view: PlanView, edge: Edge
    ) -> None: ...

    output_section: str | None
    operations: Mapping[str, str]
    is_identity: bool
    plural: str
    spec_section: str
    spec_parent: str | None
    spec_late: bool

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
    ) -> None: ...

    def count_text(self, resources: list[Resource]) -> str: ...

    def describe(self, resource: Resource, roles: Mapping[str, str]) -> list[str]: ...

    def warnings(self, resources: list[Resource], builtin: Mapping[str, str]) -> list[Problem]: ...

    def operation_of(
        self, fields: tuple[FieldChange, ...], before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> str: ...

    def operation_detail(
        self, operation: str, before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> str: ...

    def output(
        self, resource: Resource, found: LiveResource | None, tenant_id: str
    ) -> dict[str, Any]: ...

    def place(self, attrs: Mapping[str, Any]) -> Place | None: ...

    def check_references(
        self, resources: Iterable[Resource], live: LiveState, report: Report
    ) -> None: ...

    def resolve(self, desired: DesiredState, live: LiveState) -> DesiredState: ...

    def role_guid(self, attrs: Mapping[str, Any]) -> str | None: ...

    def includes(self, address: Address, other: Address, attrs: Mapping[str, Any]) -> bool: ...

    # the export hook (``reconciler export``; default in ``Rules``: not exportable)
    export_order: int

    def export(self, current: LiveResource, view: ExportView) -> Exported | None: ...


# -- export: a live object as the spec would declare it (``reconciler.export`` writes it) -------


@dataclass(frozen=True)
class Exported:
    """One live object as a spec entry, or why it cannot be one.

    ``node``: the entry's fields in the order a person writes them (no defaults factored
    yet); ``section``: the top-level list it goes in (``identities``, ``serviceConnections``),
    or ``parent`` and ``under``: the list of the parent's entry it goes in. ``defaults``: the
    fields of ``node`` the file's ``defaults`` may hold instead. ``place``: where it lives, for
    ``--split`` (``subscription``, ``resourceGroup``, ``organization``, ``project``; a child
    goes with its parent). ``unexpressed``: why it is not written ('' when it is): the writer
    puts it in a comment with ``label``. ``implied``: another entry writes it (a connection's
    federated credential), so it is neither written nor commented. ``note``: a comment
    written above the entry (a fact a reviewer should know)."""

    label: str
    node: dict[str, Any] = field(default_factory=dict)
    section: str = ""
    parent: Address | None = None
    under: str = ""
    defaults: tuple[str, ...] = ()
    place: Mapping[str, str] = field(default_factory=dict)
    unexpressed: str = ""
    implied: bool = False
    note: str = ""
    # an unexpressed child whose parent must not be exported either (adopting the parent
    # would delete it: an identity's undeclared credentials are pruned)
    blocks_parent: bool = False


class ExportView(Protocol):
    """What a kind sees while the estate is exported: the live state read for the export
    scope, the owner the specs will name, the objects exported so far (kinds export in
    ``export_order``), and role names."""

    live: LiveState
    owner: str
    exported: dict[Address, Exported]
    memo: dict[str, Any]  # a per-export cache for indexes a kind builds once

    def role_name(self, guid: str, scope: str) -> str | None:
        """The role's name when the spec can name it unambiguously at ``scope``, else None."""
        ...

    def identity_ref(self, key: str) -> str | dict[str, str]:
        """How a connection names the exported identity ``key``: its name, or
        ``{name, resourceGroup, subscription}`` when exported identities share the name."""
        ...


DESTROYS_IDS: Final = (
    "!! DESTRUCTIVE: this loses ids, grants or pipeline permissions; apply needs --allow-destroy"
)


def identity_label(key: str, label: Callable[[str], str | None]) -> str:
    """An identity's label, else its name (the last part of its key)."""
    return label(key) or key.rpartition("/")[2]


def short_name(identity: Any) -> str:
    """An identity's name from its key (``sub/rg/name``); '' for none."""
    return str(identity).rsplit("/", 1)[-1] if identity else ""


# -- planning: what the rules of a kind decide, and what they see of the planner ------------

Edge = Callable[[Address, Address], None]  # edge(first, then): ``then`` waits for ``first``
DELETES: Final = (Action.DELETE, Action.DELETE_THEN_CREATE)
# ``PlanView.memo`` key the service connection's rules fill: connection key -> its in-place
# migration or conversion (an object with ``identity``, ``before`` and ``after`` (issuer,
# subject) pairs); the credential rules read it (kinds do not import each other)
TRANSITIONS: Final = "service connection transitions"


class PlanView(Protocol):
    """What a kind's rules see of the planner (``reconciler.plan``) while it plans: the
    desired and live state, the changes so far, and what happened to each object.

    ``created``, ``replaced`` and ``adopted`` hold the addresses this plan creates, replaces
    or takes over; ``memo`` is a per-plan cache for indexes a kind builds once."""

    desired: DesiredState
    live: LiveState
    owner: str
    changes: dict[Address, Change]
    notices: list[Notice]
    created: set[Address]
    replaced: set[Address]
    adopted: set[Address]
    desired_of: dict[Kind, list[Resource]]
    live_of: dict[Kind, list[LiveResource]]
    memo: dict[str, Any]

    def add(self, change: Change) -> None: ...

    def prune(
        self, current: LiveResource, reason: Reason, detail: str, *, destructive: bool
    ) -> None:
        """Plan the delete of the live-only ``current`` (its fingerprint recorded)."""
        ...

    def replace_desired(self, resources: dict[Address, Resource]) -> None:
        """Plan ``resources`` instead of the desired ones (a kind matched one to live)."""
        ...


class Rules:
    """The defaults of the planning hooks; a kind overrides what it decides differently."""

    kind: Kind
    # the order kinds are planned in (what an identity's plan decides, its dependents read)
    plan_order: int = 0
    # whether ``--only NAME`` selects objects of this kind by the end of their key
    selectable: bool = False

    def is_destructive(self, action: str) -> bool:
        return False

    def parent(self, attrs: Mapping[str, Any]) -> Address | None:
        """The object whose replacement this one follows (a child's identity), else None."""
        return None

    def prepare(self, view: PlanView) -> None:
        """Before anything is planned: adjust the desired objects of this kind to live."""

    def enrich(self, address: Address, after: dict[str, Any], view: PlanView) -> None:
        """Add to ``after`` (the desired attributes) what the plan derives from live state
        for apply, ``UNKNOWN`` where only the service can tell."""

    def cascade(self, parent: Address) -> tuple[Action, str]:
        """The action and detail of this object when ``parent`` is replaced."""
        return Action.DELETE_THEN_CREATE, f"{parent.key.rsplit('/', 1)[-1]} is replaced"

    def plan_live_only(self, current: LiveResource, ownership: Ownership, view: PlanView) -> None:
        """A live object the specs do not declare: an owned one is pruned."""
        if ownership is Ownership.OWNED:
            view.prune(
                current, Reason.NOT_IN_SPEC, "", destructive=self.is_destructive(Action.DELETE)
            )

    def conflicts(self, view: PlanView) -> list[str]:
        """Problems with the planned state that Azure would refuse (checked first)."""
        return []

    def checks(self, view: PlanView) -> list[str]:
        """Hard limits the planned state would exceed."""
        return []

    def edges(self, view: PlanView, edge: Edge) -> None:
        """Ordering edges of this kind's changes beyond the declared dependencies."""

    def order_replacement(
        self, gone: Change, new: list[Change], view: PlanView, edge: Edge
    ) -> None:
        """Order the delete ``gone`` against the creates ``new`` of this kind under the same
        parent: by default the new objects exist before the old one goes."""
        for created in new:
            edge(created.address, gone.address)

    # the identity itself: the other kinds hang off one, and the Markdown view groups by it
    is_identity: bool = False
    # the spec section whose entries build objects of this kind, and the section it is nested
    # in (None: top level); a late one is built after every file's identities
    spec_section: str = ""
    spec_parent: str | None = None
    spec_late: bool = False

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
        """Build the objects one spec entry (at ``path``, schema-valid) declares, reporting
        what is wrong with it through ``ctx``; ``identity``: the identity it is nested in."""

    # the noun's plural in counts ("identities"; by default the noun and an s)
    plural: str = ""

    def count_text(self, resources: list[Resource]) -> str:
        """How ``validate`` counts the declared objects of this kind ("3 role assignments")."""
        noun = getattr(self, "noun", self.kind.value)
        word = noun if len(resources) == 1 else (self.plural or f"{noun}s")
        return f"{len(resources)} {word}"

    def describe(self, resource: Resource, roles: Mapping[str, str]) -> list[str]:
        """``validate --verbose`` lines of one declared object (indented under its identity);
        ``roles``: Azure's built-in role names by GUID."""
        return []

    def warnings(self, resources: list[Resource], builtin: Mapping[str, str]) -> list[Problem]:
        """Offline warnings on the declared objects (``builtin``: Azure's built-in role names
        -> GUIDs); each a ``Problem`` whose message starts with ``warning:``."""
        return []

    # the operations an update of this kind may name (``Change.operation``), each with how the
    # renderers say it ("its issuer moves to Microsoft Entra ID"); none: plain updates only
    operations: Mapping[str, str] = {}

    def operation_of(
        self, fields: tuple[FieldChange, ...], before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> str:
        """The operation an update with these field changes performs (a key of
        ``operations``), or "" for a plain update of the declared fields."""
        return ""

    def operation_detail(
        self, operation: str, before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> str:
        """What a change performing ``operation`` adds to its ``detail`` about this object
        (the identity a converted connection signs in as); '' for nothing."""
        return ""

    # the section of ``reconciler output`` listing this kind's live ids (None: not listed)
    output_section: str | None = None

    def output(
        self, resource: Resource, found: LiveResource | None, tenant_id: str
    ) -> dict[str, Any]:
        """A declared object's entry in ``reconciler output`` (README "reconciler output")."""
        return {"address": str(resource.address), "present": found is not None}

    def place(self, attrs: Mapping[str, Any]) -> Place | None:
        """The subscription and resource group an object lives in, checked against live state
        (``references.check_place``); None for one that names none of its own."""
        return None

    def check_references(
        self, resources: Iterable[Resource], live: LiveState, report: Report
    ) -> None:
        """Report each other name these objects give that live state shows is missing."""

    def resolve(self, desired: DesiredState, live: LiveState) -> DesiredState:
        """The specs with what only live state can tell filled in (role names to GUIDs)."""
        return desired

    def role_guid(self, attrs: Mapping[str, Any]) -> str | None:
        """The role definition GUID a change grants, for naming it (role assignments)."""
        return None

    def includes(self, address: Address, other: Address, attrs: Mapping[str, Any]) -> bool:
        """Whether ``--only`` of ``address`` (this kind) takes ``other`` (with ``attrs``) too."""
        return False

    # the order kinds are exported in (a connection reads which identities were exported)
    export_order: int = 0

    def export(self, current: LiveResource, view: ExportView) -> Exported | None:
        """``current`` as a spec entry (``Exported``), or None when the kind is not written
        in specs. Pure: the inverse of how ``reconciler.specs`` builds the kind."""
        return None


def short_identity(key: str | None) -> str:
    """An identity's name from its key (``sub/rg/name``), for messages; '?' for none."""
    return (key or "?").rsplit("/", 1)[-1]


def unknowns(attrs: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k, v in attrs.items() if v is UNKNOWN))


def credentials_of_connection(view: PlanView, connection: Change) -> list[Address]:
    """Credential deletes that belong to a connection being deleted (by issuer and subject, or
    by the name the tool gives a connection's credential): DevOps refuses the connection's
    delete while they exist."""
    attrs = connection.before or {}
    implied = implied_credential_name(
        str(attrs.get("organization")), str(attrs.get("project")), str(attrs.get("name"))
    ).lower()
    pair = (attrs.get("issuer"), attrs.get("subject"))
    found = []
    for change in view.changes.values():
        if change.address.kind is not Kind.FEDERATED_CREDENTIAL:
            continue
        if change.action not in DELETES or change.before is None:
            continue
        cred = change.before
        same_pair = pair[0] and (cred.get("issuer"), cred.get("subject")) == pair
        if same_pair or str(cred.get("name", "")).lower() == implied:
            found.append(change.address)
    return found


def identity_live(view: PlanView, key: Any) -> LiveResource | None:
    """The live identity ``key`` names, unless this plan creates it (or none is named)."""
    if not key:
        return None
    address = Address(Kind.IDENTITY, str(key))
    if address in view.created:
        return None
    return view.live.resources.get(address)


class IdentityChild(Rules):
    """Shared behaviour of kinds that hang off one identity (``attrs["identity"]``)."""

    def parent(self, attrs: Mapping[str, Any]) -> Address | None:
        identity = attrs.get("identity")
        return Address(Kind.IDENTITY, str(identity)) if identity else None

    def dependencies(self, attrs: Mapping[str, Any]) -> tuple[Address, ...]:
        identity = attrs.get("identity")
        return (Address(Kind.IDENTITY, identity),) if identity else ()

    def identity_of(self, attrs: Mapping[str, Any]) -> str | None:
        value = attrs.get("identity")
        return str(value) if value else None

    def identity_in_key(self, address: Address) -> str | None:
        return None


# -- building from the spec: what a kind's rules see of the spec reader ----------------------


@dataclass
class DeclaredIdentity:
    """An identity the specs declare, as its dependents' entries need it while building."""

    key: str
    name: str
    subscription: str
    resource_group: str
    address: Address
    source: Source
    credentials: list[str] = field(default_factory=list)  # declared credential names
    implied: list[str] = field(default_factory=list)  # keys of connections implying one
    issuer_subjects: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)


class BuildContext(Protocol):
    """What a kind's ``build`` sees of the spec reader (``reconciler.specs``): where things
    were written, how to report a problem there, and the objects built so far."""

    resources: dict[Address, Resource]
    # an entry was skipped, so "no such identity" may be a consequence, not the cause
    incomplete: bool

    def problem(
        self, file: str, root: Any, path: list[str | int], message: str, *, key: bool = False
    ) -> None:
        """Report ``message`` at the value (or with ``key``, the key) at ``path``."""
        ...

    def source(self, file: str, spec: Any, path: list[str | int]) -> Source: ...

    def at(self, file: str, root: Any, path: list[str | int]) -> Source: ...

    def given(
        self, file: str, root: Any, path: list[str | int], spec: Mapping[str, Any], name: str
    ) -> Source: ...

    def add(
        self, resource: Resource, label: str, file: str, root: Any, path: list[str | int]
    ) -> bool:
        """Add ``resource`` unless its address is taken (then a problem naming ``label``)."""
        ...

    def declare_identity(self, identity: DeclaredIdentity) -> None: ...

    def find_identity(self, ref: Any) -> tuple[DeclaredIdentity | None, str | None]:
        """The identity an entry names (a name, or {name, resourceGroup, subscription}), or
        why not ("" when an earlier problem probably explains it)."""
        ...

    def build_children(
        self,
        file: str,
        root: Any,
        path: list[str | int],
        spec: Mapping[str, Any],
        identity: DeclaredIdentity,
        bad: set[tuple[str | int, ...]],
    ) -> None:
        """Build the entries nested in an identity's entry, each by its kind."""
        ...

    def check_scope(self, scope: str) -> str | None:
        """Why ``scope`` is not a valid ARM scope, or None."""
        ...

    def role_definition(self, role: str) -> tuple[str | None, str | None]:
        """(role definition GUID, or None when the live catalogue must tell; error or None)."""
        ...
