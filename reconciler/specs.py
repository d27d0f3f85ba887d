"""Spec files -> one flattened ``DesiredState``: read YAML with line marks, check it against
``schema/spec.schema.json`` and against itself, apply defaults, and build one resource per kind.

Every problem is collected (never the first one only) and raised together as a ``SpecError``,
each located at the YAML node it is about. Pure apart from reading the files in
``read_specs``; no service is consulted, so role names that are not well-known built-ins stay
unresolved (``roleDefinitionId`` None) until the planner looks them up in the live catalogue.

Spec semantics worth knowing (the schema's descriptions say the same to editors):
- ``defaults`` apply to the file they are written in only.
- A service connection names its identity by name, or by ``{name, resourceGroup, subscription}``
  when several identities loaded together share the name; identities may live in another file.
- A role assignment gives ``scope`` or the shorthand ``resourceGroup`` (in the identity's
  subscription).
- Each service connection implies a federated credential on its identity, named by
  ``implied_credential_name``; its issuer and subject are known only after Azure DevOps
  creates the connection.

Speed (``validate`` of a 1,000-identity spec takes about half a second, start-up included):
YAML is built from libyaml's events (``yamlload``), and the schema is first applied as a
plain predicate compiled from it (``_fast_check``), which accepts only what jsonschema would
accept; jsonschema (Draft 2020-12) is imported and asked only when that predicate rejects
something, and then it produces the errors, skipping the parts the predicate accepts.
"""

from __future__ import annotations

import difflib
import functools
import gc
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from reconciler.errors import ConfigError, Problem, SpecError
from reconciler.kinds import REGISTRY, KindSpec
from reconciler.kinds.base import DeclaredIdentity
from reconciler.model import (
    MAX_CREDENTIALS_PER_IDENTITY,
    Address,
    DesiredState,
    Kind,
    Reach,
    Resource,
    Source,
)
from reconciler.yamlload import (
    MAX_BYTES,
    Mark,
    MarkedMap,
    MarkedSeq,
    YamlSyntaxError,
    load_yaml,
    mark_at,
    too_large_message,
)

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

SPEC_SUFFIXES: Final = (".yaml", ".yml")

# Built-in roles have the same GUID in every tenant, so their names resolve offline; other role
# names resolve from the live catalogue at plan time. The catalogue is Azure's, committed as data
# with its source and date (the simulator serves its own copy of the same file).
BUILTIN_ROLES_FILE: Final = "azure-builtin-roles.json"


@functools.cache
def builtin_roles() -> Mapping[str, str]:
    """Azure's built-in role names -> role definition GUIDs (lower-case).

    From ``reconciler/schema/azure-builtin-roles.json`` (Microsoft Learn's "Azure built-in roles"
    tables; the file names its commit and date). Raises ``ConfigError`` if the file is missing.
    """
    path = Path(__file__).resolve().parent / "schema" / BUILTIN_ROLES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"built-in role catalogue not found ({path}): {exc}") from None
    return {str(r["roleName"]): str(r["id"]).lower() for r in data["roles"]}


@functools.cache
def _builtin_by_name() -> dict[str, str]:
    return {name.lower(): guid for name, guid in builtin_roles().items()}


@functools.cache
def _builtin_by_guid() -> dict[str, str]:
    return {guid: name for name, guid in builtin_roles().items()}


_GUID_RE: Final = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I
)
_GUIDISH_RE: Final = re.compile(r"^[0-9a-f]+(?:-[0-9a-f]*)+$", re.I)
_ROLE_ID_RE: Final = re.compile(
    r"^(?:/subscriptions/([^/]*))?/providers/Microsoft\.Authorization/roleDefinitions/([^/]*)$",
    re.I,
)
_RG_RE: Final = re.compile(r"^[-\w.()]{0,89}[-\w()]$")
_SECRET_RE: Final = re.compile(
    r"secret|passw|pwd|token|certificate|privatekey|principalkey|apikey|accesskey|key$|^pat$",
    re.I,
)
_SCOPE_FORMS: Final = (
    "/subscriptions/{id}, /subscriptions/{id}/resourceGroups/{name}[/providers/...] "
    "or /providers/Microsoft.Management/managementGroups/{name}"
)
_DEFAULT_KEYS: Final = ("subscription", "resourceGroup", "location", "organization", "project")
_TYPE_NAMES: Final = {
    "string": "text",
    "array": "a list",
    "object": "a mapping",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """One spec file as read: its YAML tree (MarkedMap at the top when well-formed)."""

    file: str
    data: Any
    problems: tuple[Problem, ...] = ()


def find_spec_files(paths: Sequence[str]) -> list[str]:
    """Expand files and folders (recursively, *.yaml and *.yml, hidden entries skipped) into
    a list of files in a stable order, each once."""
    found: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            found.append(path)

    for path in paths:
        if os.path.isdir(path):
            inside: list[str] = []
            for folder, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                inside.extend(
                    os.path.join(folder, name)
                    for name in files
                    if name.endswith(SPEC_SUFFIXES) and not name.startswith(".")
                )
            if not inside:
                raise ConfigError(f"{path}: no spec files (*.yaml, *.yml) in this folder")
            for file in sorted(inside):
                add(file)
        elif os.path.isfile(path):
            add(path)
        else:
            raise ConfigError(f"{path}: no such file or folder")
    return found


def _decode(file: str, raw: bytes) -> tuple[str, Problem | None]:
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return "", Problem(file, line, column, "", "not UTF-8 text: save the file as UTF-8")


def read_specs(paths: Sequence[str]) -> list[Document]:
    """Read and parse every spec file under ``paths``. Syntax problems stay on the document."""
    documents = []
    for file in find_spec_files(paths):
        try:
            with open(file, "rb") as stream:
                # one byte over the limit is enough to refuse: never read a huge file whole
                raw = stream.read(MAX_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{file}: {exc.strerror or exc}") from None
        if len(raw) > MAX_BYTES:
            size = os.path.getsize(file)
            message = too_large_message(size)
            documents.append(Document(file, None, (Problem(file, 1, 1, "", message),)))
            continue
        text, problem = _decode(file, raw)
        if problem is not None:
            documents.append(Document(file, None, (problem,)))
            continue
        try:
            data = load_yaml(text)
        except YamlSyntaxError as exc:
            documents.append(
                Document(file, None, (Problem(file, exc.line, exc.column, "", exc.message),))
            )
            continue
        documents.append(Document(file, data))
    return documents


def spec_names(paths: Sequence[str]) -> dict[str, str]:
    """Each spec file under ``paths`` (as ``find_spec_files`` spells it) -> a name that does not
    depend on how the paths were spelled or where the checkout lives: its path, with ``/``,
    relative to the deepest folder that holds every spec file read (``a.yaml``,
    ``teams/b.yaml``). ``specs``, ``./specs/``, an absolute path, and a folder plus a file inside
    it given again all give the same names."""
    files = find_spec_files(paths)
    real = {file: os.path.realpath(file) for file in files}
    if not real:
        return {}
    root = os.path.commonpath([os.path.dirname(r) for r in real.values()])
    return {file: Path(os.path.relpath(r, root)).as_posix() for file, r in real.items()}


def spec_digest(paths: Sequence[str]) -> str:
    """sha256 (hex) over the set of spec files read: each file's spelling-independent name
    (``spec_names``) and the sha256 of its bytes, in name order. Changes when a file's content,
    name within the spec folder, or the set of files changes; not when the same files are named
    another way (``specs`` or ``./specs/``) or read from another checkout folder."""
    digest = hashlib.sha256()
    for name, file in sorted((name, file) for file, name in spec_names(paths).items()):
        content = hashlib.sha256(Path(file).read_bytes()).hexdigest()
        digest.update(f"{name}\0{content}\0".encode())
    return digest.hexdigest()


def load_desired_state(paths: Sequence[str]) -> DesiredState:
    """Read, validate and flatten the specs; raises ``SpecError`` listing every problem."""
    # Loading allocates hundreds of thousands of small acyclic objects; the cyclic collector
    # would rescan the growing heap again and again (a third of the time on large specs).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return build_desired_state(read_specs(paths))
    finally:
        if enabled:
            gc.enable()


# --- schema -------------------------------------------------------------------------------


def schema_path() -> Path:
    """The spec schema: shipped inside the package when installed, else the source tree's."""
    here = Path(__file__).resolve().parent
    for candidate in (
        here / "schema" / "spec.schema.json",
        here.parent / "schema/spec.schema.json",
    ):
        if candidate.is_file():
            return candidate.resolve()  # in a source tree the packaged copy links to schema/
    raise ConfigError("spec schema not found (schema/spec.schema.json)")


@functools.cache
def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path().read_text(encoding="utf-8"))
    return schema


def _inline_refs(node: Any, defs: Mapping[str, Any]) -> Any:
    """The schema with every local ``$ref`` replaced by its target (the schema has no cycles).

    jsonschema resolves a ``$ref`` on every visit, which is a third of the validation time of
    a large spec; sibling keywords next to a ``$ref`` (descriptions) are kept.
    """
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            merged = dict(_inline_refs(defs[ref.removeprefix("#/$defs/")], defs))
            merged.update({k: _inline_refs(v, defs) for k, v in node.items() if k != "$ref"})
            return merged
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(item, defs) for item in node]
    return node


# The subset of JSON Schema that ``_fast_check`` models; a subschema using anything else
# (const, anyOf, ...) always goes through jsonschema.
_ANNOTATIONS: Final = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "errorMessage", "patternErrorMessage"}
)
_MODELLED: Final = _ANNOTATIONS | {
    "type",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "properties",
    "additionalProperties",
    "required",
    "maxProperties",
    "propertyNames",
    "items",
    "uniqueItems",
    "minItems",
    "maxItems",
}
Check = Callable[[Any], bool]
# id(subschema) -> (subschema, check); holding the subschema keeps its id from being reused.
_fast_checks: dict[int, tuple[Any, Check | None]] = {}


def _fast_check(schema: Any, *, keys: bool = False) -> Check | None:
    """A plain predicate that accepts a value only if jsonschema finds no error in it against
    ``schema``, or None when the subschema uses a keyword outside the modelled subset.

    Used to skip jsonschema's costly descent into valid parts of a spec (a 1,000-identity
    spec validates in a few hundredths of a second instead of half a second). It may reject
    a valid value (jsonschema then looks and finds nothing) but never accepts an invalid one:
    every keyword is evaluated as jsonschema evaluates it (``re.search``, ``len``, ``isinstance``
    against dict, list and str) and anything unmodelled makes it give up. ``keys`` compiles a
    ``propertyNames`` schema, which applies to strings and has no ``type``.
    """
    known = _fast_checks.get(id(schema))
    if known is not None:
        return known[1]
    check = _compile_check(schema, keys)
    _fast_checks[id(schema)] = (schema, check)
    return check


def _compile_check(schema: Any, keys: bool) -> Check | None:
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        const = schema["const"]
        if set(schema) - _ANNOTATIONS != {"const"} or type(const) not in (str, int):
            return None
        # Same type and value: stricter than jsonschema (which takes 1.0 for 1), never looser.
        return lambda value: type(value) is type(const) and value == const
    if not set(schema) <= _MODELLED:
        return None
    declared = schema.get("type", "string" if keys else None)
    types = {declared} if isinstance(declared, str) else set(declared or ())
    if not types or not types <= {"string", "object", "array"}:
        return None
    enum = schema.get("enum")
    if enum is not None and not all(isinstance(e, str) for e in enum):
        return None
    pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
    min_length = schema.get("minLength", 0)
    max_length = schema.get("maxLength", float("inf"))
    properties: dict[str, Check] = {}
    for name, subschema in schema.get("properties", {}).items():
        sub = _fast_check(subschema)
        if sub is None:
            return None
        properties[name] = sub
    extra = schema.get("additionalProperties", True)
    extra_check = _fast_check(extra) if isinstance(extra, dict) else None
    if isinstance(extra, dict) and extra_check is None:
        return None
    names = schema.get("propertyNames")
    names_check = _fast_check(names, keys=True) if names is not None else None
    if names is not None and names_check is None:
        return None
    required = tuple(schema.get("required", ()))
    max_properties = schema.get("maxProperties", float("inf"))
    items = schema.get("items")
    items_check = _fast_check(items) if items is not None else None
    if items is not None and items_check is None:
        return None
    unique = schema.get("uniqueItems", False)
    min_items = schema.get("minItems", 0)
    max_items = schema.get("maxItems", float("inf"))

    def check(value: Any) -> bool:
        if isinstance(value, str):
            return (
                "string" in types
                and (enum is None or value in enum)
                and min_length <= len(value) <= max_length
                and (pattern is None or pattern.search(value) is not None)
            )
        if enum is not None:
            return False  # only string enums are modelled
        if isinstance(value, dict):
            if "object" not in types or len(value) > max_properties:
                return False
            if any(name not in value for name in required):
                return False
            for name, item in value.items():
                sub = properties.get(name)
                if sub is not None:
                    if not sub(item):
                        return False
                elif extra is False or (extra_check is not None and not extra_check(item)):
                    return False
                if names_check is not None and not names_check(name):
                    return False
            return True
        if isinstance(value, list):
            if "array" not in types or not min_items <= len(value) <= max_items:
                return False
            if items_check is not None and not all(items_check(item) for item in value):
                return False
            # Only strings are compared here; jsonschema's equality has subtleties for others.
            return not unique or (
                all(isinstance(item, str) for item in value) and len(set(value)) == len(value)
            )
        return False

    return check


@functools.cache
def _inlined_schema() -> dict[str, Any]:
    schema = spec_schema()
    inlined: dict[str, Any] = _inline_refs(schema, schema.get("$defs", {}))
    return inlined


@functools.cache
def _validator() -> Any:
    """The Draft 2020-12 validator that explains what is wrong, built on first need.

    Its two descending keywords skip the parts the fast check accepts: the errors are
    jsonschema's own, found sooner. Imported lazily: a spec the fast check accepts as a whole
    never needs it, which keeps ``validate`` quick to start.
    """
    from jsonschema import Draft202012Validator, validators

    draft_items = Draft202012Validator.VALIDATORS["items"]

    def properties(validator: Any, properties: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        for name, subschema in properties.items():
            if name in instance:
                value = instance[name]
                check = _fast_check(subschema)
                if check is None or not check(value):
                    yield from validator.descend(value, subschema, path=name, schema_path=name)

    def items(validator: Any, items: Any, instance: Any, schema: Any) -> Iterator[Any]:
        check = _fast_check(items)
        if check is None or not isinstance(instance, list) or "prefixItems" in schema:
            yield from draft_items(validator, items, instance, schema)
            return
        for index, item in enumerate(instance):
            if not check(item):
                yield from validator.descend(item, items, path=index)

    extended: Any = validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, {"properties": properties, "items": items}
    )
    return extended(_inlined_schema())


def schema_errors(document: Any) -> list[ValidationError]:
    """jsonschema's errors for a spec document; none, without asking it, when the fast check
    accepts the whole document."""
    check = _fast_check(_inlined_schema())
    if check is not None and check(document):
        return []
    return list(_validator().iter_errors(document))


def entry_problems(document: Any) -> list[tuple[str, str]]:
    """(field path, message) for each schema problem of a spec document held in memory, in
    the words ``validate`` uses; none when it is valid. For ``export``, which checks each entry
    before it writes it."""
    return [
        (problem.path, problem.message)
        for error in schema_errors(document)
        for problem in _schema_problems("", document, error)
    ]


def _path_text(path: Iterable[str | int]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _describe_value(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"the {type(value).__name__} {value}"  # dates and times YAML read for us


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_message(error: ValidationError) -> str:
    wanted: Any = error.validator_value
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    expected = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
    value = error.instance
    message = f"expected {expected}, got {_describe_value(value)}"
    if "string" in names and value is not None and not isinstance(value, list | dict):
        message += " (put the value in quotes to keep it as text)"
    return message


def _unknown_key_message(key: str, known: Iterable[str]) -> str:
    known = sorted(known)
    if _SECRET_RE.search(key.replace("_", "").replace("-", "")):
        return (
            "unknown field (secrets are never part of a spec: workload identity federation "
            "needs none)"
        )
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.7)
    if close:
        return f"unknown field (did you mean '{lowered[close[0]]}'?)"
    return f"unknown field (expected one of: {', '.join(known)})"


def _schema_problems(file: str, root: Any, error: ValidationError) -> list[Problem]:
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    keyword = error.validator
    value: Any = error.instance
    expected: Any = error.validator_value  # jsonschema types it as possibly unset

    def at(where: list[str | int], message: str, *, key: bool = False) -> Problem:
        line, column = mark_at(root, where, key=key)
        return Problem(file, line, column, _path_text(where), message)

    if keyword == "additionalProperties" and isinstance(value, dict):
        known = set(schema.get("properties", {}))
        return [
            at([*path, k], _unknown_key_message(k, known), key=True)
            for k in value
            if k not in known
        ]
    if keyword == "required" and isinstance(value, dict):
        return [
            at([*path, name], "required field missing") for name in expected if name not in value
        ]
    if "propertyNames" in error.relative_schema_path:
        # jsonschema reports a bad key at its object; point at the key itself.
        message = schema.get("patternErrorMessage") if keyword == "pattern" else None
        if keyword == "maxLength":
            message = f"must be at most {expected} characters"
        return [at([*path, str(value)], message or error.message, key=True)]
    if keyword == "type":
        return [at(path, _type_message(error))]
    if "errorMessage" in schema:
        return [at(path, schema["errorMessage"])]
    if keyword == "pattern" and "patternErrorMessage" in schema:
        return [at(path, f"{schema['patternErrorMessage']} (got '{_short(value)}')")]
    if keyword == "minLength":
        limit = expected
        text = "must not be empty" if limit == 1 else f"must be at least {limit} characters"
        return [at(path, text)]
    if keyword == "maxLength":
        return [at(path, f"must be at most {expected} characters (got {len(value)})")]
    if keyword == "uniqueItems" and isinstance(value, list):
        seen: list[Any] = []
        for index, item in enumerate(value):
            if item in seen:
                return [at([*path, index], f"duplicate entry '{_short(item)}'")]
            seen.append(item)
    if keyword in ("const", "enum"):
        allowed = [expected] if keyword == "const" else expected
        return [at(path, "must be " + " or ".join(json.dumps(a) for a in allowed))]
    if keyword == "minItems":
        return [at(path, f"must have at least {expected} item(s)")]
    if keyword == "maxItems":
        return [at(path, f"must have at most {expected} item(s)")]
    return [at(path, error.message)]


# --- building -----------------------------------------------------------------------------


def _entry_of(error: ValidationError) -> tuple[str | int, ...] | None:
    """The smallest part of a spec that a schema error makes unusable: () for the whole file,
    None for nothing (an unknown top-level key, a missing version: the rest still reads)."""
    path = list(error.absolute_path)
    if not path:
        return None if error.validator in ("additionalProperties", "required") else ()
    top = path[0]
    if top == "version":
        return ()  # another format: nothing else in the file can be read
    if top in ("identities", "serviceConnections") and len(path) >= 2:
        if (
            top == "identities"
            and len(path) >= 4
            and path[2] in ("federatedCredentials", "roleAssignments")
            and isinstance(path[3], int)
        ):
            return tuple(path[:4])
        return tuple(path[:2])
    if top == "defaults" and len(path) >= 2:
        return tuple(path[:2])
    return (top,)


def _check_scope(scope: str) -> str | None:
    """Why ``scope`` is not a valid ARM scope, or None."""
    if not scope.startswith("/"):
        return f"must be an ARM scope starting with '/': {_SCOPE_FORMS}"
    parts = scope.split("/")[1:]
    if scope != "/" and any(not p for p in parts):
        return f"empty segment ('//') in scope: expected {_SCOPE_FORMS}"
    head = parts[0].lower()
    if head == "subscriptions" and len(parts) >= 2:
        if not _GUID_RE.match(parts[1]):
            return f"malformed subscription id '{_short(parts[1])}' in scope (expected a GUID)"
        if len(parts) == 2:
            return None
        if parts[2].lower() == "resourcegroups" and len(parts) >= 4:
            if not _RG_RE.match(parts[3]):
                return f"malformed resource group name '{_short(parts[3])}' in scope"
            if len(parts) == 4:
                return None
            rest = parts[5:]
            if parts[4].lower() == "providers" and len(rest) >= 3 and len(rest) % 2 == 1:
                return None
    elif (
        head == "providers"
        and len(parts) == 4
        and parts[1].lower() == "microsoft.management"
        and parts[2].lower() == "managementgroups"
    ):
        return None
    return f"not a valid ARM scope: expected {_SCOPE_FORMS}"


def _role_definition(role: str) -> tuple[str | None, str | None]:
    """(role definition GUID or None when it needs the live catalogue, error or None)."""
    if _GUID_RE.match(role):
        return role.lower(), None
    if role.startswith("/"):
        match = _ROLE_ID_RE.match(role.rstrip("/"))
        if match is None:
            return None, (
                "not a role definition id: expected /subscriptions/{id}/providers/"
                "Microsoft.Authorization/roleDefinitions/{guid} or "
                "/providers/Microsoft.Authorization/roleDefinitions/{guid}"
            )
        subscription, guid = match.groups()
        if subscription is not None and not _GUID_RE.match(subscription):
            return None, f"malformed subscription id '{_short(subscription)}' in role definition id"
        if not _GUID_RE.match(guid):
            return None, f"malformed role definition GUID '{_short(guid)}'"
        return guid.lower(), None
    if _GUIDISH_RE.match(role) and len(role) >= 20:
        return None, f"malformed role definition GUID '{_short(role)}'"
    return _builtin_by_name().get(role.lower()), None


class _Builder:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.resources: dict[Address, Resource] = {}
        self.identities: dict[str, DeclaredIdentity] = {}
        self.by_name: dict[str, list[DeclaredIdentity]] = {}
        # An identity was skipped, so "no such identity" may be a consequence, not the cause.
        self.incomplete = False
        self.owners: list[tuple[str, str, Mark]] = []
        # Per usable document: the entries its schema errors made unusable.
        self.bad: dict[str, set[tuple[str | int, ...]]] = {}
        self.files_skipped = False
        self.owner_unknown = False  # an owner was given but has a problem
        # reach of every file: subscriptions (lower), management group scopes, organisations
        self.reach: tuple[dict[str, str], dict[str, str], dict[str, str]] = ({}, {}, {})

    def problem(
        self, file: str, root: Any, path: list[str | int], message: str, *, key: bool = False
    ) -> None:
        line, column = mark_at(root, path, key=key)
        self.problems.append(Problem(file, line, column, _path_text(path), message))

    @staticmethod
    def source(file: str, spec: Any, path: list[str | int]) -> Source:
        """Where the entry ``spec`` (a MarkedMap found at ``path``) starts."""
        line, column = spec.mark
        return Source(file, line, column, _path_text(path))

    @staticmethod
    def at(file: str, root: Any, path: list[str | int]) -> Source:
        """Where the value at ``path`` was written."""
        line, column = mark_at(root, path)
        return Source(file, line, column, _path_text(path))

    def given(
        self, file: str, root: Any, path: list[str | int], spec: Mapping[str, Any], name: str
    ) -> Source:
        """Where field ``name`` of the entry at ``path`` was written: there, or in defaults."""
        return self.at(file, root, [*path, name] if name in spec else ["defaults", name])

    def add(
        self, resource: Resource, label: str, file: str, root: Any, path: list[str | int]
    ) -> bool:
        """Add a resource unless its address is taken; ``label`` names it in the message."""
        first = self.resources.get(resource.address)
        if first is None:
            self.resources[resource.address] = resource
            return True
        self.problem(file, root, path, f"duplicate {label}: already declared at {first.source}")
        return False

    # documents -------------------------------------------------------------------------

    def document(self, doc: Document) -> None:
        if doc.problems:
            self.problems.extend(doc.problems)
            self.incomplete = self.files_skipped = True
            return
        root = doc.data
        if root is None:
            self.problems.append(
                Problem(doc.file, 1, 1, "", "empty spec: expected a mapping with version: 1")
            )
            self.incomplete = self.files_skipped = True
            return
        if not isinstance(root, MarkedMap):
            line, column = root.mark if isinstance(root, MarkedSeq) else (1, 1)
            self.problems.append(
                Problem(
                    doc.file,
                    line,
                    column,
                    "",
                    f"a spec is a mapping (version, owner, identities, ...), not "
                    f"{_describe_value(root)}",
                )
            )
            self.incomplete = self.files_skipped = True
            return
        errors = schema_errors(root)
        # A value of the wrong type fails its other keywords too: say only what is wrong.
        mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
        bad: set[tuple[str | int, ...]] = set()
        for error in errors:
            if error.validator == "type" or tuple(error.absolute_path) not in mistyped:
                self.problems.extend(_schema_problems(doc.file, root, error))
            entry = _entry_of(error)
            if entry is not None:
                bad.add(entry)
        if () in bad:
            self.incomplete = self.files_skipped = True
            return
        if any(e[:1] == ("identities",) and len(e) <= 2 for e in bad):
            self.incomplete = True
        self.bad[doc.file] = bad
        owner = root.get("owner")
        if ("owner",) in bad:
            self.owner_unknown = True
        elif owner is not None:
            self.owners.append((owner, doc.file, root.value_marks["owner"]))
        self.add_reach(root, bad)
        if any((r.spec_section,) in bad for r in _TOP_LEVEL if not r.spec_late):
            return
        defaults = self.defaults(root, bad)
        for rules in REGISTRY.values():
            if rules.spec_section and rules.spec_parent is None and not rules.spec_late:
                self.section(doc.file, root, rules, defaults, bad)

    def add_reach(self, root: MarkedMap, bad: set[tuple[str | int, ...]]) -> None:
        given = root.get("reach")
        if not isinstance(given, dict) or ("reach",) in bad:
            return
        subscriptions, groups, organizations = self.reach
        for i, sub in enumerate(given.get("subscriptions") or ()):
            if ("reach", "subscriptions", i) not in bad:
                subscriptions.setdefault(str(sub).lower(), str(sub).lower())
        for i, name in enumerate(given.get("managementGroups") or ()):
            if ("reach", "managementGroups", i) not in bad:
                scope = f"/providers/Microsoft.Management/managementGroups/{name}"
                groups.setdefault(scope.lower(), scope)
        for i, org in enumerate(given.get("organizations") or ()):
            if ("reach", "organizations", i) not in bad:
                organizations.setdefault(str(org).lower(), str(org))

    def defaults(self, root: MarkedMap, bad: set[tuple[str | int, ...]]) -> dict[str, Any]:
        """The file's usable defaults; a default with a problem maps to None (already reported)."""
        given = root.get("defaults")
        if not isinstance(given, dict) or ("defaults",) in bad:
            return {k: None for k in _DEFAULT_KEYS} if given is not None else {}
        return {k: (None if ("defaults", k) in bad else v) for k, v in given.items()}

    def connections(self, doc: Document) -> None:
        bad = self.bad.get(doc.file)
        if bad is None:
            return
        root = doc.data
        if any((r.spec_section,) in bad for r in _TOP_LEVEL if r.spec_late):
            return
        defaults = self.defaults(root, bad)
        for rules in _TOP_LEVEL:
            if rules.spec_late:
                self.section(doc.file, root, rules, defaults, bad)

    def section(
        self,
        file: str,
        root: MarkedMap,
        rules: KindSpec,
        defaults: Mapping[str, Any],
        bad: set[tuple[str | int, ...]],
    ) -> None:
        """Every usable entry of a top-level section, built by its kind."""
        section = rules.spec_section
        for i, spec in enumerate(root.get(section) or ()):
            if (section, i) not in bad:
                rules.build(self, file, root, [section, i], spec, None, defaults, bad)

    def build_children(
        self,
        file: str,
        root: Any,
        path: list[str | int],
        spec: Mapping[str, Any],
        identity: DeclaredIdentity,
        bad: set[tuple[str | int, ...]],
    ) -> None:
        for rules in REGISTRY.values():
            if rules.spec_parent != path[0]:
                continue
            section = rules.spec_section
            for j, entry in enumerate(spec.get(section) or ()):
                if (*path, section, j) not in bad:
                    rules.build(self, file, root, [*path, section, j], entry, identity, {}, bad)

    def declare_identity(self, identity: DeclaredIdentity) -> None:
        self.identities[identity.key] = identity
        self.by_name.setdefault(identity.name.lower(), []).append(identity)

    @staticmethod
    def check_scope(scope: str) -> str | None:
        return _check_scope(scope)

    @staticmethod
    def role_definition(role: str) -> tuple[str | None, str | None]:
        return _role_definition(role)

    # identities ------------------------------------------------------------------------

    # service connections ---------------------------------------------------------------

    def find_identity(self, ref: Any) -> tuple[DeclaredIdentity | None, str | None]:
        if isinstance(ref, str):
            ref = {"name": ref}
        candidates = [
            i
            for i in self.by_name.get(ref["name"].lower(), [])
            if (
                "resourceGroup" not in ref
                or i.resource_group.lower() == ref["resourceGroup"].lower()
            )
            and ("subscription" not in ref or i.subscription == ref["subscription"].lower())
        ]
        if len(candidates) == 1:
            return candidates[0], None
        if candidates:
            listed = ", ".join(f"{i.key} ({i.source})" for i in candidates)
            return None, (
                f"identity '{ref['name']}' is ambiguous: it matches {listed}; name it as "
                f"{{name, resourceGroup, subscription}}"
            )
        if self.incomplete:
            return None, ""  # probably declared in an entry that already has a problem
        wanted = f"no identity named '{ref['name']}'"
        if "resourceGroup" in ref:
            wanted += f" in resource group '{ref['resourceGroup']}'"
        if "subscription" in ref:
            wanted += f" in subscription {ref['subscription']}"
        message = f"{wanted} is declared in the specs loaded together"
        close = difflib.get_close_matches(ref["name"].lower(), list(self.by_name), 1, 0.8)
        if close:
            message += f" (did you mean '{self.by_name[close[0]][0].name}'?)"
        return None, message

    # whole state -----------------------------------------------------------------------

    def limits(self) -> None:
        for identity in self.identities.values():
            total = len(identity.credentials) + len(identity.implied)
            if total > MAX_CREDENTIALS_PER_IDENTITY:
                where = identity.source
                self.problems.append(
                    Problem(
                        where.file,
                        where.line,
                        where.column,
                        where.path,
                        f"{total} federated credentials on identity {identity.key} "
                        f"({len(identity.credentials)} declared, {len(identity.implied)} implied "
                        f"by service connections); Azure allows at most "
                        f"{MAX_CREDENTIALS_PER_IDENTITY}",
                    )
                )

    def owner(self, documents: Sequence[Document]) -> str:
        if not self.owners:
            if not (self.files_skipped or self.owner_unknown) and documents:
                self.problems.append(
                    Problem(
                        documents[0].file,
                        1,
                        1,
                        "owner",
                        "no owner declared: set owner in at least one of the files loaded "
                        "together (it marks everything this spec set creates)",
                    )
                )
            return ""
        owner, first_file, (first_line, _) = self.owners[0]
        for other, file, (line, column) in self.owners[1:]:
            if other != owner:
                self.problems.append(
                    Problem(
                        file,
                        line,
                        column,
                        "owner",
                        f"owner '{other}' differs from '{owner}' stated at {first_file}:"
                        f"{first_line}; files loaded together must name the same owner",
                    )
                )
        return owner


# the kinds whose entries stand at the top of a spec (identities, service connections)
_TOP_LEVEL: Final = tuple(
    rules for rules in REGISTRY.values() if rules.spec_section and rules.spec_parent is None
)


def build_desired_state(documents: Sequence[Document]) -> DesiredState:
    """Validate the documents against the schema and each other and flatten them."""
    builder = _Builder()
    for doc in documents:
        builder.document(doc)
    # Connections after every identity, so that they may name identities from any file.
    for doc in documents:
        builder.connections(doc)
    builder.limits()
    owner = builder.owner(documents)
    if builder.problems:
        raise SpecError(builder.problems)
    subscriptions, groups, organizations = builder.reach
    reach = Reach(
        tuple(sorted(subscriptions.values())),
        tuple(sorted(groups.values(), key=str.lower)),
        tuple(sorted(organizations.values(), key=str.lower)),
    )
    return DesiredState(owner, builder.resources, tuple(d.file for d in documents), reach)


def role_warnings(desired: DesiredState) -> list[Problem]:
    """Names in the specs that are probably typos of a built-in one (``role: Contributer``):
    each a ``Problem`` at the value whose message starts with ``warning:`` (each kind says,
    ``KindSpec.warnings``; a role assignment's role against Azure's built-in roles)."""
    found = [
        p
        for spec in REGISTRY.values()
        for p in spec.warnings(desired.of_kind(spec.kind), builtin_roles())
    ]
    return sorted(found, key=lambda p: (p.file, p.line, p.column))


# --- summary ------------------------------------------------------------------------------


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def describe(desired: DesiredState, verbose: bool = False) -> str:
    """The one-line summary of a valid desired state; with ``verbose`` a listing per identity
    (each object as its kind describes it, ``KindSpec.describe``)."""
    by_kind: dict[Kind, list[Resource]] = {spec.kind: [] for spec in REGISTRY.values()}
    for resource in desired.resources.values():
        by_kind[resource.address.kind].append(resource)
    counts = ", ".join(spec.count_text(by_kind[spec.kind]) for spec in REGISTRY.values())
    summary = f"valid: {_count(len(desired.files), 'file')}, {counts}"
    if not verbose:
        return summary
    order = {file: n for n, file in enumerate(desired.files)}

    def declared(resources: list[Resource]) -> list[Resource]:
        def at(r: Resource) -> tuple[int, int, int, str]:
            s = r.source
            return (order.get(s.file, 0), s.line, s.column, r.address.key) if s else (0, 0, 0, "")

        return sorted(resources, key=at)

    roles = _builtin_by_guid()
    lines = [f"owner: {desired.owner}", ""]
    for spec in REGISTRY.values():
        if not spec.is_identity:
            continue
        for identity in declared(by_kind[spec.kind]):
            lines += spec.describe(identity, roles)
            for child in REGISTRY.values():
                if child.is_identity:
                    continue
                for resource in declared(by_kind[child.kind]):
                    if child.identity_of(resource.attrs) == identity.address.key:
                        lines += child.describe(resource, roles)
            lines.append("")
    lines.append(summary)
    return "\n".join(lines)
