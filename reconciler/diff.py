"""Field-level differences between two canonical projections.

The only module that imports deepdiff: it finds *where* two projections differ, and this module
turns that into the project's ``FieldChange`` values (top-level field, or ``field.key`` inside a
mapping such as tags). Values shown are the display forms, so a user's casing survives even
though the comparison was case-insensitive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.changes import FieldChange
from reconciler.model import UNKNOWN


def _is_unknown(value: Any) -> bool:
    return value is UNKNOWN


def diff_fields(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    fields: Iterable[str],
    *,
    shown_before: Mapping[str, Any] | None = None,
    shown_after: Mapping[str, Any] | None = None,
) -> tuple[FieldChange, ...]:
    """Compare ``fields`` of two canonical projections; report them with the shown values.

    An ``UNKNOWN`` on either side is always a change: only the service can tell the value, so
    the plan cannot claim it already matches.
    """
    shown_before = before if shown_before is None else shown_before
    shown_after = after if shown_after is None else shown_after
    changes: dict[str, FieldChange] = {}
    left: dict[str, Any] = {}
    right: dict[str, Any] = {}
    for name in fields:
        b, a = before.get(name), after.get(name)
        if _is_unknown(a) or _is_unknown(b):
            if not (_is_unknown(a) and _is_unknown(b)):
                changes[name] = FieldChange(name, shown_before.get(name), shown_after.get(name))
        elif b != a:
            left[name], right[name] = b, a
    if left:
        # imported only when something differs: ~140 ms that a plan without changes never pays
        from deepdiff import DeepDiff

        tree = DeepDiff(left, right, view="tree")
        for levels in tree.values():
            for level in levels:
                path = level.path(output_format="list")
                if not path:
                    continue
                name = str(path[0])
                b, a = left.get(name), right.get(name)
                if isinstance(b, Mapping) and isinstance(a, Mapping) and len(path) > 1:
                    key = str(path[1])
                    sb = shown_before.get(name) or {}
                    sa = shown_after.get(name) or {}
                    changes[f"{name}.{key}"] = FieldChange(
                        f"{name}.{key}", sb.get(key), sa.get(key)
                    )
                else:
                    changes[name] = FieldChange(name, shown_before.get(name), shown_after.get(name))
    return tuple(changes[p] for p in sorted(changes))
