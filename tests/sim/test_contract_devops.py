"""Azure DevOps service endpoints 7.1 and pipeline permissions 7.1-preview.1: responses validate
against the official schemas; the official httpExamples are accepted with their status codes.

The VSS specs describe list responses as bare arrays; on the wire (and in every example) they
are wrapped as ``{"count": N, "value": [...]}``, so each item of ``value`` is validated. The
``account`` examples (``app.vssps.visualstudio.com``) are a different host the tool does not use.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from reconciler.sim.server import Simulator

from . import contract
from .clients import Http

E = "/{organization}/_apis/serviceendpoint/endpoints"
EP = "/{organization}/{project}/_apis/serviceendpoint/endpoints"
PP = "/{organization}/{project}/_apis/pipelines/pipelinepermissions"
V = "api-version=7.1"
# operationStatus is a free-form JObject in the spec; the service fills it as below (§3.2)
JOBJECT = frozenset({"state", "statusMessage"})


def nullable_secrets(schema: dict[str, Any]) -> dict[str, Any]:
    """The spec types parameters as strings, but the service (and the spec's own examples)
    answers ``null`` for secret parameters such as ``serviceprincipalkey``."""
    target = schema.get("items", schema)
    target["properties"]["authorization"]["properties"]["parameters"]["additionalProperties"] = {
        "type": ["string", "null"]
    }
    return schema


def endpoint_schema() -> dict[str, Any]:
    return nullable_secrets(contract.response_schema(contract.ENDPOINTS, E, "post", "200"))


def permissions_schema() -> dict[str, Any]:
    return contract.response_schema(
        contract.PERMISSIONS, PP + "/{resourceType}/{resourceId}", "get", "200"
    )


def _projects(http: Http) -> dict[str, str]:
    return {
        p["name"]: p["id"] for p in http.ado("GET", f"/contoso/_apis/projects?{V}").json()["value"]
    }


def _create(http: Http, project_id: str, name: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "type": "azurerm",
        "url": "https://management.azure.com/",
        "owner": "library",
        "authorization": {
            "scheme": "WorkloadIdentityFederation",
            "parameters": {"serviceprincipalid": str(uuid.uuid4()), "tenantid": http.sim.tenant_id},
        },
        "data": {
            "subscriptionId": "11111111-1111-1111-1111-111111111111",
            "subscriptionName": "Sandbox",
            "environment": "AzureCloud",
            "scopeLevel": "Subscription",
            "creationMode": "Manual",
        },
        "serviceEndpointProjectReferences": [
            {"projectReference": {"id": project_id}, "name": name}
        ],
        **extra,
    }
    r = http.ado("POST", f"/contoso/_apis/serviceendpoint/endpoints?{V}", json=body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_endpoint_operations_match_the_schemas(sim: Simulator, http: Http) -> None:
    projects = _projects(http)
    created = _create(http, projects["platform"], "contract-sc")
    contract.check(created, endpoint_schema(), allowed=JOBJECT)
    eid = created["id"]
    got = http.ado("GET", f"/contoso/platform/_apis/serviceendpoint/endpoints/{eid}?{V}").json()
    contract.check(
        got,
        contract.response_schema(contract.ENDPOINTS, EP + "/{endpointId}", "get", "200"),
        allowed=JOBJECT,
    )
    listed = http.ado(
        "GET", f"/contoso/platform/_apis/serviceendpoint/endpoints?{V}&type=azurerm"
    ).json()
    assert listed["count"] == len(listed["value"]) == 1
    item = contract.response_schema(contract.ENDPOINTS, EP, "get", "200")["items"]
    for value in listed["value"]:
        contract.check(value, item, allowed=JOBJECT)
    got["description"] = "updated"
    r = http.ado("PUT", f"/contoso/_apis/serviceendpoint/endpoints/{eid}?{V}", json=got)
    contract.check(
        r.json(),
        contract.response_schema(contract.ENDPOINTS, E + "/{endpointId}", "put", "200"),
        allowed=JOBJECT,
    )


def test_pipeline_permissions_match_the_schemas(sim: Simulator, http: Http) -> None:
    eid = _create(http, _projects(http)["platform"], "perm-sc")["id"]
    url = f"/contoso/platform/_apis/pipelines/pipelinePermissions/endpoint/{eid}?api-version=7.1-preview.1"
    contract.check(http.ado("GET", url).json(), permissions_schema())
    r = http.ado(
        "PATCH",
        url,
        json={"allPipelines": {"authorized": True}, "pipelines": [{"id": 1, "authorized": True}]},
    )
    contract.check(
        r.json(),
        contract.response_schema(
            contract.PERMISSIONS, PP + "/{resourceType}/{resourceId}", "patch", "200"
        ),
    )
    assert r.json()["allPipelines"]["authorized"] is True


def _example_files() -> list[Path]:
    return [
        p
        for p in contract.examples(contract.SPECS / "devops")
        if "/httpExamples/" in str(p) and "/account/" not in str(p)
    ]


@pytest.mark.parametrize("file", _example_files(), ids=lambda p: p.stem)
def test_official_examples_are_accepted(sim: Simulator, http: Http, file: Path) -> None:
    projects = _projects(http)
    example = json.loads(file.read_text("utf-8-sig"))
    text = json.dumps(example)
    # the examples' organisation, projects, pipelines and endpoints, mapped into the seeded world
    mapping = {
        "https://dev.azure.com/fabrikam": http.sim.devops_url + "/contoso",
        "/DefaultAgileGitProject/": "/platform/",
        "/RM/": "/platform/",
        "c7e5f0b3-71fa-4429-9fb3-3321963a7c06": projects["platform"],
        "184fda7e-3559-4b3c-afa0-1b6998330f84": projects["team-a"],
        '"id": 16': '"id": 1',
    }
    for guid in sorted(
        set(
            re.findall(
                r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                example.get("x-ms-vss-request-url", "")
                + json.dumps(example["parameters"].get("body")),
            )
        )
    ):
        if guid in mapping or example["x-ms-vss-request-method"] == "POST":
            continue
        created = http.ado(
            "POST",
            f"/contoso/_apis/serviceendpoint/endpoints?{V}",
            json={
                "name": f"example-{guid[:8]}",
                "type": "Generic",
                "url": "https://myserver",
                "authorization": {"scheme": "UsernamePassword", "parameters": {"username": "u"}},
                "serviceEndpointProjectReferences": [
                    {
                        "projectReference": {"id": projects["platform"]},
                        "name": f"example-{guid[:8]}",
                    }
                ],
            },
        )
        if created.status_code == 200:
            mapping[guid] = created.json()["id"]
    for old, new in mapping.items():
        text = text.replace(old, new)
    example = json.loads(text)
    params = example["parameters"]
    headers = {}
    url = example["x-ms-vss-request-url"]
    if "accept" in params:
        headers["Accept"] = params["accept"]
    elif "api-version" in params:
        url += ("&" if "?" in url else "?") + "api-version=" + params["api-version"]
    r = http.session.request(
        example["x-ms-vss-request-method"],
        url,
        json=params.get("body"),
        headers={
            **headers,
            "Authorization": f"Bearer {http.token('499b84ac-1321-427f-aa17-267ca6975798/.default')}",
        },
    )
    expected = {int(s) for s in example["responses"]}
    assert r.status_code in expected, r.text
    if r.status_code == 200 and "/serviceEndpoint/" in url.replace(
        "serviceendpoint", "serviceEndpoint"
    ):
        body = r.json()
        items = body["value"] if isinstance(body, dict) and "value" in body else [body]
        for value in items:
            contract.check(value, endpoint_schema(), allowed=JOBJECT)
    elif r.status_code == 200 and "pipelinePermissions" in url:
        body = r.json()
        for value in body if isinstance(body, list) else [body]:
            contract.check(value, permissions_schema())


def test_error_bodies_have_the_devops_shape(sim: Simulator, http: Http) -> None:
    r = http.ado(
        "POST",
        f"/contoso/_apis/serviceendpoint/endpoints?{V}",
        json={"name": "x", "type": "azurerm"},
    )
    assert r.status_code == 400
    assert set(r.json()) == {
        "$id",
        "innerException",
        "message",
        "typeName",
        "typeKey",
        "errorCode",
        "eventId",
    }
    assert r.json()["typeKey"] == "ArgumentException"
