"""YAML loading that remembers where every mapping, key, value and list item came from.

Mappings load as ``MarkedMap`` (a dict) and sequences as ``MarkedSeq`` (a list) carrying
1-based (line, column) marks, so that schema and reference errors can point at the exact node.
Built on libyaml's parser (``CSafeLoader``) when available: the loader is on the hot path of
every command, and a 1,000-identity spec has to load in a fraction of a second.

Stricter than plain ``yaml.safe_load``: duplicate keys are an error (PyYAML silently keeps the
last one), and syntax errors come back as ``YamlSyntaxError`` with a readable message.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Final

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Mark = tuple[int, int]  # 1-based line, column

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class MarkedMap(dict[str, Any]):
    """A mapping with the marks of itself, each key and each value."""

    __slots__ = ("key_marks", "mark", "value_marks")

    def __init__(self, mark: Mark = (1, 1)) -> None:
        super().__init__()
        self.mark = mark
        self.key_marks: dict[str, Mark] = {}
        self.value_marks: dict[str, Mark] = {}


class MarkedSeq(list[Any]):
    """A sequence with the marks of itself and each item."""

    __slots__ = ("item_marks", "mark")

    def __init__(self, mark: Mark = (1, 1)) -> None:
        super().__init__()
        self.mark = mark
        self.item_marks: list[Mark] = []


class YamlSyntaxError(Exception):
    """The text is not valid YAML (or breaks one of the loader's stricter rules)."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.line = line
        self.column = column
        self.message = message


def _mark(node: Node) -> Mark:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Loader(_BaseLoader):
    pass


def _construct_map(loader: _Loader, node: MappingNode) -> MarkedMap:
    pairs = node.value
    first_own = 0
    if any(k.tag == _MERGE_TAG for k, _ in pairs):
        own_count = sum(1 for k, _ in pairs if k.tag != _MERGE_TAG)
        loader.flatten_mapping(node)
        pairs = node.value
        first_own = len(pairs) - own_count
    result = MarkedMap(_mark(node))
    key_marks = result.key_marks
    value_marks = result.value_marks
    own: set[str] = set()
    for index, (key_node, value_node) in enumerate(pairs):
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            if not isinstance(key_node, ScalarNode) or not isinstance(key, Hashable):
                raise ConstructorError(
                    None, None, "a mapping key must be a plain text value", key_node.start_mark
                )
            # `on:`, `yes:` or `1:` as a key: keep the text the user wrote, not PyYAML's bool/int.
            key = str(key_node.value)
        if index >= first_own:
            if key in own:
                line = key_marks[key][0]
                raise ConstructorError(
                    None,
                    None,
                    f"duplicate key '{key}' (first given on line {line})",
                    key_node.start_mark,
                )
            own.add(key)
        result[key] = loader.construct_object(value_node, deep=True)
        key_marks[key] = _mark(key_node)
        value_marks[key] = _mark(value_node)
    return result


def _construct_seq(loader: _Loader, node: SequenceNode) -> MarkedSeq:
    result = MarkedSeq(_mark(node))
    marks = result.item_marks
    for item in node.value:
        result.append(loader.construct_object(item, deep=True))
        marks.append(_mark(item))
    return result


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _line_column(text: str, position: int) -> Mark:
    before = text[:position]
    line = before.count("\n") + 1
    return line, position - (before.rfind("\n") + 1) + 1


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n", line)
    if line - 1 < len(lines):
        row = lines[line - 1]
        if 0 <= column - 1 < len(row):
            return row[column - 1]
    return ""


def _readable(exc: yaml.MarkedYAMLError, text: str) -> YamlSyntaxError:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = exc.problem or "invalid YAML"
    context = exc.context or ""
    context_line = exc.context_mark.line + 1 if exc.context_mark is not None else line
    if "tab" in problem or _char_at(text, line, column) == "\t":
        message = "tab character: YAML indentation must use spaces, not tabs"
    elif problem.startswith("mapping values are not allowed"):
        message = (
            "unexpected ':' here: check this line's indentation "
            "(or quote a value that contains ': ')"
        )
    elif problem == "did not find expected key" and "block mapping" in context:
        message = (
            f"bad indentation: this line does not line up with the keys of the mapping "
            f"started on line {context_line}"
        )
    elif problem == "did not find expected '-' indicator":
        message = (
            f"bad indentation: this line does not line up with the items of the list "
            f"started on line {context_line}"
        )
    elif problem == "but found another document":
        message = "a spec file holds one YAML document: remove the extra '---'"
    elif context and context_line != line:
        message = f"{problem} ({context} started on line {context_line})"
    elif context:
        message = f"{problem} ({context})"
    else:
        message = problem
    return YamlSyntaxError(line, column, message)


def load_yaml(text: str) -> Any:
    """Parse one YAML document into MarkedMap / MarkedSeq / scalars; None for an empty text."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        raise _readable(exc, text) from None
    except yaml.reader.ReaderError as exc:
        line, column = _line_column(text, exc.position)
        raise YamlSyntaxError(
            line, column, f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        ) from None
    except yaml.YAMLError as exc:  # any other libyaml complaint, still never a traceback
        raise YamlSyntaxError(1, 1, str(exc).splitlines()[0]) from None
    finally:
        loader.dispose()


def mark_at(root: Any, path: Sequence[str | int], *, key: bool = False) -> Mark:
    """The mark of the node at ``path`` (of its key when ``key``), else of its nearest parent."""
    node = root
    fallback: Mark = (1, 1)
    for index, step in enumerate(path):
        if isinstance(node, MarkedMap | MarkedSeq):
            fallback = node.mark
        last = index == len(path) - 1
        if isinstance(node, MarkedMap) and isinstance(step, str) and step in node:
            if last:
                return node.key_marks[step] if key else node.value_marks[step]
            node = node[step]
        elif isinstance(node, MarkedSeq) and isinstance(step, int) and 0 <= step < len(node):
            if last:
                return node.item_marks[step]
            node = node[step]
        else:
            break
    return node.mark if isinstance(node, MarkedMap | MarkedSeq) else fallback
