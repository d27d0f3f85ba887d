"""Table of invalid specs: each case in tests/specs_invalid/ (a file, or a folder loaded as one
set) lists the exact problems it must produce in ``# expect: LINE:COLUMN: PATH: MESSAGE``
comments, in the file each problem is located in."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import SpecError
from reconciler.specs import load_desired_state

CASES = Path(__file__).resolve().parent.parent / "specs_invalid"
NAMES = sorted(p.name for p in CASES.iterdir() if p.suffix == ".yaml" or p.is_dir())


def _expected(name: str) -> list[str]:
    case = CASES / name
    files = sorted(case.rglob("*.yaml")) if case.is_dir() else [case]
    expected = []
    for file in files:
        shown = file.relative_to(CASES).as_posix()
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.startswith("# expect: "):
                expected.append(f"{shown}:{line.removeprefix('# expect: ')}")
    return expected


def test_the_table_is_large_enough() -> None:
    assert len(NAMES) >= 20
    assert all(_expected(name) for name in NAMES), "every case states what it expects"


@pytest.mark.parametrize("name", NAMES)
def test_invalid_spec(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)
    with pytest.raises(SpecError) as caught:
        load_desired_state([name])
    assert sorted(str(p) for p in caught.value.problems) == sorted(_expected(name))
