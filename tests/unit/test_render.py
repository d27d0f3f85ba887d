from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler.model import Address, Kind
from reconciler.plan import Action, Change, Plan, Reason, make_plan
from reconciler.render import render
from reconciler.render.document import to_document
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text

sys.path.insert(0, str(Path(__file__).parents[1] / "cases"))
from caseload import load_case


def _document(name: str, mode: str | None = None) -> dict[str, Any]:
    desired, live, args = load_case(name)
    plan = make_plan(desired, live, force=args.get("force", False))
    return to_document(plan, mode=mode or args.get("mode", "plan"))


def test_in_sync_says_no_changes() -> None:
    document = _document("in_sync_walkthrough_no_changes")
    assert render_text(document) == "No changes. Live state matches the specs.\n"
    assert "No drift." in render_text(_document("in_sync_walkthrough_no_changes", "drift"))


def test_summary_line_counts_each_action() -> None:
    text = render_text(_document("service_connection_move_creates_first"))
    assert "Plan: 2 to create, 0 to update, 0 to replace, 2 to delete." in text
    # the old connection, and the credential it signs in with
    assert "2 destructive changes" in text and "--allow-destroy" in text


def test_colour_only_when_asked() -> None:
    document = _document("identity_location_replace_cascade")
    assert "\x1b[" not in render_text(document, color=False)
    coloured = render_text(document, color=True)
    assert "\x1b[1;31m" in coloured  # destructive in bold red


def test_drift_names_live_and_spec_values() -> None:
    text = render_text(_document("drift_out_of_band_edits"))
    assert (
        'description: live has "edited in the portal", spec says "Walkthrough connection"' in text
    )
    assert "missing in live" in text
    assert text.rstrip().endswith("Drift: 3 differences")


def test_known_after_apply_is_shown_bare() -> None:
    text = render_text(_document("create_walkthrough_from_nothing"))
    assert "issuer    = (known after apply)" in text
    assert '"(known after apply)"' not in text


def test_notices_are_shown() -> None:
    text = render_text(_document("foreign_role_assignment_notice"))
    assert text.startswith("No changes.")
    assert "reported, not removed" in text


def test_markdown_lists_destructive_changes_first() -> None:
    create = Change(
        Address(Kind.IDENTITY, "s/rg/a-mi"), Action.CREATE, Reason.NEW, after={"name": "a-mi"}
    )
    delete = Change(
        Address(Kind.IDENTITY, "s/rg/z-mi"),
        Action.DELETE,
        Reason.NOT_IN_SPEC,
        before={"name": "z-mi"},
        destructive=True,
    )
    text = render_markdown(to_document(Plan("me", (create, delete))))
    assert text.index("1 destructive change") < text.index("<details>")
    assert text.index("<b>z-mi</b>") < text.index("<b>a-mi</b>")


def test_markdown_one_section_per_identity() -> None:
    text = render_markdown(_document("waves_two_identities_in_parallel"))
    assert text.count("<details>") == 2 and text.count("</details>") == 2


@pytest.mark.parametrize("cap", [600, 1500, 3000, 10_000])
def test_markdown_stays_under_the_cap_and_says_what_is_left_out(cap: int) -> None:
    document = _document("waves_two_identities_in_parallel")
    text = render_markdown(document, max_chars=cap)
    assert len(text) <= cap
    full = render_markdown(document)
    if len(full) > cap:
        assert "left out" in text and "reconciler show" in text
    else:
        assert text == full


def test_dispatcher() -> None:
    document = _document("create_walkthrough_from_nothing")
    assert render(document, "json").startswith("{\n")
    assert render(document, "markdown").startswith("### Plan:")
    with pytest.raises(ValueError, match="unknown format"):
        render(document, "yaml")


def test_a_pruned_role_assignment_reads_by_role_name_not_guid() -> None:
    from reconciler.plan import name_roles
    from reconciler.render import render
    from reconciler.render.document import from_document

    desired, live, _ = load_case("prune_owned_only")
    reader = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
    bare = to_document(make_plan(desired, live))
    assert f"role_assignment {reader} at" in render_text(bare)  # what a reader saw before
    document = to_document(name_roles(make_plan(desired, live), live))
    (pruned,) = [c for c in document["changes"] if c["kind"] == "role_assignment"]
    assert pruned["action"] == "delete" and pruned["role_name"] == "Reader"
    assert pruned["before"]["roleDefinitionId"] == reader  # the document keeps the id
    for fmt in ("text", "markdown"):
        shown = render(document, fmt)
        assert "role_assignment Reader at /subscriptions/" in shown
        assert f"role_assignment {reader}" not in shown
    # a saved plan keeps the name
    assert to_document(from_document(document)) == document
