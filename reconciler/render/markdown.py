"""Markdown for pull-request comments, rendered from the plan document.

A summary table, destructive changes first, then one folded ``<details>`` section per identity
(its credentials, role assignments and connections under it), all under a size cap: GitHub
(65,536) and Azure DevOps (150,000) limit comment size, so what does not fit is left out with a
note that says how much and where the full plan is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from reconciler.render.text import shown_attrs, title, value_text

_SYMBOLS: Final = {
    "create": "+",
    "update": "~",
    "delete": "-",
    "delete-then-create": "-/+",
    "create-then-delete": "+/-",
}
_NO_IDENTITY: Final = "(no identity)"
_NOTICES_SHOWN: Final = 20


def _identity_of(change: Mapping[str, Any]) -> str:
    if change.get("kind") == "identity":
        return str(change.get("key", ""))
    for attrs in (change.get("after"), change.get("before")):
        if attrs and attrs.get("identity"):
            return str(attrs["identity"])
    return _NO_IDENTITY


def _identity_title(key: str) -> str:
    if key == _NO_IDENTITY:
        return "Role assignments whose identity no longer exists"
    parts = key.split("/")
    where = "/".join(parts[:-1])
    return f"<b>{parts[-1]}</b> <code>{where}</code>" if where else f"<b>{parts[-1]}</b>"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _change_lines(change: Mapping[str, Any], drift: bool) -> list[str]:
    action = str(change["action"])
    symbol = _SYMBOLS.get(action, "?")
    reason = str(change["reason"]) + (f": {change['detail']}" if change.get("detail") else "")
    lines = [f"{symbol} {title(change)}", f"#   {reason}"]
    if change.get("destructive"):
        lines.append("#   DESTRUCTIVE: apply needs --allow-destroy")
    if action == "create":
        attrs = shown_attrs(change, change.get("after") or {})
        if drift:
            lines.append("#   missing in live: the specs declare it")
        else:
            lines += [f"+   {k} = {value_text(v)}" for k, v in attrs.items() if v]
    elif action == "delete":
        attrs = shown_attrs(change, change.get("before") or {})
        if drift:
            lines.append("#   live has it, the specs do not declare it")
        else:
            lines += [f"-   {k} = {value_text(v)}" for k, v in attrs.items() if v]
    else:
        for field in change.get("fields") or []:
            before, after = value_text(field["before"]), value_text(field["after"])
            if drift:
                lines.append(f"!   {field['path']}: live has {before}, spec says {after}")
            else:
                lines.append(f"!   {field['path']}: {before} -> {after}")
    return lines


def _counts_text(changes: Sequence[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for change in changes:
        action = str(change["action"])
        word = "replace" if action in ("delete-then-create", "create-then-delete") else action
        counts[word] = counts.get(word, 0) + 1
    order = ("create", "update", "replace", "delete")
    return ", ".join(f"{counts[w]} to {w}" for w in order if counts.get(w))


def _section(key: str, changes: Sequence[Mapping[str, Any]], drift: bool) -> str:
    body: list[str] = []
    for change in changes:
        body.extend(_change_lines(change, drift))
        body.append("")
    if body and body[-1] == "":
        body.pop()
    flag = " ⚠️ destructive" if any(c.get("destructive") for c in changes) else ""
    summary = f"{_identity_title(key)}: {_counts_text(changes)}{flag}"
    return "\n".join(
        [f"<details><summary>{summary}</summary>", "", "```diff", *body, "```", "", "</details>"]
    )


def _head(document: Mapping[str, Any], drift: bool) -> list[str]:
    summary = document.get("summary") or {}
    changes = document.get("changes") or []
    owner = document.get("owner", "")
    if drift:
        title = f"### Drift: {len(changes)} difference{'s' if len(changes) != 1 else ''}"
    else:
        title = (
            f"### Plan: {summary.get('create', 0)} to create, {summary.get('update', 0)} to "
            f"update, {summary.get('replace', 0)} to replace, {summary.get('delete', 0)} to delete"
        )
    lines = [title, ""]
    if not changes:
        lines.append(
            "No drift. Live state matches the specs."
            if drift
            else "No changes. Live state matches the specs."
        )
        return lines
    lines += [
        f"Owner `{owner}` · {summary.get('unchanged', 0)} unchanged",
        "",
        "| action | count |" if not drift else "| difference | count |",
        "|---|---:|",
    ]
    if drift:
        differs = int(summary.get("update", 0)) + int(summary.get("replace", 0))
        lines.append(f"| `+` missing in live | {summary.get('create', 0)} |")
        lines.append(f"| `~` differs from the specs | {differs} |")
        lines.append(f"| `-` not in the specs | {summary.get('delete', 0)} |")
        return lines
    for word, symbol in (("create", "+"), ("update", "~"), ("replace", "-/+"), ("delete", "-")):
        lines.append(f"| `{symbol}` {word} | {summary.get(word, 0)} |")
    return lines


def _destructive(document: Mapping[str, Any]) -> list[str]:
    changes = [c for c in document.get("changes") or [] if c.get("destructive")]
    if not changes:
        return []
    lines = [
        "",
        f"#### ⚠️ {len(changes)} destructive change{'s' if len(changes) != 1 else ''} "
        "(apply needs `--allow-destroy`)",
        "",
    ]
    for change in changes:
        symbol = _SYMBOLS.get(str(change["action"]), "?")
        reason = str(change["reason"]) + (f": {change['detail']}" if change.get("detail") else "")
        lines.append(f"- `{symbol}` {_md_cell(title(change))}: {_md_cell(reason)}")
    return lines


def _notices(document: Mapping[str, Any]) -> list[str]:
    notices = document.get("notices") or []
    if not notices:
        return []
    lines = ["", "#### Notices", ""]
    for notice in notices[:_NOTICES_SHOWN]:
        mark = "⚠️" if notice.get("level") == "warning" else "ℹ️"
        lines.append(f"- {mark} {_md_cell(str(notice['message']))}")
    if len(notices) > _NOTICES_SHOWN:
        lines.append(f"- … and {len(notices) - _NOTICES_SHOWN} more in the full plan")
    return lines


def _left_out_note(sections: int, changes: int, max_chars: int) -> str:
    return (
        f"\n> **{sections} identity section{'s' if sections != 1 else ''} "
        f"({changes} change{'s' if changes != 1 else ''}) left out** to stay under "
        f"{max_chars:,} characters. The full plan is in the plan document saved with "
        "`reconciler plan --out FILE` (the pipeline artifact); `reconciler show FILE` renders it."
    )


def render_markdown(document: Mapping[str, Any], *, max_chars: int = 60000) -> str:
    drift = document.get("mode") == "drift"
    changes = list(document.get("changes") or [])
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for change in changes:
        groups.setdefault(_identity_of(change), []).append(change)
    # identities with destructive changes first, then by name
    order = sorted(
        groups,
        key=lambda k: (not any(c.get("destructive") for c in groups[k]), k.rsplit("/", 1)[-1], k),
    )
    head = "\n".join([*_head(document, drift), *_destructive(document), *_notices(document)])
    reserve = len(_left_out_note(len(order), len(changes), max_chars)) + 2
    parts = [head]
    if changes:
        parts.append("\n#### Changes per identity\n")
    size = sum(len(p) + 1 for p in parts)
    left_sections = left_changes = 0
    for key in order:
        section = _section(key, groups[key], drift)
        if left_sections == 0 and size + len(section) + 1 + reserve <= max_chars:
            parts.append(section)
            size += len(section) + 1
        else:
            left_sections += 1
            left_changes += len(groups[key])
    if left_sections:
        parts.append(_left_out_note(left_sections, left_changes, max_chars))
    text = "\n".join(parts) + "\n"
    if len(text) > max_chars:
        # even the summary does not fit (thousands of destructive changes): cut it hard
        note = _left_out_note(len(order), len(changes), max_chars)
        text = (text[: max(0, max_chars - len(note) - 2)].rstrip() + "\n" + note + "\n")[:max_chars]
    return text
