"""Terraform-like text for a terminal or a log, rendered from the plan document.

One block per change in apply order, field-level ``before -> after``, reasons, destructive
changes flagged loudly, notices, and a summary line. Colour only when asked for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from reconciler.kinds import rules_named
from reconciler.kinds.base import DESTROYS_IDS
from reconciler.render.document import UNKNOWN_TEXT

_SYMBOLS: Final = {
    "create": "+",
    "update": "~",
    "delete": "-",
    "delete-then-create": "-/+",
    "create-then-delete": "+/-",
    "no-op": " ",
}
_PHRASES: Final = {
    "create": "will be created",
    "update": "will be updated in place",
    "delete": "will be deleted",
    "delete-then-create": "will be deleted, then created again",
    "create-then-delete": "will be created again, then the old one deleted",
    "no-op": "stays as it is",
}
_COLORS: Final = {
    "create": "32",
    "update": "33",
    "delete": "31",
    "delete-then-create": "35",
    "create-then-delete": "35",
}
_RESET: Final = "\x1b[0m"


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}{_RESET}" if self.color and text else text

    def action(self, text: str, action: str) -> str:
        return self.paint(text, _COLORS.get(action, "0"))

    def bold(self, text: str) -> str:
        return self.paint(text, "1")

    def alarm(self, text: str) -> str:
        return self.paint(text, "1;31")

    def dim(self, text: str) -> str:
        return self.paint(text, "2")


def value_text(value: Any) -> str:
    """A value as the reader should see it: JSON, but ``(known after apply)`` bare."""
    if value == UNKNOWN_TEXT:
        return UNKNOWN_TEXT
    if value is None:
        return "(none)"
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def title(change: Mapping[str, Any]) -> str:
    """A change's object as a reader names it (the address is in the JSON document)."""
    rules = rules_named(str(change.get("kind", "")))
    return rules.title(change) if rules is not None else str(change.get("address", ""))


def operation_text(change: Mapping[str, Any]) -> str:
    """': {what the operation does}' for an update whose kind names its operation, as the
    kind's rules word it; '' for a plain update."""
    operation = str(change.get("operation") or "")
    if not operation:
        return ""
    rules = rules_named(str(change.get("kind", "")))
    label = rules.operations.get(operation) if rules is not None else None
    return f": {label or operation}"


def destructive_warning(change: Mapping[str, Any]) -> str:
    """The line shown next to a destructive change: what its kind loses."""
    rules = rules_named(str(change.get("kind", "")))
    return rules.destructive_warning if rules is not None else DESTROYS_IDS


def _where(change: Mapping[str, Any]) -> str:
    source = change.get("source")
    return f"{source['file']}:{source['line']}" if source else ""


def _reason(change: Mapping[str, Any]) -> str:
    detail = change.get("detail") or ""
    return f"{change['reason']}: {detail}" if detail else str(change["reason"])


def shown_attrs(change: Mapping[str, Any], attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes worth showing for a created or deleted object, in a stable order."""
    rules = rules_named(str(change.get("kind")))
    if rules is None:
        return dict(sorted(attrs.items()))
    return {n: attrs[n] for n in rules.shown_fields if n in attrs}


def _attr_lines(attrs: Mapping[str, Any], sign: str) -> list[str]:
    shown = {k: v for k, v in attrs.items() if v not in (None, [], {})}
    width = max((len(k) for k in shown), default=0)
    return [f"{sign} {k.ljust(width)} = {value_text(v)}" for k, v in shown.items()]


def _field_lines(fields: Sequence[Mapping[str, Any]]) -> list[str]:
    width = max((len(str(f["path"])) for f in fields), default=0)
    return [
        f"~ {str(f['path']).ljust(width)} = {value_text(f['before'])} -> {value_text(f['after'])}"
        for f in fields
    ]


def _plan_block(change: Mapping[str, Any], style: _Style) -> list[str]:
    action = str(change["action"])
    symbol = _SYMBOLS.get(action, "?")
    head = f"{style.action(symbol.rjust(3), action)} {style.bold(title(change))}"
    lines = [head]
    phrase = f"{_PHRASES.get(action, action)}{operation_text(change)} ({_reason(change)})"
    where = _where(change)
    lines.append(f"      {phrase}" + (f"  {style.dim(where)}" if where else ""))
    if change.get("destructive"):
        lines.append("      " + style.alarm(destructive_warning(change)))
    if action == "create":
        body = _attr_lines(shown_attrs(change, change.get("after") or {}), "+")
    elif action == "delete":
        body = _attr_lines(shown_attrs(change, change.get("before") or {}), "-")
    else:
        body = _field_lines(change.get("fields") or [])
        listed = {str(f["path"]) for f in change.get("fields") or []}
        after = change.get("after") or {}
        for name in change.get("unknowns") or []:
            if name not in listed:
                body.append(f"~ {name} = {value_text(after.get(name))}")
    lines.extend(f"      {line}" for line in body)
    return lines


def _drift_block(change: Mapping[str, Any], style: _Style) -> list[str]:
    action = str(change["action"])
    symbol = _SYMBOLS.get(action, "?")
    lines = [f"{style.action(symbol.rjust(3), action)} {style.bold(title(change))}"]
    where = _where(change)
    if action == "create":
        lines.append(
            "      missing in live: the specs declare it" + (f" ({where})" if where else "")
        )
    elif action == "delete":
        owner = change.get("ownership")
        # a credential someone added says so first (plan-format.md: added out of band)
        added = "added out of band: " if change.get("reason") == "added out of band" else ""
        lines.append(
            f"      {added}live has it, the specs do not declare it"
            + (f" (marked {owner})" if owner else "")
            + (f": {change['detail']}" if change.get("detail") else "")
        )
    else:
        lines.append(f"      {_reason(change)}" + (f"  {style.dim(where)}" if where else ""))
        for field in change.get("fields") or []:
            lines.append(
                f"      {field['path']}: live has {value_text(field['before'])}, "
                f"spec says {value_text(field['after'])}"
            )
    if by := changed_by_text(change.get("changed_by")):
        lines.append(f"      {by}")
    return lines


def changed_by_text(by: Mapping[str, Any] | None) -> str:
    """Who changed a drifted object (``changed_by``, plan-format.md 1.2), as one phrase;
    "" when the document does not say."""
    if not by:
        return ""
    if by.get("caller") is None:
        return f"changed by: unknown ({by.get('unknown') or 'no reason given'})"
    status = f", {by['status']}" if by.get("status") else ""
    return (
        f"changed by {by['caller']} at {by.get('time')} "
        f"({by.get('operation')}{status}; {by.get('source')})"
    )


def reads_lines(document: Mapping[str, Any]) -> list[str]:
    """What a drift run read in full and what incrementally, and why (``reads``)."""
    reads = document.get("reads") or []
    lines: list[str] = []
    for read, heading in (("full", "Read in full:"), ("incremental", "Read incrementally:")):
        parts = [r for r in reads if r.get("read") == read]
        if parts:
            lines += ["", heading]
            lines += [f"  {r.get('part')}: {r.get('why')}" for r in parts]
    return lines


def _summary_line(summary: Mapping[str, Any]) -> str:
    return (
        f"Plan: {summary.get('create', 0)} to create, {summary.get('update', 0)} to update, "
        f"{summary.get('replace', 0)} to replace, {summary.get('delete', 0)} to delete."
    )


def _notice_lines(document: Mapping[str, Any], style: _Style) -> list[str]:
    notices = document.get("notices") or []
    if not notices:
        return []
    lines = ["", style.bold("Notices:")]
    for notice in notices:
        mark = "!" if notice.get("level") == "warning" else "i"
        lines.append(f"  {mark} {notice['message']}")
    return lines


def partial_note(document: Mapping[str, Any]) -> str:
    """The sentence a partial (``--only``) plan or drift report starts with, else ""."""
    only = [str(o) for o in document.get("only") or []]
    if not document.get("partial") or not only:
        return ""
    what = "checked" if document.get("mode") == "drift" else "planned"
    return (
        f"Partial: only {', '.join(only)} and what depends on them were {what} "
        "(--only); the rest of the specs was left out, and nothing else is pruned."
    )


def render_text(document: Mapping[str, Any], *, color: bool = False) -> str:
    style = _Style(color)
    drift = document.get("mode") == "drift"
    changes = document.get("changes") or []
    summary = document.get("summary") or {}
    owner = document.get("owner", "")
    lines: list[str] = []
    if note := partial_note(document):
        lines += [style.alarm(note), ""]
    if not changes:
        lines.append(
            "No drift. Live state matches the specs."
            if drift
            else "No changes. Live state matches the specs."
        )
        lines.extend(reads_lines(document))
        lines.extend(_notice_lines(document, style))
        return "\n".join(lines) + "\n"
    if drift:
        lines.append(f"Drift for owner {owner}: live state differs from the specs out of band.")
    else:
        lines.append(f"Plan for owner {owner}, in apply order:")
    lines.append("")
    for change in changes:
        lines.extend(_drift_block(change, style) if drift else _plan_block(change, style))
        lines.append("")
    if lines[-1] == "":
        lines.pop()
    lines.extend(reads_lines(document))
    lines.extend(_notice_lines(document, style))
    lines.append("")
    destructive = int(summary.get("destructive", 0))
    if drift:
        count = len(changes)
        lines.append(style.bold(f"Drift: {count} difference{'s' if count != 1 else ''}"))
    else:
        lines.append(style.bold(_summary_line(summary)))
        if destructive:
            lines.append(
                style.alarm(
                    f"{destructive} destructive change{'s' if destructive != 1 else ''} "
                    "(deleting or replacing an identity or a service connection, or a "
                    "federated credential a live connection signs in with): "
                    "apply needs --allow-destroy."
                )
            )
    return "\n".join(lines) + "\n"
