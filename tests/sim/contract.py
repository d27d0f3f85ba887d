"""Response schemas from the saved official OpenAPI files, with ``$ref``s resolved.

External references are mapped onto the saved layout (``apispecs/SOURCES.md``). Files that
were not saved (the Authorization specs' ``common-types`` v2 and ``./common-types.json``)
resolve to an empty schema and are recorded in ``UNRESOLVED``; none of them is reached from
a success response the simulator is checked against, only from error responses.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SPECS = Path("/work/shared/reference/apispecs")
MSI = SPECS / "msi/2024-11-30/ManagedIdentity.json"
AUTHZ_ASSIGNMENTS = SPECS / "authorization/2022-04-01/authorization-RoleAssignmentsCalls.json"
AUTHZ_DEFINITIONS = SPECS / "authorization/2022-04-01/authorization-RoleDefinitionsCalls.json"
ENDPOINTS = SPECS / "devops/serviceEndpoint/7.1/serviceEndpoint.json"
PERMISSIONS = SPECS / "devops/approvalsAndChecks/7.1/pipelinePermissions.json"
V4_TYPES = SPECS / "msi/common-types/resource-management/v4/types.json"
# descriptions the shared copy lacks, kept in the repository (tests/sim/apispecs/SOURCES.md)
LOCAL_SPECS = Path(__file__).resolve().parent / "apispecs"
ACTIVITY_LOGS = LOCAL_SPECS / "monitor/2015-04-01/activityLogs_API.json"
AUDIT = LOCAL_SPECS / "devops/audit/7.1/audit.json"

UNRESOLVED: set[str] = set()


@cache
def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8-sig"))
    return data


def _target(base: Path, ref: str) -> tuple[Path | None, str]:
    file_part, _, pointer = ref.partition("#")
    if not file_part:
        return base, pointer
    if "common-types/resource-management/v4/types.json" in file_part:
        return V4_TYPES, pointer
    candidate = (base.parent / file_part).resolve()
    return (candidate if candidate.exists() else None), pointer


def _lookup(doc: dict[str, Any], pointer: str) -> Any:
    node: Any = doc
    for part in [p for p in pointer.split("/") if p]:
        if part not in node and part == "systemData" and "SystemData" in node:
            part = "SystemData"  # version skew between the MSI spec and the saved types.json
        node = node[part]
    return node


def resolve(node: Any, base: Path, stack: tuple[str, ...] = ()) -> Any:
    """A copy of ``node`` with every ``$ref`` inlined (recursive refs cut to ``{}``)."""
    if isinstance(node, list):
        return [resolve(n, base, stack) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        path, pointer = _target(base, ref)
        if path is None:
            UNRESOLVED.add(ref.partition("#")[0])
            return {}
        key = f"{path}#{pointer}"
        if key in stack:
            return {}
        target = resolve(_lookup(load(path), pointer), path, (*stack, key))
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **resolve(siblings, base, stack)} if siblings else target
    out = {k: resolve(v, base, stack) for k, v in node.items()}
    if out.get("x-nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def response_schema(spec: Path, path: str, method: str, status: str) -> dict[str, Any]:
    op = load(spec)["paths"][path][method.lower()]
    response = op["responses"][status]
    schema: dict[str, Any] = resolve(response.get("schema", {}), spec)
    return schema


def validate(instance: Any, schema: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(schema).validate(instance)


def undeclared(instance: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Properties the instance has that the schema does not declare (typos, invented fields)."""
    if not schema:
        return []
    props: dict[str, Any] = dict(schema.get("properties") or {})
    for part in schema.get("allOf") or []:
        props.update(part.get("properties") or {})
        for inner in part.get("allOf") or []:
            props.update(inner.get("properties") or {})
    out: list[str] = []
    if isinstance(instance, dict):
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            if key in props:
                out.extend(undeclared(value, props[key], f"{where}.{key}"))
            elif isinstance(extra, dict):
                out.extend(undeclared(value, extra, f"{where}.{key}"))
            elif props and extra is None:
                out.append(f"{where}.{key}")
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(instance):
            out.extend(undeclared(value, schema["items"], f"{where}[{i}]"))
    return out


def check(instance: Any, schema: dict[str, Any], *, allowed: frozenset[str] = frozenset()) -> None:
    validate(instance, schema)
    extra = [p for p in undeclared(instance, schema) if p.rsplit(".", 1)[-1] not in allowed]
    assert not extra, f"properties the spec does not declare: {extra}"


def examples(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json"))


def spec_examples(*specs: Path) -> list[tuple[str, str, str]]:
    """(path, method, example file) for every x-ms-example of these specs that is saved
    (the saved set under apispecs/ is a subset of what the specs reference)."""
    out = []
    for spec in specs:
        for path, ops in load(spec)["paths"].items():
            for method, op in ops.items():
                for ref in (op.get("x-ms-examples") or {}).values():
                    file = (spec.parent / ref["$ref"]).resolve()
                    if file.exists():
                        out.append((path, method, str(file)))
    return out
