"""Markdown for pull-request comments, rendered from the plan document.

A summary table, destructive changes first, then one folded ``<details>`` section per identity
(its credentials, role assignments and connections under it), all under a size cap: GitHub
(65,536) and Azure DevOps (150,000) limit comment size, so what does not fit is left out with a
note that says how much and where the full plan is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from reconciler.kinds import rules_named
from reconciler.render.text import (
    changed_by_text,
    operation_text,
    partial_note,
    reads_lines,
    shown_attrs,
    title,
    value_text,
)

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
    rules = rules_named(str(change.get("kind", "")))
    if rules is not None and rules.is_identity:
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


def _change_lines(change: Mapping[str, Any], drift: bool, context: bool) -> list[str]:
    """The diff lines of one change; ``context`` adds the ``#`` lines that explain it (its
    reason, and in drift mode what the difference means), which say nothing about *what*
    changes and so are the first thing left out under a size cap."""
    action = str(change["action"])
    symbol = _SYMBOLS.get(action, "?")
    lines = [f"{symbol} {title(change)}{operation_text(change)}"]
    reason = str(change["reason"]) + (f": {change['detail']}" if change.get("detail") else "")
    if context and not (drift and action in ("create", "delete")):
        lines.append(f"#   {reason}")
    if change.get("destructive"):
        # never context: a reviewer must see it next to the change as well as in the list above
        lines.append(
            "#   DESTRUCTIVE: correcting it needs apply --allow-destroy"
            if drift
            else "#   DESTRUCTIVE: apply needs --allow-destroy"
        )
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
    if by := changed_by_text(change.get("changed_by")):
        # who changed it is what a drift reader looks for first: never cut as context
        lines.append(f"#   {by}")
    return lines


def _reads(document: Mapping[str, Any]) -> list[str]:
    """What a drift run read in full or incrementally, and why, as list items."""
    lines: list[str] = []
    for line in reads_lines(document):
        if not line:
            lines.append("")
        elif line.startswith("  "):
            lines.append(f"- {_md_cell(line.strip())}")
        else:
            lines += [f"**{line}**", ""]
    return lines


# drift mode names each kind of difference the way the summary table does
_DRIFT_WORDS: Final = {
    "create": "missing in live",
    "update": "differ from the specs",
    "replace": "differ from the specs",
    "delete": "not in the specs",
}


def _counts_text(changes: Sequence[Mapping[str, Any]], drift: bool) -> str:
    counts: dict[str, int] = {}
    for change in changes:
        action = str(change["action"])
        word = "replace" if action in ("delete-then-create", "create-then-delete") else action
        if drift:
            word = _DRIFT_WORDS.get(word, word)
        counts[word] = counts.get(word, 0) + 1
    if drift:
        order: tuple[str, ...] = ("missing in live", "differ from the specs", "not in the specs")
        return ", ".join(f"{counts[w]} {w}" for w in order if counts.get(w))
    order = ("create", "update", "replace", "delete")
    return ", ".join(f"{counts[w]} to {w}" for w in order if counts.get(w))


def _section(
    key: str, changes: Sequence[Mapping[str, Any]], drift: bool, *, context: bool = True
) -> str:
    body: list[str] = []
    for change in changes:
        body.extend(_change_lines(change, drift, context))
        body.append("")
    if body and body[-1] == "":
        body.pop()
    flag = " ⚠️ destructive" if any(c.get("destructive") for c in changes) else ""
    summary = f"{_identity_title(key)}: {_counts_text(changes, drift)}{flag}"
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
    if note := partial_note(document):
        lines += [f"> **{note}**", ""]
    if not changes:
        lines.append(
            "No drift. Live state matches the specs."
            if drift
            else "No changes. Live state matches the specs."
        )
        return lines + _reads(document)
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
        return lines + _reads(document)
    for word, symbol in (("create", "+"), ("update", "~"), ("replace", "-/+"), ("delete", "-")):
        lines.append(f"| `{symbol}` {word} | {summary.get(word, 0)} |")
    return lines


def _destructive(document: Mapping[str, Any], *, shown: int | None = None) -> list[str]:
    """The list of destructive changes; ``shown`` caps it (only when even the list alone is
    over the size cap: thousands of deletes), saying how many more the full plan holds."""
    changes = [c for c in document.get("changes") or [] if c.get("destructive")]
    if not changes:
        return []
    lines = [
        "",
        f"#### ⚠️ {len(changes)} destructive change{'s' if len(changes) != 1 else ''} "
        "(apply needs `--allow-destroy`)",
        "",
    ]
    for change in changes[:shown]:
        symbol = _SYMBOLS.get(str(change["action"]), "?")
        reason = str(change["reason"]) + (f": {change['detail']}" if change.get("detail") else "")
        lines.append(f"- `{symbol}` {_md_cell(title(change))}: {_md_cell(reason)}")
    if shown is not None and shown < len(changes):
        lines.append(f"- … and {len(changes) - shown} more destructive changes in the full plan")
    return lines


def _notices(document: Mapping[str, Any], *, context: bool = True) -> tuple[list[str], int]:
    """The notices section and how many informational notices it leaves out: without
    ``context`` only warnings are shown (an info notice is about something left as it is)."""
    notices = list(document.get("notices") or [])
    kept = notices if context else [n for n in notices if n.get("level") == "warning"]
    dropped = len(notices) - len(kept)
    if not kept:
        return [], dropped
    lines = ["", "#### Notices", ""]
    for notice in kept[:_NOTICES_SHOWN]:
        mark = "⚠️" if notice.get("level") == "warning" else "ℹ️"
        lines.append(f"- {mark} {_md_cell(str(notice['message']))}")
    if len(kept) > _NOTICES_SHOWN:
        lines.append(f"- … and {len(kept) - _NOTICES_SHOWN} more in the full plan")
    return lines, dropped


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _left_out_note(
    *,
    context: bool,
    notices: int,
    sections: int,
    changes: int,
    destructive: int,
    max_chars: int,
    full_plan_at: str | None,
) -> str:
    """What was cut to fit, in the order it was cut, and where the full plan is."""
    cut: list[str] = []
    if not context:
        cut.append("the explanation lines (`#`) of each change")
        if notices:
            cut.append(_plural(notices, "informational notice"))
    if sections:
        cut.append(f"{_plural(sections, 'identity section')} ({_plural(changes, 'change')})")
    if destructive:
        cut.append(f"{_plural(destructive, 'destructive change')} from the list above")
    where = (
        f"The full plan: {full_plan_at} (the saved plan document; `reconciler show FILE` "
        "renders it)."
        if full_plan_at
        else "The full plan is in the plan document saved with `reconciler plan --out FILE` "
        "(the pipeline artifact); `reconciler show FILE` renders it."
    )
    return (
        f"\n> **Detail left out** to stay under {max_chars:,} characters: {'; '.join(cut)}. {where}"
    )


def render_markdown(
    document: Mapping[str, Any], *, max_chars: int = 60000, full_plan_at: str | None = None
) -> str:
    """The plan or drift report as Markdown of at most ``max_chars`` characters.

    What does not fit is left out in this order, and a closing note says what and where the
    full plan is (``full_plan_at``: a run or artifact URL, else the saved plan document):
    first the context (each change's ``#`` explanation lines and informational notices), then
    whole per-identity sections from the last (identities with destructive changes come first,
    so they go last). The summary table and the list of destructive changes are always kept;
    only when they alone exceed the cap is that list shortened, and the note says by how many.
    """
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
    heading = "\n#### Changes per identity\n"

    def head(context: bool, shown: int | None = None) -> tuple[str, int]:
        notice_lines, dropped = _notices(document, context=context)
        lines = [*_head(document, drift), *_destructive(document, shown=shown), *notice_lines]
        return "\n".join(lines), dropped

    def join(parts: Sequence[str]) -> str:
        return "\n".join(parts) + "\n"

    # 1. everything
    full_head, _ = head(True)
    full = [full_head] + ([heading] if changes else [])
    full += [_section(key, groups[key], drift) for key in order]
    text = join(full)
    if len(text) <= max_chars:
        return text

    # 2. without context; then 3. without whole sections, from the last
    compact_head, dropped = head(False)
    sections = [_section(key, groups[key], drift, context=False) for key in order]

    def note(kept: int, destructive: int = 0) -> str:
        left = order[kept:]
        return _left_out_note(
            context=False,
            notices=dropped,
            sections=len(left),
            changes=sum(len(groups[k]) for k in left),
            destructive=destructive,
            max_chars=max_chars,
            full_plan_at=full_plan_at,
        )

    size = len(compact_head) + 1 + len(heading) + 1
    kept = 0
    for section in sections:
        if size + len(section) + 1 + len(note(kept + 1)) + 1 > max_chars:
            break
        size += len(section) + 1
        kept += 1
    if kept:
        return join([compact_head, heading, *sections[:kept], note(kept)])
    text = join([compact_head, note(0)])
    if len(text) <= max_chars:
        return text

    # 4. the summary and the destructive list alone are over the cap: shorten the list
    destructive = sum(1 for c in changes if c.get("destructive"))
    low, high = 0, destructive
    while low < high:  # the most destructive lines that still fit
        mid = (low + high + 1) // 2
        shortened, _ = head(False, mid)
        if len(join([shortened, note(0, destructive - mid)])) <= max_chars:
            low = mid
        else:
            high = mid - 1
    shortened, _ = head(False, low)
    text = join([shortened, note(0, destructive - low)])
    # a cap smaller than the summary itself: cut hard rather than exceed it
    return text if len(text) <= max_chars else text[: max(0, max_chars - 1)] + "\n"
