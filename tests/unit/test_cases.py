"""Data-driven planner cases: ``tests/cases/<behaviour>/`` holds desired, live and the expected
plan document (or ``error.txt``, the exact PlanError message). ``UPDATE_GOLDEN=1`` rewrites the
expected documents; review the diff before committing it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from reconciler.errors import PlanError
from reconciler.plan import Plan, make_plan
from reconciler.render.document import dumps, from_document, to_document

sys.path.insert(0, str(Path(__file__).parents[1] / "cases"))
from caseload import CASES, case_names, load_case

UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("name", case_names())
def test_case(name: str) -> None:
    desired, live, args = load_case(name)
    mode = args.get("mode", "plan")
    folder = CASES / name
    error_file = folder / "error.txt"
    if error_file.is_file():
        with pytest.raises(PlanError) as info:
            make_plan(desired, live, force=args.get("force", False))
        if UPDATE:
            error_file.write_text(str(info.value) + "\n")
        assert str(info.value) == error_file.read_text().rstrip("\n")
        return
    plan = make_plan(desired, live, force=args.get("force", False))
    document = to_document(plan, mode=mode)
    expected_file = folder / "expected.json"
    if UPDATE or not expected_file.is_file():
        expected_file.write_text(dumps(document))
    assert json.loads(dumps(document)) == json.loads(expected_file.read_text())
    # the document is the contract: it must give the same plan back, through JSON too
    assert from_document(json.loads(dumps(document))) == plan
    _check_order(plan)
    # planning is a pure function of its input
    assert (
        to_document(make_plan(desired, live, force=args.get("force", False)), mode=mode) == document
    )


def _check_order(plan: Plan) -> None:
    waves = {c.address: c.wave for c in plan.changes}
    for change in plan.changes:
        deps = [waves[d] for d in change.depends_on]
        assert all(d in waves for d in change.depends_on)
        assert change.wave == (1 + max(deps) if deps else 0), change.address
    keys = [(c.wave, c.address) for c in plan.changes]
    assert keys == sorted(keys)
