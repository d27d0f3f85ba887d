"""Live state -> spec files: what ``reconciler export`` writes. Pure: no I/O.

Each kind says how one of its live objects reads as a spec entry (``KindSpec.export``, the
inverse of how ``reconciler.specs`` builds it) or why a spec cannot declare it; this module
only assembles the entries: it nests children under their parents, drops what another entry
implies, splits the entries into files, factors each file's ``defaults``, and writes a
comment for every object it could not express. The output is deterministic (sorted, no
timestamps), so that a re-export diffs cleanly in git.

An object that carries another owner's marker is not exported (a comment says whose it is):
declaring it would be an ownership conflict. A child whose parent is not exported is covered
by the parent's comment.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from reconciler.kinds import REGISTRY, kind_of
from reconciler.kinds.base import Exported
from reconciler.model import Address, ExportScope, LiveState
from reconciler.specs import entry_problems
from reconciler.yamlload import YamlSyntaxError, load_yaml

SPLITS: Final = ("resource-group", "project", "none")
# the file of everything when nothing splits it, and of identities no connection places
_ALL: Final = "estate"
_IDENTITIES: Final = "identities"
_WIDTH: Final = 96


@dataclass
class _View:
    """The ``ExportView`` the kinds see."""

    live: LiveState
    owner: str
    builtin: Mapping[str, str]  # role definition GUID (lower) -> built-in role name
    exported: dict[Address, Exported] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)
    # identity key -> its entry, for the connections that name it
    identities: dict[str, Exported] = field(default_factory=dict)
    _names: Counter[str] = field(default_factory=Counter)

    def role_name(self, guid: str, scope: str) -> str | None:
        guid = guid.lower()
        if guid in self.builtin:
            return self.builtin[guid]
        parts = scope.strip("/").split("/")
        if len(parts) < 2 or parts[0].lower() != "subscriptions":
            return None  # a management group: its catalogue was not read, say the GUID
        catalogue = self.live.role_definitions.get(parts[1].lower(), ())
        named = [d for d in catalogue if d.guid.lower() == guid]
        if len(named) != 1 or not named[0].name:
            return None
        name = named[0].name
        builtin_names = {n.lower() for n in self.builtin.values()}
        same = [d for d in catalogue if d.name.lower() == name.lower()]
        if len(same) != 1 or name.lower() in builtin_names:
            return None  # a name the plan could not resolve to this one role
        return name

    def identity_ref(self, key: str) -> str | dict[str, str]:
        sub, rg, name = key.split("/", 2)
        found = self.identities.get(key)
        node = found.node if found is not None else {}
        spelled = str(node.get("name") or name)
        if self._names[spelled.lower()] <= 1:
            return spelled
        return {
            "name": spelled,
            "resourceGroup": str(node.get("resourceGroup") or rg),
            "subscription": sub,
        }

    def add_identity(self, key: str, item: Exported) -> None:
        self.identities[key] = item
        self._names[str(item.node.get("name") or key).lower()] += 1


@dataclass(frozen=True)
class ExportResult:
    """``files``: file name (no folder) -> YAML text; ``exported``/``unexpressed``: counts."""

    files: dict[str, str]
    exported: int
    unexpressed: int
    implied: int


def owners_found(live: LiveState) -> tuple[list[str], bool]:
    """The owner markers on the live objects read (sorted), and whether some carry none."""
    markers = {r.owner for r in live.resources.values()}
    return sorted(m for m in markers if m), None in markers


def export_specs(
    live: LiveState,
    scope: ExportScope,
    *,
    owner: str,
    split: str = "resource-group",
    schema_ref: str = "spec.schema.json",
    builtin: Mapping[str, str] | None = None,
) -> ExportResult:
    """The spec files that declare the live objects of ``live`` (read for ``scope``).

    ``owner``: the owner the files name; ``split``: ``resource-group`` (a file per identity's
    resource group, with the connections that sign in as its identities), ``project`` (a file
    per Azure DevOps project, with the identities its connections sign in as) or ``none``
    (one file); ``schema_ref``: the modeline's path to the schema; ``builtin``: built-in
    role GUID -> name. Raises ``ValueError`` for an unknown split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    view = _View(live, owner, {k.lower(): v for k, v in (builtin or {}).items()})
    for rules in sorted(REGISTRY.values(), key=lambda r: r.export_order):
        for current in live.of_kind(rules.kind):
            item = rules.export(current, view)
            if item is None:
                continue
            if rules.has_marker and current.owner not in (None, owner):
                item = dataclasses.replace(
                    item,
                    node={},
                    unexpressed=f"it carries the owner marker '{current.owner}': another spec "
                    "set declares it (export with that --owner, or take it over with "
                    "`plan --force` after declaring it)",
                )
            if item.parent is None and item.section != "identities" and not item.unexpressed:
                # checked now, before the credentials it implies are left out for it
                why = _undeclarable(item.section, item.node, owner)
                if why:
                    item = dataclasses.replace(item, node={}, unexpressed=why)
            if item.parent is not None:
                parent = view.exported.get(item.parent)
                if parent is None or parent.unexpressed:
                    continue  # the parent's comment covers it
            if item.section == "identities" and not item.unexpressed:
                view.add_identity(current.address.key, item)
            view.exported[current.address] = item
    _refuse_undeclarable(view, owner)
    _block_parents(view)
    return _write(view, scope, owner, split, schema_ref)


def _undeclarable(section: str, node: Mapping[str, Any], owner: str) -> str:
    """Why the entry ``node`` of ``section`` cannot be written ('' when it can): the schema's
    problems in ``validate``'s words, or a value YAML would not give back the same."""
    found = entry_problems({"version": 1, "owner": owner, section: [dict(node)]})
    if not found and _reads_back(node):
        return ""
    prefix = f"{section}[0]"
    why = "; ".join(
        f"{path[len(prefix) :].lstrip('.') or 'the entry'}: {message}"
        for path, message in found[:3]
    )
    return f"a spec cannot declare it ({why or 'a value does not read back the same from YAML'})"


def _refuse_undeclarable(view: _View, owner: str) -> None:
    """Every identity about to be written, with its children, checked against the spec schema
    (``validate``'s own words; connections are checked as they are exported): one a spec
    cannot hold (a tag or description YAML would alter, a value too long...) becomes a
    comment naming the field and why, and so does a connection that signs in as it."""
    children: dict[Address, list[tuple[Address, Exported]]] = {}
    for address, item in view.exported.items():
        if item.parent is not None and not item.implied and not item.unexpressed:
            children.setdefault(item.parent, []).append((address, item))
    refused: set[Address] = set()
    for address, item in sorted(view.exported.items()):
        if item.section != "identities" or item.unexpressed or not item.node:
            continue
        node = dict(item.node)
        for _, child in sorted(children.get(address, ()), key=lambda c: c[0]):
            node.setdefault(child.under, []).append(child.node)
        why = _undeclarable(item.section, node, owner)
        if why:
            view.exported[address] = dataclasses.replace(item, node={}, unexpressed=why)
            refused.add(address)
    for address, item in sorted(view.exported.items()):
        if item.parent is not None or item.unexpressed or item.section == "identities":
            continue
        home = kind_of(address.kind).parent(view.live.resources[address].attrs)
        if home in refused:
            view.exported[address] = dataclasses.replace(
                item,
                node={},
                unexpressed=f"it signs in as {view.exported[home].label}, which is not exported",
            )


def _block_parents(view: _View) -> None:
    """An unexpressed child that its parent cannot be adopted without: the parent is not
    exported either, nor any top-level object that hangs off it (a connection signing in as
    it, decided before the credentials were)."""
    blocked: set[Address] = set()
    for item in list(view.exported.values()):
        if item.blocks_parent and item.parent is not None:
            parent = view.exported[item.parent]
            blocked.add(item.parent)
            if not parent.unexpressed:
                view.exported[item.parent] = dataclasses.replace(
                    parent, node={}, unexpressed=f"its {item.label}: {item.unexpressed}"
                )
    for address, item in list(view.exported.items()):
        if item.parent is not None or item.unexpressed or item.section == "identities":
            continue
        home = kind_of(address.kind).parent(view.live.resources[address].attrs)
        if home in blocked:
            view.exported[address] = dataclasses.replace(
                item,
                node={},
                unexpressed=f"it signs in as {view.exported[home].label}, which is not exported",
            )


# -- files ------------------------------------------------------------------------------------


@dataclass
class _File:
    entries: dict[str, list[tuple[Address, Exported]]] = field(default_factory=dict)
    comments: list[tuple[Exported, str]] = field(default_factory=list)  # (item, where)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def _write(
    view: _View, scope: ExportScope, owner: str, split: str, schema_ref: str
) -> ExportResult:
    items = view.exported
    top = {a: i for a, i in items.items() if i.parent is None}
    children: dict[Address, list[tuple[Address, Exported]]] = {}
    for address, item in items.items():
        if item.parent is not None:
            children.setdefault(item.parent, []).append((address, item))

    # where each top-level object goes: its group key, then a file name per group
    group_of: dict[Address, tuple[str, ...]] = {}
    # a connection's home: the object it hangs off (the identity it signs in as)
    home_of = {
        address: kind_of(address.kind).parent(view.live.resources[address].attrs)
        for address, item in top.items()
        if item.section != "identities"
    }
    by_identity: dict[Address, list[Address]] = {}  # identity -> connections signing in as it
    for address, home in home_of.items():
        if home is not None:
            by_identity.setdefault(home, []).append(address)

    def project_group(item: Exported) -> tuple[str, ...]:
        return ("project", item.place.get("organization", ""), item.place.get("project", ""))

    def group_group(item: Exported) -> tuple[str, ...]:
        return (
            "resource-group",
            item.place.get("subscription", ""),
            item.place.get("resourceGroup", ""),
        )

    for address, item in sorted(top.items()):
        if split == "none":
            group_of[address] = (_ALL,)
        elif split == "resource-group":
            if item.section == "identities":
                group_of[address] = group_group(item)
        elif item.section != "identities":
            group_of[address] = project_group(item)
    for address, item in sorted(top.items()):
        if address in group_of:
            continue
        if item.section == "identities":  # split by project
            users = [
                c
                for c in sorted(by_identity.get(address, ()))
                if not top[c].unexpressed and c in group_of
            ]
            group_of[address] = group_of[users[0]] if users else (_IDENTITIES,)
        else:  # split by resource group: with the identity it signs in as
            home = home_of.get(address)
            if home is not None and home in group_of and not item.unexpressed:
                group_of[address] = group_of[home]
            else:
                group_of[address] = project_group(item)
    names = _file_names(set(group_of.values()))

    files: dict[str, _File] = {}
    for address, item in sorted(top.items()):
        file = files.setdefault(names[group_of[address]], _File())
        if item.unexpressed:
            file.comments.append((item, ""))
            continue
        file.entries.setdefault(item.section, []).append((address, item))
        for _, child in sorted(children.get(address, ()), key=lambda c: c[0]):
            if child.unexpressed:
                file.comments.append((child, ""))

    texts = {
        name: _render(file, children, owner, schema_ref, scope) for name, file in files.items()
    }
    counted = list(items.values())
    return ExportResult(
        files=dict(sorted(texts.items())),
        exported=sum(1 for i in counted if not i.unexpressed and not i.implied),
        unexpressed=sum(1 for i in counted if i.unexpressed),
        implied=sum(1 for i in counted if i.implied),
    )


def _file_names(groups: set[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """A file name per group, unique, from its parts: a resource group's name (with its
    subscription when two subscriptions have one of that name), ``{org}-{project}``."""
    names: dict[tuple[str, ...], str] = {}
    rg_count = Counter(g[2].lower() for g in groups if g[0] == "resource-group")
    for group in sorted(groups):
        if group[0] == "resource-group":
            _, sub, rg = group
            stem = _safe(rg if rg_count[rg.lower()] == 1 else f"{rg}-{sub}")
        elif group[0] == "project":
            stem = _safe(f"{group[1]}-{group[2]}")
        else:
            stem = group[0]
        name, n = f"{stem}.yaml", 2
        while name.lower() in {v.lower() for v in names.values()}:
            name, n = f"{stem}-{n}.yaml", n + 1
        names[group] = name
    return names


def _defaults(entries: Sequence[tuple[Address, Exported]]) -> dict[str, Any]:
    """The file's defaults: for each field the entries may leave to ``defaults``, the value
    most of them share, when at least two share it (ties: the smallest value)."""
    found: dict[str, Any] = {}
    for key in sorted({k for _, item in entries for k in item.defaults}):
        values = Counter(
            str(item.node[key]) for _, item in entries if key in item.defaults and key in item.node
        )
        if not values:
            continue
        value, count = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        if count >= 2:
            found[key] = value
    return found


_DEFAULT_ORDER: Final = ("subscription", "resourceGroup", "location", "organization", "project")


class _Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` writing every text a plain or single-quoted scalar could alter
    double-quoted, where YAML escapes what it holds (``\\N``, ``\\L``, ``\\x07``...): one
    with a line break of any kind (NEL, LS and PS too: PyYAML writes them raw in a
    single-quoted scalar, and they read back as a space), a control or format character, or
    leading or trailing whitespace."""


def _risky(text: str) -> bool:
    return text != text.strip() or not text.isprintable()


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    if _risky(text):
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')
    return dumper.represent_str(text)


_Dumper.add_representer(str, _represent_text)


def _dump(value: Any) -> str:
    text: str = yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=_WIDTH,
        default_flow_style=False,
    )
    return text


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [t for k, v in value.items() for t in (*_texts(k), *_texts(v))]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _texts(v)]
    return []


def _reads_back(node: Mapping[str, Any]) -> bool:
    """Whether ``node`` written as the export writes it reads back equal with the specs'
    loader; checked only for a node holding a text that is not plain printable ASCII."""
    if all(t.isascii() and not _risky(t) for t in _texts(node)):
        return True
    try:
        return bool(load_yaml(_dump([dict(node)])) == [dict(node)])
    except YamlSyntaxError:
        return False


def _indent(text: str, prefix: str) -> str:
    return "".join(prefix + line if line.strip() else line for line in text.splitlines(True))


def _printable(text: str) -> str:
    """``text`` with every character a YAML comment cannot hold (a line break of any kind,
    other control or format characters, a byte order mark) escaped as ``\\xNN``/``\\uNNNN``,
    so that a live name can never end a comment line and be read as YAML."""
    out = []
    for char in text:
        if char in "\t\n\r":
            out.append(" ")  # textwrap's whitespace
        elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def _comment(text: str, prefix: str = "# ", rest: str | None = None) -> str:
    """``text`` as comment lines: ``prefix`` on the first, ``rest`` (else ``prefix``) after."""
    lines = textwrap.wrap(_printable(text), width=_WIDTH - len(prefix), break_on_hyphens=False) or [
        ""
    ]
    later = prefix if rest is None else rest
    return "".join(f"{prefix if i == 0 else later}{line}\n" for i, line in enumerate(lines))


def _render(
    file: _File,
    children: Mapping[Address, list[tuple[Address, Exported]]],
    owner: str,
    schema_ref: str,
    scope: ExportScope,
) -> str:
    out = [f"# yaml-language-server: $schema={schema_ref}\n", "#\n"]
    where = ", ".join(
        [f"subscription {s}" for s in scope.subscriptions]
        + [f"resource group {g}" for g in scope.resource_groups]
        + [f"Azure DevOps organization {o}" for o in scope.organizations]
        + [f"project {p}" for p in scope.projects]
    )
    out.append(
        _comment(
            f"Written by `reconciler export` from the live estate ({where}). Once adopted "
            f"(`reconciler apply` stamps the owner marker '{owner}' on each object), these "
            "specs are the source of truth for what they declare."
        )
    )
    out.append("\nversion: 1\n")
    out.append(_dump({"owner": owner}))
    defaults_of = {section: _defaults(entries) for section, entries in sorted(file.entries.items())}
    merged: dict[str, Any] = {}
    for values in defaults_of.values():
        merged.update(values)
    if merged:
        ordered = {k: merged[k] for k in _DEFAULT_ORDER if k in merged}
        out.append(_dump({"defaults": ordered}))
    for section in ("identities", "serviceConnections"):
        entries = file.entries.get(section)
        if not entries:
            continue
        out.append(f"\n{section}:\n")
        for address, item in entries:
            node = {
                k: v
                for k, v in item.node.items()
                if not (k in item.defaults and k in merged and str(v) == merged[k])
            }
            for _, child in sorted(children.get(address, ()), key=lambda c: c[0]):
                if child.implied or child.unexpressed:
                    continue
                node.setdefault(child.under, []).append(child.node)
            if item.note:
                out.append(_comment(item.note, "  # "))
            out.append(_indent(_dump([node]), "  "))
    if file.comments:
        out.append(
            "\n# Not exported: live objects in scope that these specs cannot declare, each "
            "with the reason.\n"
        )
        for item, _ in file.comments:
            out.append("#\n")
            out.append(_comment(f"{item.label}: {item.unexpressed}.", "# - ", "#   "))
            if item.node:
                out.append(_indent(_dump({item.section: [item.node]}), "#     "))
    return "".join(out)
