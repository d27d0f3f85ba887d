"""The JSON Schema itself, and the loader's agreement with plain jsonschema on it."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from reconciler.specs import schema_errors, schema_path, spec_schema
from reconciler.yamlload import YamlSyntaxError, load_yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "specs").rglob("*.yaml"))
INVALID = sorted((ROOT / "tests" / "specs_invalid").rglob("*.yaml"))


def _schemas(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _schemas(value, f"{where}/{index}")


def test_the_schema_file_is_the_one_loaded() -> None:
    assert schema_path() == ROOT / "schema" / "spec.schema.json"
    assert spec_schema() == json.loads(schema_path().read_text(encoding="utf-8"))


def test_schema_is_valid_draft_2020_12() -> None:
    schema = spec_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_every_property_has_a_description() -> None:
    missing = [
        f"{where}/properties/{name}"
        for where, node in _schemas(spec_schema())
        for name, sub in (node.get("properties") or {}).items()
        if isinstance(node.get("properties"), dict) and not sub.get("description")
    ]
    assert missing == []
    assert all(d.get("description") for d in spec_schema()["$defs"].values())


def test_every_object_rejects_unknown_keys() -> None:
    open_objects = [
        where
        for where, node in _schemas(spec_schema())
        if "properties" in node and node.get("additionalProperties") is not False
    ]
    assert open_objects == []


def test_examples_carry_the_editor_modeline() -> None:
    for example in EXAMPLES:
        first = example.read_text(encoding="utf-8").splitlines()[0]
        prefix = "# yaml-language-server: $schema="
        assert first.startswith(prefix), example
        assert (example.parent / first.removeprefix(prefix)).resolve() == schema_path()


def _plain_errors(document: Any) -> list[tuple[tuple[Any, ...], str]]:
    validator = Draft202012Validator(spec_schema())
    return sorted(
        (tuple(e.absolute_path), str(e.validator)) for e in validator.iter_errors(document)
    )


def _fast_errors(document: Any) -> list[tuple[tuple[Any, ...], str]]:
    return sorted((tuple(e.absolute_path), str(e.validator)) for e in schema_errors(document))


def _documents() -> list[Any]:
    documents = []
    for file in [*EXAMPLES, *INVALID]:
        try:
            documents.append(load_yaml(file.read_text(encoding="utf-8")))
        except YamlSyntaxError:
            continue
    return documents


def test_same_errors_as_plain_jsonschema_on_every_spec() -> None:
    documents = _documents()
    assert len(documents) > 30
    for document in documents:
        assert _fast_errors(document) == _plain_errors(document)


_ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    2.0,
    "",
    " padded ",
    "all",
    "x",
    "ab",
    "no spaces allowed",
    "https://issuer.example",
    "11111111-1111-1111-1111-111111111111",
    "a" * 700,
    [],
    ["a", "a"],
    ["a", 1],
    {},
    {"name": "some-mi"},
    {"name": "some-mi", "extra": 1},
]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _mutate(document: Any, rng: random.Random) -> Any:
    """A plain-data copy of ``document`` with one random change somewhere in it."""
    mutated = copy.deepcopy(json.loads(json.dumps(document, default=str)))
    path = rng.choice(list(_paths(mutated))[1:])
    parent = mutated
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    choice = rng.random()
    if choice < 0.6:
        parent[last] = copy.deepcopy(rng.choice(_ODD_VALUES))
    elif choice < 0.8 and isinstance(parent, dict):
        del parent[last]
    elif isinstance(parent, dict):
        parent[rng.choice(["servicePrincipalKey", "name", "const", "x-extra"])] = "value"
    else:
        parent.append(copy.deepcopy(parent[last]))
    return mutated


@pytest.mark.parametrize("seed", range(4))
def test_same_errors_as_plain_jsonschema_on_random_mutations(seed: int) -> None:
    rng = random.Random(seed)
    examples = [load_yaml(f.read_text(encoding="utf-8")) for f in EXAMPLES]
    for _ in range(150):
        document = _mutate(rng.choice(examples), rng)
        assert _fast_errors(document) == _plain_errors(document), document


def test_valid_specs_do_not_need_jsonschema_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    import reconciler.specs as specs

    def refuse() -> None:
        raise AssertionError("jsonschema consulted for a valid spec")

    monkeypatch.setattr(specs, "_validator", refuse)
    for example in EXAMPLES:
        assert schema_errors(load_yaml(example.read_text(encoding="utf-8"))) == []
