"""Microsoft.ManagedIdentity 2024-11-30: responses validate against the official schemas,
and every official example's request is accepted with the example's status code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from reconciler.sim.server import Simulator

from . import contract
from .clients import SANDBOX, Http

P = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
RG = f"/subscriptions/{SANDBOX}/resourceGroups/identities-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
V = "?api-version=2024-11-30"
FIC = {
    "properties": {
        "issuer": "https://issuer.example",
        "subject": "s1",
        "audiences": ["api://AzureADTokenExchange"],
    }
}


def schema(path: str, method: str, status: str) -> dict[str, Any]:
    return contract.response_schema(contract.MSI, path, method, status)


def test_identity_operations_match_the_schemas(sim: Simulator, http: Http) -> None:
    r = http.arm("PUT", f"{RG}/contract-mi{V}", json={"location": "westeurope", "tags": {"a": "b"}})
    assert r.status_code == 201
    contract.check(r.json(), schema(P + "/{resourceName}", "put", "201"))
    r = http.arm("PUT", f"{RG}/contract-mi{V}", json={"location": "westeurope"})
    assert r.status_code == 200
    contract.check(r.json(), schema(P + "/{resourceName}", "put", "200"))
    r = http.arm("PATCH", f"{RG}/contract-mi{V}", json={"tags": {"c": "d"}})
    contract.check(r.json(), schema(P + "/{resourceName}", "patch", "200"))
    r = http.arm("GET", f"{RG}/contract-mi{V}")
    contract.check(r.json(), schema(P + "/{resourceName}", "get", "200"))
    r = http.arm("GET", f"{RG}{V}")
    contract.check(r.json(), schema(P, "get", "200"))
    r = http.arm(
        "GET",
        f"/subscriptions/{SANDBOX}/providers/Microsoft.ManagedIdentity/userAssignedIdentities{V}",
    )
    contract.check(
        r.json(),
        schema(
            "/subscriptions/{subscriptionId}/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
            "get",
            "200",
        ),
    )
    assert http.arm("DELETE", f"{RG}/contract-mi{V}").status_code == 200
    assert http.arm("DELETE", f"{RG}/contract-mi{V}").status_code == 204


def test_credential_operations_match_the_schemas(sim: Simulator, http: Http) -> None:
    http.arm("PUT", f"{RG}/contract-mi{V}", json={"location": "westeurope"})
    f = P + "/{resourceName}/federatedIdentityCredentials"
    r = http.arm("PUT", f"{RG}/contract-mi/federatedIdentityCredentials/cred-one{V}", json=FIC)
    assert r.status_code == 201
    contract.check(r.json(), schema(f + "/{federatedIdentityCredentialResourceName}", "put", "201"))
    r = http.arm("PUT", f"{RG}/contract-mi/federatedIdentityCredentials/cred-one{V}", json=FIC)
    assert r.status_code == 200
    contract.check(r.json(), schema(f + "/{federatedIdentityCredentialResourceName}", "put", "200"))
    r = http.arm("GET", f"{RG}/contract-mi/federatedIdentityCredentials/cred-one{V}")
    contract.check(r.json(), schema(f + "/{federatedIdentityCredentialResourceName}", "get", "200"))
    r = http.arm("GET", f"{RG}/contract-mi/federatedIdentityCredentials{V}")
    contract.check(r.json(), schema(f, "get", "200"))


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", f"{RG}/missing-mi{V}", None, 404),
        ("PUT", f"{RG}/contract-mi{V}", {"tags": {}}, 400),
        (
            "PUT",
            f"/subscriptions/{SANDBOX}/resourceGroups/nope-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x-mi{V}",
            {"location": "westeurope"},
            404,
        ),
        ("GET", f"{RG}/missing-mi/federatedIdentityCredentials{V}", None, 404),
        ("GET", f"{RG}", None, 400),
    ],
)
def test_errors_match_the_error_schema(
    sim: Simulator, http: Http, method: str, path: str, body: Any, status: int
) -> None:
    r = http.arm(method, path, json=body)
    assert r.status_code == status
    contract.check(r.json(), schema(P + "/{resourceName}", "get", "default"))


@pytest.mark.parametrize(
    ("path", "method", "file"),
    contract.spec_examples(contract.MSI),
    ids=lambda v: v.rsplit("/", 1)[-1] if "/" in str(v) else str(v),
)
def test_official_examples_are_accepted(
    sim: Simulator, http: Http, path: str, method: str, file: str
) -> None:
    example = json.loads(Path(file).read_text("utf-8"))
    params = dict(example["parameters"])
    params.update(
        subscriptionId=SANDBOX, resourceGroupName="identities-rg", resourceName="example-mi"
    )
    expected = {int(s) for s in example["responses"]}
    if not (method == "put" and path.endswith("{resourceName}")):
        # everything but the identity create needs the identity (and its credential) first
        http.arm("PUT", f"{RG}/example-mi{V}", json={"location": "eastus"}).raise_for_status()
        if "federatedIdentityCredentialResourceName" in params and method != "put":
            http.arm(
                "PUT",
                f"{RG}/example-mi/federatedIdentityCredentials/{params['federatedIdentityCredentialResourceName']}{V}",
                json=FIC,
            ).raise_for_status()
    url = re.sub(r"\{(\w+)\}", lambda m: str(params[m.group(1)]), path)
    query: dict[str, str] = {"api-version": params["api-version"]}
    if "top" in params:
        query["$top"] = str(params["top"])
    r = http.arm(method.upper(), url, params=query, json=params.get("parameters"))
    assert r.status_code in expected, r.text
    if r.status_code in (200, 201) and r.content:
        contract.check(r.json(), schema(path, method, str(r.status_code)))


def test_flexible_credential_example_version_is_accepted_for_reads(
    sim: Simulator, http: Http
) -> None:
    # 2025-01-31-preview example: our credentials have a subject, so it reads back as a standard one
    http.arm("PUT", f"{RG}/example-mi{V}", json={"location": "westeurope"})
    http.arm("PUT", f"{RG}/example-mi/federatedIdentityCredentials/ficResourceName{V}", json=FIC)
    r = http.arm(
        "GET",
        f"{RG}/example-mi/federatedIdentityCredentials/ficResourceName?api-version=2025-01-31-preview",
    )
    assert r.status_code == 200


def test_no_unresolved_reference_reached_from_msi() -> None:
    schema(P + "/{resourceName}", "get", "200")
    assert not any("v4" in u for u in contract.UNRESOLVED)
