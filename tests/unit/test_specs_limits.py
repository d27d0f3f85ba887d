"""Small input, bounded cost: alias bombs, fan-outs, deep nesting and huge files are refused
quickly with exit 1 and ``file:line`` naming the limit, by every command that reads specs.

The subprocess timeouts are hang guards (the unbounded loader took minutes and gigabytes on
these files), not speed assertions.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.yamlload import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    YamlLimitError,
    YamlSyntaxError,
    load_yaml,
)

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD = 30.0  # seconds: a hang guard only; the unbounded loader needed minutes


def _billion_laughs() -> str:
    lines = ["version: 1", "owner: bomb", 'lol0: &lol0 ["lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        refs = ",".join([f"*lol{level - 1}"] * 9)
        lines.append(f"lol{level}: &lol{level} [{refs}]")
    lines.append("identities: []")
    return "\n".join(lines) + "\n"


def _fan_out() -> str:
    """~0.2 MB: one 1,000-item anchored list and 40,000 aliases to it (40 million nodes)."""
    items = ",".join(f"t{i}" for i in range(1000))
    head = f"version: 1\nowner: fan\nx: &x [{items}]\nrefs:\n"
    return head + "  - *x\n" * 40_000


def _deep() -> str:
    depth = 100_000
    return "version: 1\nowner: deep\nx: " + "[" * depth + "]" * depth + "\n"


def _deep_block() -> str:
    """Block style: one key per line, each indented one more step (line 3 + MAX_DEPTH is the
    first line over the limit: the root mapping is level 1, level n starts on line n + 2)."""
    rows = ["version: 1", "owner: deep"]
    rows += [" " * level + f"k{level}:" for level in range(200)]
    return "\n".join(rows) + " leaf\n"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        cwd=cwd,
    )


CASES = {
    # name: (text or bytes writer, line of the error, words the message must hold)
    "billion-laughs": (_billion_laughs, None, f"{MAX_NODES:,} nodes"),
    "fan-out": (_fan_out, None, f"{MAX_NODES:,} nodes"),
    "deep": (_deep, 3, f"deeper than {MAX_DEPTH} levels"),
    "deep-block": (_deep_block, 3 + MAX_DEPTH, f"deeper than {MAX_DEPTH} levels"),
}


@pytest.mark.parametrize("command", ["validate", "plan", "drift", "apply"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_command_refuses_a_costly_file_with_its_line(
    tmp_path: Path, case: str, command: str
) -> None:
    make, line, words = CASES[case]
    text = make()
    spec = tmp_path / f"{case}.yaml"
    spec.write_text(text, encoding="utf-8")
    if line is None:
        # the alias that crosses the limit (aliases are the only lines that expand)
        line = _crossing_line(text)
    # the target file does not exist: the specs are read (and refused) before any connection
    extra = [] if command == "validate" else ["--target", str(tmp_path / "no-target.json")]
    if command == "apply":
        extra.append("--auto-approve")
    result = _run(command, spec.name, *extra, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"{spec.name}:{line}:" in result.stderr, result.stderr
    assert words in result.stderr
    assert "limit" in result.stderr
    assert "Traceback" not in result.stderr


def _crossing_line(text: str) -> int:
    """The line of the alias at which the expanded node count first passes MAX_NODES,
    computed independently of the loader (this test's own count)."""
    sizes: dict[str, int] = {}
    nodes = 1  # the root mapping
    for number, row in enumerate(text.splitlines(), start=1):
        if ": &" in row:  # `key: &name [items]`: one key, one list, its items
            _key, rest = row.split(": &", 1)
            name, body = rest.split(" ", 1)
            inner = body.strip()[1:-1].split(",")
            size = 1
            for item in inner:
                size += sizes[item[1:]] if item.startswith("*") else 1
            sizes[name] = size
            nodes += 1 + size
        elif "*" in row:
            nodes += sizes[row.split("*", 1)[1].strip()]
        else:  # `key: value`, `key: []`, or `key:` opening a list: two nodes
            nodes += 2
        if nodes > MAX_NODES:
            return number
    raise AssertionError("the file never crosses the limit")


def test_a_huge_file_is_refused_at_line_1_without_reading_it_whole(tmp_path: Path) -> None:
    spec = tmp_path / "huge.yaml"
    filler = "# " + "x" * 98 + "\n"
    with spec.open("w", encoding="utf-8") as stream:
        stream.write("version: 1\nowner: huge\nidentities: []\n")
        for _ in range(MAX_BYTES // len(filler) + 10):
            stream.write(filler)
    size = spec.stat().st_size
    assert size > MAX_BYTES
    result = _run("validate", spec.name, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "huge.yaml:1:1:" in result.stderr
    assert f"{size:,} bytes is over the {MAX_BYTES:,}-byte limit" in result.stderr


def test_a_second_document_is_refused() -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        load_yaml("a: 1\n---\nb: 2\n")
    assert "one YAML document" in str(caught.value)


# --- the limits are exact, and real specs are far below them ----------------------------------


def test_nesting_exactly_at_the_limit_loads_and_one_more_level_does_not() -> None:
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert load_yaml(at_limit) is not None
    with pytest.raises(YamlLimitError) as caught:
        load_yaml("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert caught.value.line == 1 and caught.value.column == MAX_DEPTH + 1


def test_aliases_count_as_what_they_expand_to() -> None:
    # a 9-item anchored list is 10 nodes; the outer list and the key `a`/`b` add 4
    width = (MAX_NODES - 4) // 10
    fits = "a: &a [1,2,3,4,5,6,7,8,9]\nb:\n" + "  - *a\n" * (width - 1)
    doc = load_yaml(fits)
    assert len(doc["b"]) == width - 1
    over = fits + "  - *a\n" * 2
    with pytest.raises(YamlLimitError) as caught:
        load_yaml(over)
    assert caught.value.line == width + 2  # the alias that crossed
    assert "alias *a" in caught.value.message


def test_the_examples_and_a_1000_identity_spec_set_still_validate(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench.world import BenchWorld, Shape
    finally:
        sys.path.remove(str(ROOT))
    generated = BenchWorld(Shape(identities=1000)).write_specs(tmp_path / "bench")
    for paths in (["specs/walkthrough.yaml", "specs/github-actions.yaml"], ["specs/teams"]):
        result = _run("validate", *paths, cwd=ROOT)
        assert result.returncode == 0, result.stderr
    result = _run("validate", str(generated), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "1000 identities" in result.stdout


def test_deeply_nested_json_plan_and_connection_files_are_refused(tmp_path: Path) -> None:
    """The other files the tool reads are JSON: deep nesting is exit 1 naming the file, not a
    RecursionError (exit 3)."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    shown = _run("show", deep.name, cwd=tmp_path)
    assert shown.returncode == 1 and "deep.json:1: not a plan document: nested too deeply" in (
        shown.stderr
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\nowner: x\nidentities: []\n", encoding="utf-8")
    planned = _run("plan", spec.name, "--target", deep.name, cwd=tmp_path)
    assert planned.returncode == 1 and "nested too deeply for a connection file" in planned.stderr
    assert "Traceback" not in shown.stderr + planned.stderr
