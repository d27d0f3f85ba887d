"""The versioned JSON plan document: the contract that text, Markdown, ``show`` and ``apply`` read.

``from_document(to_document(plan)) == plan`` holds exactly. A value only the service can tell
(``UNKNOWN``) is written as the string ``"(known after apply)"`` wherever it appears. The format is
described in ``docs/plan-format.md``; bump the minor version for additive changes, the major one
for anything a reader of an older document would misread.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from reconciler.changes import Action, Change, FieldChange, Notice, NoticeLevel, Plan, Reason
from reconciler.errors import PlanError
from reconciler.model import UNKNOWN, Address, Ownership, Source

FORMAT_VERSION: Final = "1.2"
UNKNOWN_TEXT: Final = "(known after apply)"
MODES: Final = ("plan", "drift")


def encode(value: Any) -> Any:
    """A JSON value, with UNKNOWN spelled out and tuples as lists."""
    if value is UNKNOWN:
        return UNKNOWN_TEXT
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    if value == UNKNOWN_TEXT:
        return UNKNOWN
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def summary(plan: Plan) -> dict[str, int]:
    counts = plan.counts()
    return {
        **counts,
        "unchanged": plan.unchanged,
        "destructive": sum(1 for c in plan.changes if c.destructive),
        "notices": len(plan.notices),
        "total": len(plan.changes),
    }


def _source(source: Source | None) -> dict[str, Any] | None:
    if source is None:
        return None
    return {"file": source.file, "line": source.line, "column": source.column, "path": source.path}


def _change(change: Change) -> dict[str, Any]:
    return {
        "address": str(change.address),
        "kind": change.address.kind.value,
        "key": change.address.key,
        "action": change.action.value,
        "reason": change.reason.value,
        "detail": change.detail,
        "before": encode(change.before) if change.before is not None else None,
        "after": encode(change.after) if change.after is not None else None,
        "fields": [
            {"path": f.path, "before": encode(f.before), "after": encode(f.after)}
            for f in change.fields
        ],
        "unknowns": list(change.unknowns),
        "ownership": change.ownership.value if change.ownership is not None else None,
        "source": _source(change.source),
        "depends_on": [str(a) for a in change.depends_on],
        "wave": change.wave,
        "destructive": change.destructive,
        "role_name": change.role_name,
        # 1.2: only on an update whose kind names its operation
        **({"operation": change.operation} if change.operation else {}),
    }


def to_document(plan: Plan, *, mode: str = "plan") -> dict[str, Any]:
    """The plan as a JSON-able dict. Stable for the same input: no timestamps, no randomness."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return {
        "format_version": FORMAT_VERSION,
        "mode": mode,
        "owner": plan.owner,
        "summary": summary(plan),
        "changes": [_change(c) for c in plan.changes],
        "notices": [
            {
                "level": n.level.value,
                "message": n.message,
                "address": str(n.address) if n.address is not None else None,
            }
            for n in plan.notices
        ],
        "fingerprints": dict(sorted(plan.fingerprints.items())),
        "spec_digest": plan.spec_digest,
        "partial": plan.partial,
        "only": list(plan.only),
    }


def check_version(document: Mapping[str, Any]) -> None:
    version = str(document.get("format_version", ""))
    major = version.split(".", 1)[0]
    if major != FORMAT_VERSION.split(".", 1)[0]:
        raise PlanError(
            f"plan document format {version or '(none)'} is not supported "
            f"(this version reads {FORMAT_VERSION.split('.', 1)[0]}.x)"
        )


def _read_source(data: Mapping[str, Any] | None) -> Source | None:
    if data is None:
        return None
    return Source(
        str(data["file"]), int(data["line"]), int(data.get("column", 1)), str(data.get("path", ""))
    )


def _read_change(data: Mapping[str, Any]) -> Change:
    ownership = data.get("ownership")
    return Change(
        address=Address.parse(str(data["address"])),
        action=Action(data["action"]),
        reason=Reason(data["reason"]),
        detail=str(data.get("detail", "")),
        before=decode(data["before"]) if data.get("before") is not None else None,
        after=decode(data["after"]) if data.get("after") is not None else None,
        fields=tuple(
            FieldChange(str(f["path"]), decode(f.get("before")), decode(f.get("after")))
            for f in data.get("fields", ())
        ),
        unknowns=tuple(str(u) for u in data.get("unknowns", ())),
        ownership=Ownership(ownership) if ownership is not None else None,
        source=_read_source(data.get("source")),
        depends_on=tuple(Address.parse(str(a)) for a in data.get("depends_on", ())),
        wave=int(data.get("wave", 0)),
        destructive=bool(data.get("destructive", False)),
        role_name=str(data["role_name"]) if data.get("role_name") else None,
        operation=str(data.get("operation") or ""),
    )


def from_document(document: Mapping[str, Any]) -> Plan:
    """The ``Plan`` a document describes; ``PlanError`` if it is not one this version reads."""
    check_version(document)
    try:
        return Plan(
            owner=str(document["owner"]),
            changes=tuple(_read_change(c) for c in document.get("changes", ())),
            notices=tuple(
                Notice(
                    NoticeLevel(n["level"]),
                    str(n["message"]),
                    Address.parse(n["address"]) if n.get("address") else None,
                )
                for n in document.get("notices", ())
            ),
            unchanged=int(document.get("summary", {}).get("unchanged", 0)),
            fingerprints={str(k): str(v) for k, v in document.get("fingerprints", {}).items()},
            spec_digest=str(document.get("spec_digest", "")),
            only=tuple(str(o) for o in document.get("only", ())),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise PlanError(f"not a valid plan document: {type(exc).__name__}: {exc}") from exc


# the keys of a change that say what apply does, compared one by one (``source`` apart: it only
# locates the declaration, and its file is spelled however the spec paths were given)
_COMPARED: Final = (
    "address",
    "kind",
    "key",
    "action",
    "reason",
    "detail",
    "before",
    "after",
    "fields",
    "unknowns",
    "ownership",
    "depends_on",
    "wave",
    "destructive",
    "operation",
)
_MISSING: Final = object()
# compared keys a change carries only when they apply, with their value when absent
_OPTIONAL: Final = {"operation": ""}


def _canonical(value: Any) -> str:
    # JSON text, so that 0 and false, or 1 and 1.0, are different values
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    text = _canonical(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _first_gap(mine: Any, other: Any, path: str) -> tuple[str, Any, Any]:
    """The deepest path where two JSON values part (``after.tags.purpose``), and both values."""
    if isinstance(mine, Mapping) and isinstance(other, Mapping):
        for key in sorted(set(mine) | set(other), key=str):
            a, b = mine.get(key, _MISSING), other.get(key, _MISSING)
            if a is _MISSING or b is _MISSING or _canonical(a) != _canonical(b):
                return _first_gap(a, b, f"{path}.{key}")
    if isinstance(mine, list) and isinstance(other, list) and len(mine) == len(other):
        for index, (a, b) in enumerate(zip(mine, other, strict=True)):
            if _canonical(a) != _canonical(b):
                return _first_gap(a, b, f"{path}[{index}]")
    return path, mine, other


def _comparable_source(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    out = dict(value)
    out["file"] = str(out.get("file", "")).replace("\\", "/").rsplit("/", 1)[-1]
    return out


def first_difference(saved: Mapping[str, Any], fresh: Mapping[str, Any]) -> str | None:
    """Where a saved plan document and a fresh one (same specs, same live state) disagree on
    what apply would do, as one sentence naming the first entry that differs; None when they
    agree.

    Compared: ``owner`` and every change, position by position, on every key that decides what
    apply does (address, action, reason, detail, before, after, fields, unknowns, ownership,
    depends_on, wave, destructive) by exact JSON value, plus the source's line, column, path and
    file name (not the folder it was read from). Not compared: notices, the summary, keys this
    version does not know (they change nothing that runs).
    """
    if saved.get("owner") != fresh.get("owner"):
        return (
            f"owner: the saved plan says {_shown(saved.get('owner', _MISSING))}, "
            f"a fresh plan {_shown(fresh.get('owner'))}"
        )
    ours = saved.get("changes", [])
    theirs = list(fresh.get("changes", []))
    if not isinstance(ours, list):
        return "changes: not a list"
    saved_addresses = {str(c.get("address")) for c in ours if isinstance(c, Mapping)}
    fresh_addresses = {str(c["address"]) for c in theirs}
    for index in range(max(len(ours), len(theirs))):
        entry = f"change {index + 1}"
        if index >= len(theirs):
            item = ours[index]
            address = item.get("address") if isinstance(item, Mapping) else item
            return f"{entry} ({address}): not in a fresh plan"
        want = theirs[index]
        if index >= len(ours):
            return (
                f"{entry} ({want['address']}): a fresh plan would {want['action']} it; "
                "the saved plan does not"
            )
        got = ours[index]
        if not isinstance(got, Mapping):
            return f"{entry}: not an object"
        address = str(got.get("address"))
        if address != want["address"]:
            if address not in fresh_addresses:
                return f"{entry} ({address}): not in a fresh plan"
            if want["address"] not in saved_addresses:
                return (
                    f"{entry} ({want['address']}): a fresh plan would {want['action']} it; "
                    "the saved plan does not"
                )
            return f"{entry} ({address}): out of order (a fresh plan has {want['address']} here)"
        for key in (*_COMPARED, "source"):
            mine, other = got.get(key, _MISSING), want.get(key)
            if key in _OPTIONAL:  # absent on both sides when it does not apply
                mine, other = got.get(key, _OPTIONAL[key]), want.get(key, _OPTIONAL[key])
            if key == "source":
                mine, other = _comparable_source(mine), _comparable_source(other)
            if mine is _MISSING or _canonical(mine) != _canonical(other):
                where, mine, other = _first_gap(mine, other, key)
                return (
                    f"{entry} ({address}): {where} differs: the saved plan has {_shown(mine)}, "
                    f"a fresh plan {_shown(other)}"
                )
    return None


def dumps(document: Mapping[str, Any]) -> str:
    """The document as stable JSON text (sorted keys, two-space indent, final newline)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def loads(text: str) -> dict[str, Any]:
    """Parse and version-check a saved document (``PlanError`` on anything else)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"not a plan document: line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(document, dict):
        raise PlanError("not a plan document: expected a JSON object")
    check_version(document)
    return document
