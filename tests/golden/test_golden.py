"""Golden renders: text, Markdown and JSON of a few planner cases, reviewed as diffs.

``make golden`` (``UPDATE_GOLDEN=1``) rewrites them after an intended change.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from reconciler.plan import make_plan, name_roles
from reconciler.render import render
from reconciler.render.document import to_document
from reconciler.render.markdown import render_markdown

sys.path.insert(0, str(Path(__file__).parents[1] / "cases"))
from caseload import load_case

GOLDEN = Path(__file__).parent
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
CASES = [
    "create_walkthrough_from_nothing",
    "in_sync_walkthrough_no_changes",
    "identity_location_replace_cascade",
    "adoption_of_unmarked_objects",
    "service_connection_move_creates_first",
    "drift_out_of_band_edits",
    "prune_owned_only",
]


def _document(name: str) -> dict[str, object]:
    desired, live, args = load_case(name)
    # as the CLI does: role assignments named from the live role definitions
    plan = name_roles(make_plan(desired, live, force=args.get("force", False)), live)
    return to_document(plan, mode=args.get("mode", "plan"))


def _check(path: Path, text: str) -> None:
    if UPDATE or not path.is_file():
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs (make golden)"


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
@pytest.mark.parametrize("name", CASES)
def test_render(name: str, fmt: str) -> None:
    suffix = {"text": "txt", "markdown": "md", "json": "json"}[fmt]
    _check(GOLDEN / f"{name}.{suffix}", render(_document(name), fmt))


def test_text_in_colour() -> None:
    text = render(_document("identity_location_replace_cascade"), "text", color=True)
    _check(GOLDEN / "identity_location_replace_cascade.color.txt", text)


def test_markdown_under_a_small_cap() -> None:
    text = render_markdown(_document("waves_two_identities_in_parallel"), max_chars=2500)
    assert len(text) <= 2500
    _check(GOLDEN / "waves_two_identities_in_parallel.capped.md", text)
