"""``reconciler export`` of live values a YAML writer can get wrong: tags and credential
subjects that look like YAML (booleans, nulls, numbers, comments, flow syntax, anchors),
quotes, unicode and a description with a line break. Each must come back byte for byte:
export, validate, plan adopts only, apply, plan empty, live values unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.sim.seed import default_seed
from reconciler.sim.server import Simulator
from tests.integration.conftest import run, target

SANDBOX = "11111111-1111-1111-1111-111111111111"
GITHUB = "https://token.actions.githubusercontent.com"
HOSTILE_TAGS = {
    "bool": "yes",
    "null": "null",
    "tilde": "~",
    "number": "0x1F",
    "octal": "0755",
    "float": "1e3",
    "comment": "a #b",
    "flow": "{a: [b, c]}",
    "anchor": "&x *y",
    "quotes": 'it\'s "quoted"',
    "colon": "key: value",
    "dash": "- item",
    "unicode": "Zürich – 東京",
    "spaces": "  padded  ",
    "Mixed-Case Key": "x",
}
SUBJECTS = [
    "repo:contoso/app:ref:refs/heads/main",
    "repo:contoso/app:environment:prod #1",
    "repo:contoso/app:ref:refs/tags/v1.0'\"",
]


@pytest.fixture
def hostile(sim: Simulator) -> Simulator:
    seed = default_seed()
    seed["identities"] = [
        {
            "subscription": SANDBOX,
            "resourceGroup": "identities-rg",
            "name": "hostile-mi",
            "location": "westeurope",
            "tags": HOSTILE_TAGS,
            "clientId": "c0000000-0000-4000-8000-0000000000aa",
            "federatedCredentials": [
                {"name": f"gh-{n}", "issuer": GITHUB, "subject": s} for n, s in enumerate(SUBJECTS)
            ],
        }
    ]
    seed["roleAssignments"] = []
    seed["endpoints"] = []
    sim.reset(seed)
    return sim


def _live(sim: Simulator) -> dict[str, Any]:
    state = sim.state()
    (mi,) = [i for i in state["identities"] if i["name"] == "hostile-mi"]
    tags = {k: v for k, v in (mi.get("tags") or {}).items() if not k.startswith("reconciler-")}
    subjects = sorted(c["subject"] for c in mi.get("federatedCredentials") or [])
    return {"tags": tags, "subjects": subjects}


def test_hostile_values_round_trip_byte_for_byte(
    hostile: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sim = hostile
    before = _live(sim)
    assert before["tags"] == HOSTILE_TAGS
    out = tmp_path / "exported"
    code, _, err = run(
        capsys, "export", "--subscription", SANDBOX, "--out", str(out),
        "--owner", "platform-team", *target(sim),
    )  # fmt: skip
    assert code == 0, err
    written = "\n".join(f.read_text() for f in sorted(out.rglob("*.yaml")))
    assert "name: hostile-mi" in written  # declared, not left out as a comment
    code, _, err = run(capsys, "validate", str(out))
    assert code == 0, err
    plan = tmp_path / "plan.json"
    code, _, err = run(capsys, "plan", str(out), *target(sim), "--out", str(plan))
    assert code == 0, err
    changes = json.loads(plan.read_text())["changes"]
    assert changes, "adoption expected"
    assert all(c["reason"] == "adoption" for c in changes), changes
    code, _, err = run(capsys, "apply", str(out), *target(sim), "--auto-approve")
    assert code == 0, err
    code, stdout, err = run(capsys, "plan", str(out), *target(sim), "--detailed-exitcode")
    assert code == 0, stdout + err
    assert _live(sim) == before
