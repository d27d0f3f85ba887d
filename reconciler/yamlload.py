"""YAML loading that remembers where every mapping, key, value and list item came from.

Mappings load as ``MarkedMap`` (a dict) and sequences as ``MarkedSeq`` (a list) carrying
1-based (line, column) marks, so that schema and reference errors can point at the exact node.
Built directly on libyaml's event stream (``CSafeLoader``) when available: the loader is on
the hot path of every command, and a 1,000-identity spec has to load in a fraction of a second.

Stricter than plain ``yaml.safe_load``: duplicate keys are an error (PyYAML silently keeps the
last one), mapping keys are plain text as written (``on:`` is the key "on", not True), and
syntax errors come back as ``YamlSyntaxError`` with a readable message. Anchors, aliases and
``<<`` merge keys work as in PyYAML.

Bounded: a small text must not cost unbounded time or memory (a 700-byte "billion laughs"
alias bomb would expand to 10^9 nodes in whatever walks the result). ``load_yaml`` refuses a
text over ``MAX_BYTES``, a document that would hold more than ``MAX_NODES`` nodes once every
alias is expanded (counted as the aliases are read, so the refusal comes at the alias that
crosses the limit, before anything is expanded), nesting deeper than ``MAX_DEPTH``, and more
than one document.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import yaml
from yaml.nodes import ScalarNode

Mark = tuple[int, int]  # 1-based line, column

# Generous for real specs: the benchmark's 1,000-identity spec set (3 credentials and 3 role
# assignments each) is 0.9 MB and about 54,000 nodes over 20 files, at most 6 levels deep.
# One file holding all of it stays 9x under each size limit; nesting 10x under the depth limit.
MAX_BYTES: Final = 8 * 1024 * 1024
MAX_NODES: Final = 500_000
MAX_DEPTH: Final = 64

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


class YamlLimitError(YamlSyntaxError):
    """The text is within YAML's rules but over one of the loader's size limits."""


class _Loader(_BaseLoader):
    pass


_STR_TAG: Final = "tag:yaml.org,2002:str"
_MAP_TAGS: Final = (None, "!", "tag:yaml.org,2002:map")
_SEQ_TAGS: Final = (None, "!", "tag:yaml.org,2002:seq")
_RESOLVABLE: Final = frozenset(k for k in _Loader.yaml_implicit_resolvers if k is not None)


def _error(mark: Any, message: str) -> YamlSyntaxError:
    return YamlSyntaxError(mark.line + 1, mark.column + 1, message)


class _Map:
    """A mapping under construction."""

    __slots__ = ("anchor", "key", "key_mark", "merge", "merges", "result", "start")

    def __init__(self, result: MarkedMap, anchor: str | None, start: int) -> None:
        self.result = result
        self.anchor = anchor
        self.start = start  # the node count before this mapping (sizes an anchored one)
        self.key: str | None = None  # waiting for this key's value
        self.key_mark: Mark = (0, 0)
        self.merge = False  # the pending key is a `<<:` merge
        self.merges: list[tuple[MarkedMap, Mark]] = []


class _Seq:
    """A sequence under construction."""

    __slots__ = ("anchor", "result", "start")

    def __init__(self, result: MarkedSeq, anchor: str | None, start: int) -> None:
        self.result = result
        self.anchor = anchor
        self.start = start


def _read_events(loader: _Loader) -> Any:
    """Build the document from libyaml's event stream.

    Skips PyYAML's node graph and generic constructor, which cost three times the parse on a
    large spec. Scalars other than plain text (numbers, booleans, null, dates) still go
    through PyYAML's resolver and safe constructors, so values mean what YAML 1.1 says.
    """
    anchors: dict[str, Any] = {}
    # nodes each anchored value stands for, aliases inside it expanded
    sizes: dict[str, int] = {}
    # nodes of the document with every alias expanded, so far
    nodes = 0
    building: set[str] = set()
    stack: list[_Map | _Seq] = []
    root: Any = None
    documents = 0
    resolve: Callable[..., str] = loader.resolve
    get_event: Callable[[], Any] = loader.get_event

    while True:
        event = get_event()
        kind = type(event)
        if kind is yaml.ScalarEvent:
            mark = event.start_mark
            nodes += 1
            if nodes > MAX_NODES:
                raise _too_many(mark)
            tag = event.tag
            text = event.value
            if stack and isinstance(stack[-1], _Map) and stack[-1].key is None:
                # A key: keep the text as written (`on:` is not a boolean key).
                frame = stack[-1]
                if text in frame.result:
                    first = frame.result.key_marks[text][0]
                    raise _error(mark, f"duplicate key '{text}' (first given on line {first})")
                frame.key = text
                frame.merge = text == "<<" and tag is None and event.implicit[0]
                frame.key_mark = (mark.line + 1, mark.column + 1)
                continue
            if tag is None or tag == "!":
                plain = event.implicit[0]
                tag = (
                    resolve(ScalarNode, text, event.implicit)
                    if plain and (not text or text[0] in _RESOLVABLE)
                    else _STR_TAG
                )
            value: Any = (
                text
                if tag == _STR_TAG
                else loader.construct_object(
                    ScalarNode(tag, text, mark, event.end_mark, event.style)
                )
            )
            if event.anchor is not None:
                anchors[event.anchor] = value
                sizes[event.anchor] = 1
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            mark = event.start_mark
            if event.tag not in (_MAP_TAGS if kind is yaml.MappingStartEvent else _SEQ_TAGS):
                raise _error(mark, f"unsupported YAML tag {event.tag}")
            if stack and type(stack[-1]) is _Map and stack[-1].key is None:
                raise _error(mark, "a mapping key must be a plain text value")
            if len(stack) >= MAX_DEPTH:
                raise _limit(mark, _too_deep())
            nodes += 1
            if nodes > MAX_NODES:
                raise _too_many(mark)
            if event.anchor is not None:
                building.add(event.anchor)
            where = (mark.line + 1, mark.column + 1)
            if kind is yaml.MappingStartEvent:
                stack.append(_Map(MarkedMap(where), event.anchor, nodes - 1))
            else:
                stack.append(_Seq(MarkedSeq(where), event.anchor, nodes - 1))
            continue
        elif kind is yaml.MappingEndEvent:
            done = stack.pop()
            assert isinstance(done, _Map)
            value = done.result
            for source, source_mark in done.merges:
                for key, item in source.items():
                    if key not in value:
                        value[key] = item
                        value.key_marks[key] = source.key_marks.get(key, source_mark)
                        value.value_marks[key] = source.value_marks.get(key, source_mark)
            mark = None
            if done.anchor is not None:
                building.discard(done.anchor)
                anchors[done.anchor] = value
                sizes[done.anchor] = nodes - done.start
        elif kind is yaml.SequenceEndEvent:
            finished = stack.pop()
            assert isinstance(finished, _Seq)
            value = finished.result
            mark = None
            if finished.anchor is not None:
                building.discard(finished.anchor)
                anchors[finished.anchor] = value
                sizes[finished.anchor] = nodes - finished.start
        elif kind is yaml.AliasEvent:
            mark = event.start_mark
            if event.anchor in building:
                raise _error(mark, f"recursive alias *{event.anchor}")
            if event.anchor not in anchors:
                raise _error(mark, f"unknown alias *{event.anchor} (define &{event.anchor} first)")
            if stack and type(stack[-1]) is _Map and stack[-1].key is None:
                raise _error(mark, "a mapping key must be a plain text value")
            # an alias stands for a copy of everything under its anchor
            nodes += sizes[event.anchor]
            if nodes > MAX_NODES:
                raise _too_many(mark, event.anchor)
            value = anchors[event.anchor]
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _error(
                    event.start_mark, "a spec file holds one YAML document: remove the extra '---'"
                )
            continue
        elif event is None or kind is yaml.StreamEndEvent:
            return root
        else:  # stream start, document end
            continue

        # A complete value: attach it to its parent.
        if not stack:
            root = value
            continue
        parent = stack[-1]
        if isinstance(parent, _Map):
            key = parent.key or ""
            parent.key = None
            if parent.merge:
                parent.merge = False
                sources = value if isinstance(value, MarkedSeq) else [value]
                if not all(isinstance(m, MarkedMap) for m in sources):
                    raise _error(event.start_mark, "'<<' merges a mapping or a list of mappings")
                parent.merges.extend((m, parent.key_mark) for m in sources)
                continue
            target = parent.result
            target[key] = value
            target.key_marks[key] = parent.key_mark
            target.value_marks[key] = (
                (mark.line + 1, mark.column + 1) if mark is not None else value.mark
            )
        else:
            seq = parent.result
            seq.append(value)
            seq.item_marks.append(
                (mark.line + 1, mark.column + 1) if mark is not None else value.mark
            )


def _limit(mark: Any, message: str) -> YamlLimitError:
    return YamlLimitError(mark.line + 1, mark.column + 1, message)


def _too_deep() -> str:
    return f"nesting deeper than {MAX_DEPTH} levels (the limit for a spec file; a spec needs 6)"


def _too_many(mark: Any, alias: str | None = None) -> YamlLimitError:
    cause = f"alias *{alias} makes " if alias is not None else ""
    return _limit(
        mark,
        f"{cause}this document larger than {MAX_NODES:,} nodes with every alias expanded "
        "(the limit for a spec file; a 1,000-identity spec set has about 54,000)",
    )


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
    if "maximum nesting depth" in problem:
        # libyaml's own scanner stops flow nesting ("[[[...") at 1,000 levels, ahead of ours
        message = _too_deep()
    elif "tab" in problem or _char_at(text, line, column) == "\t":
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
    elif problem == "found unexpected end of stream" and "quoted scalar" in context:
        message = f"unclosed quote: the quoted text started on line {context_line} never ends"
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
    """Parse one YAML document into MarkedMap / MarkedSeq / scalars; None for an empty text.

    Raises ``YamlSyntaxError`` (``YamlLimitError`` for a text over one of the limits above).
    """
    if len(text) > MAX_BYTES:
        # characters, not bytes: read_specs checks the file's bytes before decoding it
        raise YamlLimitError(1, 1, too_large_message(len(text), "characters"))
    loader = _Loader(text)
    try:
        return _read_events(loader)
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


def too_large_message(size: int, unit: str = "bytes") -> str:
    """Why a text of ``size`` ``unit`` is refused (over ``MAX_BYTES``)."""
    return (
        f"{size:,} {unit} is over the {MAX_BYTES:,}-byte limit for a spec file "
        "(a 1,000-identity spec set is about 900,000 bytes): split it into several files"
    )


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
