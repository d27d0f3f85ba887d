"""The plan's values: actions, reasons, field changes, changes, notices and the plan.

Plain frozen values with no clients, no callables and no rendering, so that a plan can be
saved, shown and applied later. Below the planner (``plan.py`` builds them), the differ
(``diff.py`` returns ``FieldChange``), the renderers and the executor, which all read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.model import Address, Ownership, Source


class Action(StrEnum):
    NOOP = "no-op"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    DELETE_THEN_CREATE = "delete-then-create"
    CREATE_THEN_DELETE = "create-then-delete"

    @property
    def is_replace(self) -> bool:
        return self in (Action.DELETE_THEN_CREATE, Action.CREATE_THEN_DELETE)

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]


_SYMBOLS = {
    Action.NOOP: " ",
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.DELETE: "-",
    Action.DELETE_THEN_CREATE: "-/+",
    Action.CREATE_THEN_DELETE: "+/-",
}


class Reason(StrEnum):
    """Why a change is in the plan; shown to the reader."""

    NEW = "new in spec"
    NOT_IN_SPEC = "not in spec"
    FIELDS_CHANGED = "fields differ"
    IMMUTABLE_CHANGED = "immutable field changed"
    DEPENDENCY_REPLACED = "dependency replaced"
    ADOPTION = "adoption"
    # a federated credential on an identity the specs keep (declared or adopted) that the specs
    # do not declare and that no service connection of this owner uses: someone added it
    OUT_OF_BAND = "added out of band"


@dataclass(frozen=True)
class FieldChange:
    """One declared field that differs. ``after`` may be ``UNKNOWN`` (known after apply)."""

    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Change:
    address: Address
    action: Action
    reason: Reason
    # a short human sentence that completes the reason (e.g. which immutable field moved)
    detail: str = ""
    # canonical live attributes (None for a create) and desired attributes (None for a delete)
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    fields: tuple[FieldChange, ...] = ()
    # attribute paths in ``after`` whose value only the service can tell (known after apply)
    unknowns: tuple[str, ...] = ()
    ownership: Ownership | None = None
    source: Source | None = None
    depends_on: tuple[Address, ...] = ()
    # position in the apply order: every change of wave N may run once waves < N are done
    wave: int = 0
    # deletes or replaces an identity or a service connection, or deletes a federated
    # credential a live service connection signs in with: needs --allow-destroy
    destructive: bool = False
    # a role assignment's role as a person reads it (from the live role definitions), so that
    # a pruned assignment is not shown by its GUID; None for other kinds or an unknown role
    role_name: str | None = None
    # the kind's name for what an update does beyond writing the declared fields (one of its
    # rules' ``operations``, e.g. a connection's issuer migration); "" for a plain update. The
    # action set stays closed: an operation is always an ``update``
    operation: str = ""


class NoticeLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"


@dataclass(frozen=True)
class Notice:
    """Something the reader must know that is not a change (e.g. a foreign role assignment)."""

    level: NoticeLevel
    message: str
    address: Address | None = None


@dataclass(frozen=True)
class Plan:
    owner: str
    # every change that is not a no-op, in apply order (wave, then address)
    changes: tuple[Change, ...] = ()
    notices: tuple[Notice, ...] = ()
    # how many desired resources already match
    unchanged: int = 0
    # fingerprints of the live objects read (address -> digest), for stale-plan detection
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    # digest of the spec files the plan was made from
    spec_digest: str = ""
    # --only: the selectors a partial plan was restricted to (empty: the whole specs)
    only: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        return bool(self.only)

    @property
    def empty(self) -> bool:
        return not self.changes

    def waves(self) -> list[list[Change]]:
        grouped: dict[int, list[Change]] = {}
        for change in self.changes:
            grouped.setdefault(change.wave, []).append(change)
        return [grouped[w] for w in sorted(grouped)]

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "replace": 0, "delete": 0}
        for change in self.changes:
            if change.action.is_replace:
                out["replace"] += 1
            elif change.action is not Action.NOOP:
                out[change.action.value] += 1
        return out
