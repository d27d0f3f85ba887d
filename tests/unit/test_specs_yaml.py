"""The line-marked YAML loader: marks, strictness, and readable syntax errors."""

from __future__ import annotations

import datetime

import pytest

from reconciler.yamlload import MarkedMap, MarkedSeq, YamlSyntaxError, load_yaml, mark_at


def _error(text: str) -> tuple[int, int, str]:
    with pytest.raises(YamlSyntaxError) as caught:
        load_yaml(text)
    return caught.value.line, caught.value.column, caught.value.message


def test_marks_of_mappings_keys_values_and_items() -> None:
    doc = load_yaml("version: 1\nidentities:\n  - name: a-mi\n    tags: {team: a}\n  - b\n")
    assert isinstance(doc, MarkedMap)
    assert doc == {"version": 1, "identities": [{"name": "a-mi", "tags": {"team": "a"}}, "b"]}
    assert doc.mark == (1, 1)
    assert doc.key_marks["identities"] == (2, 1)
    identities = doc["identities"]
    assert isinstance(identities, MarkedSeq)
    assert identities.item_marks == [(3, 5), (5, 5)]
    assert identities[0].value_marks == {"name": (3, 11), "tags": (4, 11)}
    assert mark_at(doc, ["identities", 0, "tags", "team"]) == (4, 18)
    assert mark_at(doc, ["identities", 0, "tags", "team"], key=True) == (4, 12)


def test_mark_at_falls_back_to_the_nearest_existing_parent() -> None:
    doc = load_yaml("a:\n  b: 1\n")
    assert mark_at(doc, ["a", "missing"]) == (2, 3)
    assert mark_at(doc, ["a", "b", "deeper"]) == (2, 3)
    assert mark_at(doc, []) == (1, 1)


def test_scalars_keep_yaml_meaning_but_keys_stay_as_written() -> None:
    doc = load_yaml(
        "on: yes\n'quoted': '1'\nnumber: 12\nfloat: 2.0\nnothing: ~\nday: 2024-01-31\n"
        "text: !!str 12\n"
    )
    assert doc == {
        "on": True,
        "quoted": "1",
        "number": 12,
        "float": 2.0,
        "nothing": None,
        "day": datetime.date(2024, 1, 31),
        "text": "12",
    }


def test_anchors_aliases_and_merge_keys() -> None:
    doc = load_yaml(
        "base: &base {location: westeurope, tags: {team: a}}\n"
        "one:\n  <<: *base\n  location: northeurope\n"
        "two: {<<: [*base, {extra: 1}], name: x}\n"
        "list: [*base]\n"
    )
    assert doc["one"] == {"location": "northeurope", "tags": {"team": "a"}}
    assert doc["one"].value_marks["location"] == (4, 13)
    assert doc["two"] == {"name": "x", "location": "westeurope", "tags": {"team": "a"}, "extra": 1}
    assert doc["list"][0] is doc["base"]


def test_empty_documents() -> None:
    assert load_yaml("") is None
    assert load_yaml("# only a comment\n") is None
    assert load_yaml("a:\n") == {"a": None}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: 2\na: 3\n", (3, 1, "duplicate key 'a' (first given on line 1)")),
        ("a:\n  b: 1\n  'b': 2\n", (3, 3, "duplicate key 'b' (first given on line 2)")),
        ("a:\n\t- b\n", (2, 1, "tab character: YAML indentation must use spaces, not tabs")),
        (
            "a:\n  b: 1\n  \tc: 2\n",
            (3, 3, "tab character: YAML indentation must use spaces, not tabs"),
        ),
        (
            "a:\n  b: 1\n   c: 2\n",
            (
                3,
                5,
                "unexpected ':' here: check this line's indentation (or quote a value that contains ': ')",
            ),
        ),
        (
            "a:\n  b: 1\n c: 2\n",
            (
                3,
                2,
                "bad indentation: this line does not line up with the keys of the mapping started on line 1",
            ),
        ),
        (
            "a:\n  - b\n - c\n",
            (
                3,
                2,
                "bad indentation: this line does not line up with the keys of the mapping started on line 1",
            ),
        ),
        ("a: 'open\n", (2, 1, "unclosed quote: the quoted text started on line 1 never ends")),
        (
            "a: [1, 2\n",
            (
                2,
                1,
                "did not find expected ',' or ']' (while parsing a flow sequence started on line 1)",
            ),
        ),
        (
            "a: 1\n---\nb: 2\n",
            (2, 1, "a spec file holds one YAML document: remove the extra '---'"),
        ),
        ("a: *nowhere\n", (1, 4, "unknown alias *nowhere (define &nowhere first)")),
        ("a: &x [*x]\n", (1, 8, "recursive alias *x")),
        ("? [a]\n: 1\n", (1, 3, "a mapping key must be a plain text value")),
        ("a: !!set {b}\n", (1, 4, "unsupported YAML tag tag:yaml.org,2002:set")),
        ("a: !custom 1\n", (1, 4, "could not determine a constructor for the tag '!custom'")),
        ("<<: 1\n", (1, 5, "'<<' merges a mapping or a list of mappings")),
        ("a: b\x07\n", (1, 5, "unacceptable character #x0007: control characters are not allowed")),
    ],
)
def test_syntax_errors_are_located_and_readable(text: str, expected: tuple[int, int, str]) -> None:
    assert _error(text) == expected


def test_a_large_document_keeps_every_mark() -> None:
    text = "items:\n" + "".join(f"  - {{name: n{i}, value: {i}}}\n" for i in range(2000))
    doc = load_yaml(text)
    assert len(doc["items"]) == 2000
    assert doc["items"].item_marks[1999] == (2001, 5)
    assert doc["items"][1999].value_marks["value"] == (2001, 26)
