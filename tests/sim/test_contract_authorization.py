"""Microsoft.Authorization 2022-04-01: role assignment and role definition responses validate
against the official schemas; the official examples are accepted with their status codes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from reconciler.sim.server import Simulator

from . import contract
from .clients import SANDBOX, Http

V = "?api-version=2022-04-01"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
USER = "0a0b0c0d-1111-4222-8333-444455556666"  # a seeded user
RA = "/{scope}/providers/Microsoft.Authorization/roleAssignments"
RD = "/{scope}/providers/Microsoft.Authorization/roleDefinitions"
# example values -> the seeded world
EXAMPLE_MAP = {
    "a925f2f7-5c63-4b7b-8799-25a5f97bc3b2": SANDBOX,
    "resourceGroups/testrg": "resourceGroups/sandbox-rg",
    "0b5fe924-9a61-425c-96af-cfe6e287ca2d": READER,
}


def ra_schema(path: str, method: str, status: str) -> dict[str, Any]:
    return contract.response_schema(contract.AUTHZ_ASSIGNMENTS, path, method, status)


# Real role definitions carry these although the 2022-04-01 schema does not declare them
# (azure-contracts.md §2.3); the simulator sends them too.
RD_EXTRA = frozenset({"createdOn", "updatedOn"})


def rd_schema(path: str, method: str, status: str) -> dict[str, Any]:
    return contract.response_schema(contract.AUTHZ_DEFINITIONS, path, method, status)


def _assign(http: Http, scope: str, name: str, principal: str = USER, **props: Any) -> Any:
    body = {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{SANDBOX}/providers/Microsoft.Authorization/roleDefinitions/{READER}",
            "principalId": principal,
            **props,
        }
    }
    return http.arm(
        "PUT", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}{V}", json=body
    )


def test_role_assignment_operations_match_the_schemas(sim: Simulator, http: Http) -> None:
    scope = f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg"
    name = "6f1d3c2b-0000-4000-8000-000000000001"
    r = _assign(
        http, scope, name, description="contract [reconciler-owner: x]", principalType="User"
    )
    assert r.status_code == 201
    contract.check(r.json(), ra_schema(RA + "/{roleAssignmentName}", "put", "201"))
    r = _assign(http, scope, name, description="changed", principalType="User")
    assert r.status_code == 200
    contract.check(r.json(), ra_schema(RA + "/{roleAssignmentName}", "put", "200"))
    r = http.arm("GET", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}{V}")
    contract.check(r.json(), ra_schema(RA + "/{roleAssignmentName}", "get", "200"))
    for path, op in (
        (
            f"/subscriptions/{SANDBOX}/providers/Microsoft.Authorization/roleAssignments",
            "/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleAssignments",
        ),
        (
            f"{scope}/providers/Microsoft.Authorization/roleAssignments",
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Authorization/roleAssignments",
        ),
    ):
        r = http.arm("GET", path + V + "&$filter=atScope()")
        assert r.status_code == 200
        contract.check(r.json(), ra_schema(op, "get", "200"))
        assert r.json()["value"]
    r = http.arm("DELETE", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}{V}")
    assert r.status_code == 200
    contract.check(r.json(), ra_schema(RA + "/{roleAssignmentName}", "delete", "200"))
    assert (
        http.arm(
            "DELETE", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}{V}"
        ).status_code
        == 204
    )


def test_role_definition_operations_match_the_schemas(sim: Simulator, http: Http) -> None:
    r = http.arm(
        "GET",
        f"/subscriptions/{SANDBOX}/providers/Microsoft.Authorization/roleDefinitions{V}&$filter=roleName eq 'Identity Auditor'",
    )
    assert [d["properties"]["roleName"] for d in r.json()["value"]] == ["Identity Auditor"]
    contract.check(r.json(), rd_schema(RD, "get", "200"), allowed=RD_EXTRA)
    r = http.arm(
        "GET",
        f"/subscriptions/{SANDBOX}/providers/Microsoft.Authorization/roleDefinitions/{READER}{V}",
    )
    contract.check(r.json(), rd_schema(RD + "/{roleDefinitionId}", "get", "200"), allowed=RD_EXTRA)


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("not-a-guid", {"properties": {}}, 400),
        (
            "6f1d3c2b-0000-4000-8000-000000000002",
            {
                "properties": {
                    "roleDefinitionId": READER,
                    "principalId": "6f1d3c2b-0000-4000-8000-00000000dead",
                }
            },
            400,
        ),
    ],
)
def test_errors_carry_the_arm_error_shape(
    sim: Simulator, http: Http, name: str, body: Any, status: int
) -> None:
    r = http.arm(
        "PUT",
        f"/subscriptions/{SANDBOX}/providers/Microsoft.Authorization/roleAssignments/{name}{V}",
        json=body,
    )
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) <= {"code", "message", "target", "details", "additionalInfo"}
    assert isinstance(error["code"], str) and isinstance(error["message"], str)


@pytest.mark.parametrize(
    ("path", "method", "file"),
    contract.spec_examples(contract.AUTHZ_ASSIGNMENTS, contract.AUTHZ_DEFINITIONS),
    ids=lambda v: v.rsplit("/", 1)[-1] if "/" in str(v) else str(v),
)
def test_official_examples_are_accepted(
    sim: Simulator, http: Http, path: str, method: str, file: str
) -> None:
    text = Path(file).read_text("utf-8")
    for old, new in EXAMPLE_MAP.items():
        text = text.replace(old, new)
    example = json.loads(text)
    params = dict(example["parameters"])
    if params.get("scope") == "scope":  # placeholder values in GetRoleDefinitionByName
        params["scope"] = f"subscriptions/{SANDBOX}"
    if params.get("roleDefinitionId") == "roleDefinitionId":
        params["roleDefinitionId"] = READER
    body = params.get("parameters")
    if body:
        sim.edit(
            "principal",
            body["properties"]["principalId"],
            {"type": body["properties"].get("principalType", "User")},
        )
    if method in ("get", "delete") and "roleAssignmentName" in params:
        sim.edit("principal", USER, {"type": "User"})
        _assign(http, "/" + params["scope"], params["roleAssignmentName"]).raise_for_status()
    url = re.sub(r"\{(\w+)\}", lambda m: str(params[m.group(1)]), path)
    r = http.arm(method.upper(), url, params={"api-version": params["api-version"]}, json=body)
    expected = {int(s) for s in example["responses"]}
    assert r.status_code in expected, r.text
    spec = contract.AUTHZ_ASSIGNMENTS if "roleAssignments" in path else contract.AUTHZ_DEFINITIONS
    if r.content:
        contract.check(
            r.json(),
            contract.response_schema(spec, path, method, str(r.status_code)),
            allowed=RD_EXTRA,
        )


def test_saved_specs_leave_only_the_documented_references_unresolved() -> None:
    # error responses refer to common-types v2, which was not saved (apispecs/SOURCES.md)
    for path, ops in contract.load(contract.AUTHZ_ASSIGNMENTS)["paths"].items():
        for method in ops:
            if isinstance(ops[method], dict) and "responses" in ops[method]:
                for status in ops[method]["responses"]:
                    contract.response_schema(contract.AUTHZ_ASSIGNMENTS, path, method, status)
    v2 = "../../../../../common-types/resource-management/v2/types.json"
    assert contract.UNRESOLVED - {v2} == set()
