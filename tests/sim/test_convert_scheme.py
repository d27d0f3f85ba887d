"""Converting a service connection in place (``?operation=ConvertAuthenticationScheme``): the
forms the simulator accepts, the ones it refuses with Azure DevOps' error body, and what it
keeps (id, project references, pipeline permissions) and never returns (the secret).
The evidence for each rule: docs/research/convert-authentication-scheme.md."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import pytest

from reconciler.federation import devops_issuer, entra_federation
from reconciler.sim.server import Simulator

from .clients import SANDBOX, Http
from .estates import (
    APP,
    DATA,
    LEGACY_ID,
    LEGACY_MI,
    MI_SPN_ID,
    ORG_ID,
    SECRET,
    SPN_ID,
    TARGET_MI,
    estate,
)

V = "api-version=7.1"
PV = "api-version=7.1-preview.1"
EP = "/contoso/_apis/serviceendpoint/endpoints"
PLATFORM_EP = "/contoso/platform/_apis/serviceendpoint/endpoints"
CONVERT = "operation=ConvertAuthenticationScheme"
ERROR_KEYS = {"$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId"}


@pytest.fixture
def world(sim: Simulator) -> Simulator:
    sim.reset(estate(sim.tenant_id))
    return sim


def project_ids(http: Http) -> dict[str, str]:
    return {
        p["name"]: p["id"] for p in http.ado("GET", f"/contoso/_apis/projects?{V}").json()["value"]
    }


def read(http: Http, eid: str, project: str = "platform") -> dict[str, Any]:
    got: dict[str, Any] = http.ado(
        "GET", f"/contoso/{project}/_apis/serviceendpoint/endpoints/{eid}?{V}"
    ).json()
    return got


def minimal(http: Http, eid: str, scheme: str = "WorkloadIdentityFederation", **params: str) -> Any:
    """The body Microsoft's minimal conversion script sends."""
    endpoint = read(http, eid)
    home = endpoint["serviceEndpointProjectReferences"][0]
    authorization: dict[str, Any] = {"scheme": scheme}
    if params:
        authorization["parameters"] = params
    return {
        "id": eid,
        "type": "azurerm",
        "authorization": authorization,
        "serviceEndpointProjectReferences": [home],
    }


def permissions(http: Http, project: str, eid: str) -> dict[str, Any]:
    got: dict[str, Any] = http.ado(
        "GET", f"/contoso/{project}/_apis/pipelines/pipelinePermissions/endpoint/{eid}?{PV}"
    ).json()
    return {
        "all": bool((got.get("allPipelines") or {}).get("authorized")),
        "pipelines": sorted(p["id"] for p in got["pipelines"]),
    }


def stored(sim: Simulator, eid: str) -> dict[str, Any]:
    for org in sim.state()["devops"]["organizations"]:
        for e in org["serviceEndpoints"]:
            if e["id"] == eid:
                found: dict[str, Any] = e
                return found
    raise AssertionError(f"{eid} not in the simulator's state")


def round_trip_time(text: str) -> float:
    # .NET's round-trip format: 7 fractional digits and Z
    assert text.endswith("Z") and len(text.split(".")[1]) == 8, text
    return datetime.fromisoformat(text[:26] + "+00:00").timestamp()


def test_a_seeded_secret_is_kept_as_set_and_never_returned(world: Simulator, http: Http) -> None:
    r = http.ado("GET", f"{PLATFORM_EP}/{SPN_ID}?{V}")
    assert r.json()["authorization"]["parameters"]["serviceprincipalkey"] is None
    listed = http.ado("GET", f"{PLATFORM_EP}?type=azurerm&{V}")
    assert SECRET not in r.text and SECRET not in listed.text
    assert SECRET not in str(world.state())
    assert stored(world, SPN_ID)["parameters"]["serviceprincipalkey"] == "(secret set)"


def test_secret_to_workload_identity_keeps_id_references_and_permissions(
    world: Simulator, http: Http
) -> None:
    before = read(http, SPN_ID)
    perms = {p: permissions(http, p, SPN_ID) for p in ("platform", "team-a")}
    start = time.time()
    r = http.ado("PUT", f"{PLATFORM_EP}/{SPN_ID}?{CONVERT}&{V}", json=minimal(http, SPN_ID))
    end = time.time()
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["id"] == SPN_ID and after["name"] == "spn-sc"
    assert after["authorization"]["scheme"] == "WorkloadIdentityFederation"
    params = after["authorization"]["parameters"]
    issuer, subject = entra_federation(world.tenant_id, ORG_ID, SPN_ID)
    assert params["workloadIdentityFederationIssuer"] == issuer
    assert params["workloadIdentityFederationSubject"] == subject
    assert params["workloadIdentityFederationIssuerType"] == "EntraID"
    assert params["serviceprincipalid"] == APP and params["tenantid"] == world.tenant_id
    assert "serviceprincipalkey" not in params and "authenticationType" not in params
    deadline = round_trip_time(after["data"]["revertSchemeDeadline"])
    week = 7 * 24 * 3600
    assert start + week - 1 <= deadline <= end + week + 1
    # what was not asked to change did not change
    assert sorted(
        (r["projectReference"]["id"], r["name"]) for r in after["serviceEndpointProjectReferences"]
    ) == sorted(
        (r["projectReference"]["id"], r["name"]) for r in before["serviceEndpointProjectReferences"]
    )
    assert {k: v for k, v in after["data"].items() if k != "revertSchemeDeadline"} == DATA
    assert read(http, SPN_ID, "team-a")["authorization"]["scheme"] == "WorkloadIdentityFederation"
    assert {p: permissions(http, p, SPN_ID) for p in ("platform", "team-a")} == perms
    assert perms["platform"] == {"all": True, "pipelines": [1]}
    # the secret is gone from the service, not only hidden
    assert "serviceprincipalkey" not in stored(world, SPN_ID)["parameters"]


def test_the_whole_connection_as_read_is_accepted(world: Simulator, http: Http) -> None:
    # the form of Microsoft's full conversion script: GET, change the scheme, PUT it back
    body = read(http, SPN_ID)
    body["authorization"]["scheme"] = "WorkloadIdentityFederation"
    r = http.ado("PUT", f"{PLATFORM_EP}/{SPN_ID}?{CONVERT}&{V}", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["authorization"]["scheme"] == "WorkloadIdentityFederation"


def test_the_operation_name_is_not_case_sensitive(world: Simulator, http: Http) -> None:
    r = http.ado(
        "PUT",
        f"{EP}/{SPN_ID}?operation=convertauthenticationscheme&{V}",
        json=minimal(http, SPN_ID),
    )
    assert r.status_code == 200, r.text


def test_a_revert_before_the_deadline_restores_the_secret(world: Simulator, http: Http) -> None:
    url = f"{PLATFORM_EP}/{SPN_ID}?{CONVERT}&{V}"
    assert http.ado("PUT", url, json=minimal(http, SPN_ID)).status_code == 200
    r = http.ado("PUT", url, json=minimal(http, SPN_ID, "ServicePrincipal"))
    assert r.status_code == 200, r.text
    params = r.json()["authorization"]["parameters"]
    assert r.json()["authorization"]["scheme"] == "ServicePrincipal" and r.json()["id"] == SPN_ID
    assert params["serviceprincipalkey"] is None and params["authenticationType"] == "spnKey"
    assert not any(k.startswith("workloadIdentityFederation") for k in params)
    assert stored(world, SPN_ID)["parameters"]["serviceprincipalkey"] == "(secret set)"
    # and forward again
    assert http.ado("PUT", url, json=minimal(http, SPN_ID)).status_code == 200


def test_a_revert_after_the_deadline_is_refused(world: Simulator, http: Http) -> None:
    url = f"{PLATFORM_EP}/{SPN_ID}?{CONVERT}&{V}"
    assert http.ado("PUT", url, json=minimal(http, SPN_ID)).status_code == 200
    world.edit(
        "service_endpoint",
        SPN_ID,
        {"data": {"revertSchemeDeadline": "2020-01-01T00:00:00.0000000Z"}},
    )
    r = http.ado("PUT", url, json=minimal(http, SPN_ID, "ServicePrincipal"))
    assert r.status_code == 400 and set(r.json()) == ERROR_KEYS
    assert r.json()["typeKey"] == "InvalidServiceEndpointRequestException"
    assert "no recovery data" in r.json()["message"]
    assert read(http, SPN_ID)["authorization"]["scheme"] == "WorkloadIdentityFederation"


def test_a_conversion_waits_until_the_identity_can_sign_in(world: Simulator, http: Http) -> None:
    # mi-spn-sc names a managed identity the simulator holds, with no credential for the
    # connection: the service cannot sign in with the new issuer yet, so it changes nothing
    url = f"{PLATFORM_EP}/{MI_SPN_ID}?{CONVERT}&{V}"
    r = http.ado("PUT", url, json=minimal(http, MI_SPN_ID))
    assert r.status_code == 202, r.text
    assert r.json()["authorization"]["scheme"] == "ServicePrincipal"
    status = {"state": "InProgress", "statusMessage": "converting_scheme"}
    assert r.json()["operationStatus"] == status
    assert read(http, MI_SPN_ID)["operationStatus"] == status
    assert stored(world, MI_SPN_ID)["parameters"]["serviceprincipalkey"] == "(secret set)"
    issuer, subject = entra_federation(world.tenant_id, ORG_ID, MI_SPN_ID)
    add_credential(http, "target-mi", "entra", issuer, subject)
    r = http.ado("PUT", url, json=minimal(http, MI_SPN_ID))
    assert r.status_code == 200, r.text
    assert r.json()["operationStatus"] == {"state": "Ready", "statusMessage": ""}
    assert r.json()["authorization"]["parameters"]["workloadIdentityFederationSubject"] == subject


def add_credential(http: Http, identity: str, name: str, issuer: str, subject: str) -> None:
    path = (
        f"/subscriptions/{SANDBOX}/resourceGroups/identities-rg/providers/"
        f"Microsoft.ManagedIdentity/userAssignedIdentities/{identity}/"
        f"federatedIdentityCredentials/{name}?api-version=2023-01-31"
    )
    body = {
        "properties": {
            "issuer": issuer,
            "subject": subject,
            "audiences": ["api://AzureADTokenExchange"],
        }
    }
    r = http.arm("PUT", path, json=body)
    assert r.status_code in (200, 201), r.text


def test_issuer_switch_in_place_after_the_entra_credential(world: Simulator, http: Http) -> None:
    before = read(http, LEGACY_ID)
    params = before["authorization"]["parameters"]
    assert params["workloadIdentityFederationIssuer"] == devops_issuer(ORG_ID)
    assert params["workloadIdentityFederationSubject"] == "sc://contoso/platform/legacy-sc"
    perms = permissions(http, "platform", LEGACY_ID)
    url = f"{PLATFORM_EP}/{LEGACY_ID}?{CONVERT}&{V}"
    body = minimal(http, LEGACY_ID, workloadIdentityFederationIssuerType="EntraID")
    early = http.ado("PUT", url, json=body)
    assert early.status_code == 202, early.text
    assert read(http, LEGACY_ID)["authorization"]["parameters"] == params
    issuer, subject = entra_federation(world.tenant_id, ORG_ID, LEGACY_ID)
    add_credential(http, "legacy-mi", "entra", issuer, subject)
    r = http.ado("PUT", url, json=body)
    assert r.status_code == 200, r.text
    after = r.json()["authorization"]["parameters"]
    assert r.json()["id"] == LEGACY_ID
    assert after["workloadIdentityFederationIssuer"] == issuer
    assert after["workloadIdentityFederationSubject"] == subject
    assert after["workloadIdentityFederationIssuerType"] == "EntraID"
    assert after["serviceprincipalid"] == LEGACY_MI
    assert read(http, LEGACY_ID)["authorization"]["parameters"] == after
    assert permissions(http, "platform", LEGACY_ID) == perms == {"all": False, "pipelines": [1, 2]}
    # a second switch is not a conversion any more
    again = http.ado("PUT", url, json=body)
    assert again.status_code == 400 and again.json()["typeKey"] == "ArgumentException"


def _drop(body: dict[str, Any], key: str) -> dict[str, Any]:
    body.pop(key)
    return body


REFUSED = [
    # (label, connection, how to make the body, status, typeKey, message part)
    (
        "unknown target scheme",
        SPN_ID,
        lambda http: minimal(http, SPN_ID, "UsernamePassword"),
        400,
        "ArgumentException",
        "neither an upgrade or a downgrade",
    ),
    (
        "workload identity to itself without the issuer type",
        LEGACY_ID,
        lambda http: minimal(http, LEGACY_ID),
        400,
        "ArgumentException",
        "neither an upgrade or a downgrade",
    ),
    (
        "issuer type other than EntraID",
        LEGACY_ID,
        lambda http: minimal(http, LEGACY_ID, workloadIdentityFederationIssuerType="AzureDevOps"),
        400,
        "ArgumentException",
        "neither an upgrade or a downgrade",
    ),
    (
        "revert with nothing to recover",
        LEGACY_ID,
        lambda http: minimal(http, LEGACY_ID, "ServicePrincipal"),
        400,
        "InvalidServiceEndpointRequestException",
        "no recovery data",
    ),
    (
        "no authorization",
        SPN_ID,
        lambda http: _drop(minimal(http, SPN_ID), "authorization"),
        400,
        "ArgumentNullException",
        "endpoint.Authorization",
    ),
    (
        "no scheme",
        SPN_ID,
        lambda http: {**minimal(http, SPN_ID), "authorization": {}},
        400,
        "ArgumentNullException",
        "targetAuthenticationScheme",
    ),
    (
        "no project reference",
        SPN_ID,
        lambda http: _drop(minimal(http, SPN_ID), "serviceEndpointProjectReferences"),
        400,
        "ArgumentException",
        "Project reference must be set",
    ),
    (
        "a rename",
        SPN_ID,
        lambda http: {**minimal(http, SPN_ID), "name": "renamed"},
        400,
        "ArgumentException",
        "Property name does not match",
    ),
    (
        "another identity",
        SPN_ID,
        lambda http: {
            **minimal(http, SPN_ID),
            "authorization": {
                "scheme": "WorkloadIdentityFederation",
                "parameters": {"serviceprincipalid": TARGET_MI},
            },
        },
        400,
        "ArgumentException",
        "authorization.parameters['serviceprincipalid']",
    ),
    (
        "another description",
        SPN_ID,
        lambda http: {**minimal(http, SPN_ID), "description": "changed"},
        400,
        "ArgumentException",
        "Property description does not match",
    ),
    (
        "another url",
        SPN_ID,
        lambda http: {**minimal(http, SPN_ID), "url": "https://management.usgovcloudapi.net/"},
        400,
        "ArgumentException",
        "Property url does not match",
    ),
    (
        "another creator",
        SPN_ID,
        lambda http: {**minimal(http, SPN_ID), "createdBy": {"id": str(uuid.uuid4())}},
        400,
        "ArgumentException",
        "Property createdbyid does not match",
    ),
    (
        "a renamed project reference",
        SPN_ID,
        lambda http: {
            **minimal(http, SPN_ID),
            "serviceEndpointProjectReferences": [
                {**minimal(http, SPN_ID)["serviceEndpointProjectReferences"][0], "name": "x"}
            ],
        },
        400,
        "ArgumentException",
        "Property serviceendpointprojectreferences does not match",
    ),
    (
        "parameters that are not an object",
        SPN_ID,
        lambda http: {
            **minimal(http, SPN_ID),
            "authorization": {"scheme": "WorkloadIdentityFederation", "parameters": ["x"]},
        },
        400,
        "InvalidRequestException",
        "could not be parsed",
    ),
    (
        "a project reference that is not an object",
        SPN_ID,
        lambda http: {**minimal(http, SPN_ID), "serviceEndpointProjectReferences": ["platform"]},
        400,
        "InvalidRequestException",
        "could not be parsed",
    ),
    (
        "changed data",
        SPN_ID,
        lambda http: {**minimal(http, SPN_ID), "data": {**DATA, "subscriptionName": "Other"}},
        400,
        "ArgumentException",
        "data['subscriptionname']",
    ),
]


@pytest.mark.parametrize(
    ("label", "eid", "make", "status", "type_key", "message"),
    REFUSED,
    ids=[r[0] for r in REFUSED],
)
def test_other_forms_are_refused_with_the_service_error_body(
    world: Simulator,
    http: Http,
    label: str,
    eid: str,
    make: Any,
    status: int,
    type_key: str,
    message: str,
) -> None:
    before = read(http, eid)
    r = http.ado("PUT", f"{PLATFORM_EP}/{eid}?{CONVERT}&{V}", json=make(http))
    assert r.status_code == status, r.text
    error = r.json()
    assert set(error) == ERROR_KEYS and error["$id"] == "1" and error["innerException"] is None
    assert error["typeKey"] == type_key and error["typeName"].startswith(("System.", "Microsoft."))
    assert message in error["message"]
    assert read(http, eid) == before


def test_a_connection_shared_from_another_project_is_converted_only_there(
    world: Simulator, http: Http
) -> None:
    # Microsoft's script skips connections shared from another project and treats the 400
    # the service answers for them as "shared"
    team_a = next(
        r
        for r in read(http, SPN_ID, "team-a")["serviceEndpointProjectReferences"]
        if r["projectReference"]["name"] == "team-a"
    )
    body = {**minimal(http, SPN_ID), "serviceEndpointProjectReferences": [team_a]}
    r = http.ado(
        "PUT", f"/contoso/team-a/_apis/serviceendpoint/endpoints/{SPN_ID}?{CONVERT}&{V}", json=body
    )
    assert r.status_code == 400 and set(r.json()) == ERROR_KEYS
    assert "shared from project 'platform'" in r.json()["message"]
    through_team_a = http.ado(
        "PUT",
        f"/contoso/team-a/_apis/serviceendpoint/endpoints/{SPN_ID}?{CONVERT}&{V}",
        json=minimal(http, SPN_ID),
    )
    assert through_team_a.status_code == 400
    assert read(http, SPN_ID)["authorization"]["scheme"] == "ServicePrincipal"


def test_unknown_connection_and_unknown_operation(world: Simulator, http: Http) -> None:
    missing = str(uuid.uuid4())
    body = {**minimal(http, SPN_ID), "id": missing}
    r = http.ado("PUT", f"{PLATFORM_EP}/{missing}?{CONVERT}&{V}", json=body)
    assert r.status_code == 404 and r.json()["typeKey"] == "ServiceEndpointNotFoundException"
    r = http.ado("PUT", f"{EP}/{SPN_ID}?operation=Convert&{V}", json=read(http, SPN_ID))
    assert r.status_code == 400 and set(r.json()) == ERROR_KEYS
    assert r.json()["typeKey"] == "ServiceEndpointException"
    assert "Operation 'Convert' is invalid" in r.json()["message"]
    # a plain update still cannot change the scheme (README: a conservative choice)
    body = read(http, SPN_ID)
    body["authorization"]["scheme"] = "WorkloadIdentityFederation"
    assert http.ado("PUT", f"{EP}/{SPN_ID}?{V}", json=body).status_code == 400


def test_create_may_ask_for_the_entra_issuer(world: Simulator, http: Http) -> None:
    # fabrikam still gives new connections the Azure DevOps issuer
    pid = http.ado("GET", f"/fabrikam/_apis/projects?{V}").json()["value"][0]["id"]

    def create(name: str, **params: str) -> dict[str, Any]:
        body = {
            "name": name,
            "type": "azurerm",
            "url": "https://management.azure.com/",
            "authorization": {
                "scheme": "WorkloadIdentityFederation",
                "parameters": {
                    "serviceprincipalid": TARGET_MI,
                    "tenantid": world.tenant_id,
                    **params,
                },
            },
            "data": {**DATA, "creationMode": "Manual"},
            "serviceEndpointProjectReferences": [{"projectReference": {"id": pid}, "name": name}],
        }
        r = http.ado("POST", f"/fabrikam/_apis/serviceendpoint/endpoints?{V}", json=body)
        assert r.status_code == 200, r.text
        created: dict[str, Any] = r.json()["authorization"]["parameters"]
        return created

    default = create("default-issuer")
    assert default["workloadIdentityFederationIssuer"].startswith("https://vstoken.dev.azure.com/")
    assert default["workloadIdentityFederationSubject"] == "sc://fabrikam/legacy-app/default-issuer"
    entra = create("entra-issuer", workloadIdentityFederationIssuerType="EntraID")
    assert entra["workloadIdentityFederationIssuer"] == (
        f"https://login.microsoftonline.com/{world.tenant_id}/v2.0"
    )
    assert entra["workloadIdentityFederationSubject"].startswith("/eid1/c/pub/t/")
    assert entra["workloadIdentityFederationIssuerType"] == "EntraID"


def test_the_whole_body_after_a_revert_is_accepted_again(world: Simulator, http: Http) -> None:
    # after a revert data.revertSchemeDeadline stays; sent back unchanged it equals the
    # connection's, so the service has nothing to refuse (scripts remove it all the same)
    url = f"{PLATFORM_EP}/{SPN_ID}?{CONVERT}&{V}"
    assert http.ado("PUT", url, json=minimal(http, SPN_ID)).status_code == 200
    assert http.ado("PUT", url, json=minimal(http, SPN_ID, "ServicePrincipal")).status_code == 200
    body = read(http, SPN_ID)
    assert "revertSchemeDeadline" in body["data"]
    body["authorization"]["scheme"] = "WorkloadIdentityFederation"
    assert http.ado("PUT", url, json=body).status_code == 200


def test_an_update_sending_the_secret_back_as_read_keeps_it(world: Simulator, http: Http) -> None:
    body = read(http, SPN_ID)
    assert body["authorization"]["parameters"]["serviceprincipalkey"] is None
    body["description"] = "edited"
    r = http.ado("PUT", f"{EP}/{SPN_ID}?{V}", json=body)
    assert r.status_code == 200, r.text
    assert stored(world, SPN_ID)["parameters"]["serviceprincipalkey"] == "(secret set)"
    body["authorization"]["parameters"]["serviceprincipalkey"] = "another-secret-value"
    assert http.ado("PUT", f"{EP}/{SPN_ID}?{V}", json=body).status_code == 200
    assert "another-secret-value" not in str(world.state())


def signs_in(http: Http, eid: str) -> dict[str, Any]:
    r = http.admin("GET", f"sign-in?organization=contoso&endpoint={eid}")
    assert r.status_code == 200, r.text
    got: dict[str, Any] = r.json()
    return got


def test_pipelines_keep_signing_in_through_an_issuer_switch(world: Simulator, http: Http) -> None:
    # the order the tool follows (issue 11 §2): add the Entra credential, switch, read back,
    # then delete the legacy credential; the sign-in check holds at every step
    assert signs_in(http, LEGACY_ID)["ok"]
    url = f"{PLATFORM_EP}/{LEGACY_ID}?{CONVERT}&{V}"
    body = minimal(http, LEGACY_ID, workloadIdentityFederationIssuerType="EntraID")
    assert http.ado("PUT", url, json=body).status_code == 202
    assert signs_in(http, LEGACY_ID)["ok"]  # an early switch changes nothing
    issuer, subject = entra_federation(world.tenant_id, ORG_ID, LEGACY_ID)
    add_credential(http, "legacy-mi", "entra", issuer, subject)
    assert signs_in(http, LEGACY_ID)["ok"]
    assert http.ado("PUT", url, json=body).status_code == 200
    after = signs_in(http, LEGACY_ID)
    assert after["ok"] and (after["issuer"], after["subject"]) == (issuer, subject)
    legacy = (
        f"/subscriptions/{SANDBOX}/resourceGroups/identities-rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/legacy-mi/"
        "federatedIdentityCredentials/legacy?api-version=2023-01-31"
    )
    assert http.arm("DELETE", legacy).status_code in (200, 204)
    assert signs_in(http, LEGACY_ID)["ok"]


def test_the_sign_in_check_fails_as_entra_would(world: Simulator, http: Http) -> None:
    # the other order: switching without the Entra credential would break sign-in, which is
    # why the service waits (202); deleting the only matching credential breaks it
    legacy = (
        f"/subscriptions/{SANDBOX}/resourceGroups/identities-rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/legacy-mi/"
        "federatedIdentityCredentials/legacy?api-version=2023-01-31"
    )
    assert http.arm("DELETE", legacy).status_code in (200, 204)
    failed = signs_in(http, LEGACY_ID)
    assert not failed["ok"] and failed["reason"].startswith("AADSTS70021")
    assert failed["identity"].endswith("/userAssignedIdentities/legacy-mi")
    # a secret-based connection signs in while its secret is set; after the conversion it
    # needs the credential like any other
    assert signs_in(http, MI_SPN_ID)["ok"]
    issuer, subject = entra_federation(world.tenant_id, ORG_ID, MI_SPN_ID)
    add_credential(http, "target-mi", "entra", issuer, subject)
    url = f"{PLATFORM_EP}/{MI_SPN_ID}?{CONVERT}&{V}"
    assert http.ado("PUT", url, json=minimal(http, MI_SPN_ID)).status_code == 200
    assert signs_in(http, MI_SPN_ID)["ok"]
    # no role assignment, no sign-in (issue 11 §5)
    target = next(
        ra["name"]
        for ra in world.state()["roleAssignments"]
        if ra["scope"].endswith("/sandbox-rg")
        and ra["principalId"] == _principal(world, "target-mi")
    )
    world.delete("role_assignment", target)
    unassigned = signs_in(http, MI_SPN_ID)
    assert not unassigned["ok"] and "holds no role assignment" in unassigned["reason"]
    assert signs_in(http, str(uuid.uuid4()))["ok"] is False


def _principal(sim: Simulator, name: str) -> str:
    for identity in sim.state()["identities"]:
        if identity["name"] == name:
            return str(identity["principalId"])
    raise AssertionError(name)


def test_a_new_credential_is_honoured_only_once_it_has_propagated(
    world: Simulator, http: Http
) -> None:
    # Entra honours a new credential only after a while (AADSTS70021 meanwhile; the portal
    # says to wait, then "Try again"): the conversion answers 202 until then
    world.set_faults(fic_propagation_ms=3_600_000)
    issuer, subject = entra_federation(world.tenant_id, ORG_ID, LEGACY_ID)
    add_credential(http, "legacy-mi", "entra", issuer, subject)
    url = f"{PLATFORM_EP}/{LEGACY_ID}?{CONVERT}&{V}"
    body = minimal(http, LEGACY_ID, workloadIdentityFederationIssuerType="EntraID")
    assert http.ado("PUT", url, json=body).status_code == 202
    # the seeded legacy credential is old: the connection still signs in on it
    assert signs_in(http, LEGACY_ID)["ok"]
    world.set_faults(fic_propagation_ms=0)
    assert http.ado("PUT", url, json=body).status_code == 200
    assert signs_in(http, LEGACY_ID)["ok"]
    # rewriting a credential counts as new again
    world.set_faults(fic_propagation_ms=3_600_000)
    add_credential(http, "legacy-mi", "entra", issuer, subject)
    failed = signs_in(http, LEGACY_ID)
    assert not failed["ok"] and failed["reason"].startswith("AADSTS70021")


def test_all_sign_ins_in_one_call_answer_as_each_one_does(world: Simulator, http: Http) -> None:
    # the probe's one call per round: the same answer per connection as the single check, on
    # an estate where one connection fails (its only credential deleted) and others sign in
    legacy = (
        f"/subscriptions/{SANDBOX}/resourceGroups/identities-rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/legacy-mi/"
        "federatedIdentityCredentials/legacy?api-version=2023-01-31"
    )
    assert http.arm("DELETE", legacy).status_code in (200, 204)
    r = http.admin("GET", "sign-ins")
    assert r.status_code == 200, r.text
    every = r.json()["value"]
    held = {
        e["id"] for o in world.state()["devops"]["organizations"] for e in o["serviceEndpoints"]
    }
    assert {a["id"] for a in every} == held and len(every) == len(held)
    for answer in every:
        single = signs_in(http, answer["id"])
        assert {k: v for k, v in answer.items() if k not in ("organization", "id")} == single
        assert answer["organization"] == "contoso"
    oks = {a["id"]: a["ok"] for a in every}
    assert oks[LEGACY_ID] is False and oks[MI_SPN_ID] is True
