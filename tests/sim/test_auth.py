"""The Entra token endpoint, discovery, and how ARM and Azure DevOps treat tokens."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError

from reconciler.sim.server import Simulator

from .clients import ARM_SCOPE, DEVOPS_SCOPE, SANDBOX, Http

ID = f"/subscriptions/{SANDBOX}/resourceGroups/identities-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/shared-build-mi?api-version=2024-11-30"


def test_client_secret_credential_gets_tokens_for_both_audiences(
    sim: Simulator, credential: Any
) -> None:
    arm = credential.get_token(ARM_SCOPE)
    assert arm.token and arm.expires_on > 0
    assert credential.get_token(DEVOPS_SCOPE).token != arm.token


def test_token_endpoint_contract(sim: Simulator, http: Http) -> None:
    url = f"https://{sim.authority}/{sim.tenant_id}/oauth2/v2.0/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "scope": ARM_SCOPE,
    }
    r = http.session.post(url, data=form)
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["access_token"]
    bad = http.session.post(url, data={**form, "client_secret": "wrong"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    unknown = http.session.post(
        url, data={**form, "client_id": "00000000-0000-0000-0000-000000000000"}
    )
    assert unknown.status_code == 400 and unknown.json()["error"] == "unauthorized_client"
    assert http.session.post(url, data={**form, "scope": "openid"}).status_code == 400
    doc = http.session.get(
        f"https://{sim.authority}/{sim.tenant_id}/v2.0/.well-known/openid-configuration"
    ).json()
    assert doc["token_endpoint"] == url
    inst = http.session.get(f"https://{sim.authority}/common/discovery/instance").json()
    assert inst["tenant_discovery_endpoint"].endswith("/.well-known/openid-configuration")
    assert sim.count("Token") >= 3


def test_wrong_secret_fails_in_azure_identity(sim: Simulator) -> None:
    from azure.identity import ClientSecretCredential

    bad = ClientSecretCredential(
        sim.tenant_id,
        sim.client_id,
        "nope",
        authority=sim.authority,
        disable_instance_discovery=True,
        connection_verify=sim.connection["ca_bundle"],
    )
    with pytest.raises(ClientAuthenticationError):
        bad.get_token(ARM_SCOPE)


def test_arm_rejects_missing_foreign_and_unknown_tokens(sim: Simulator, http: Http) -> None:
    missing = http.arm("GET", ID, auth=False)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "AuthenticationFailed"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    devops = http.arm("GET", ID, headers={"Authorization": f"Bearer {http.token(DEVOPS_SCOPE)}"})
    assert (
        devops.status_code == 401
        and devops.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    )
    unknown = http.arm("GET", ID, headers={"Authorization": "Bearer not-a-token"})
    assert (
        unknown.status_code == 401
        and unknown.json()["error"]["code"] == "InvalidAuthenticationToken"
    )
    assert http.arm("GET", ID).status_code == 200


def test_devops_answers_a_sign_in_page_or_401(sim: Simulator, http: Http) -> None:
    url = "/contoso/_apis/projects?api-version=7.1"
    page = http.ado("GET", url, auth=False)
    assert page.status_code == 203 and page.headers["Content-Type"].startswith("text/html")
    arm = http.ado("GET", url, headers={"Authorization": f"Bearer {http.token(ARM_SCOPE)}"})
    assert arm.status_code == 203
    suppressed = http.ado("GET", url, auth=False, headers={"X-TFS-FedAuthRedirect": "Suppress"})
    assert suppressed.status_code == 401
    assert suppressed.json()["message"].startswith("TF400813")
    assert http.ado("GET", url).status_code == 200


def test_personal_access_tokens(sim: Simulator, http: Http) -> None:
    seed = sim.state()
    seed["pats"] = [{"token": "pat-for-tests", "user": "Ada"}]
    sim.reset(seed)
    basic = base64.b64encode(b":pat-for-tests").decode()
    r = http.ado(
        "GET",
        "/contoso/_apis/projects?api-version=7.1",
        auth=False,
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200
    assert sim.request_log()[-1]["caller"] == "pat:Ada"
    wrong = base64.b64encode(b":wrong").decode()
    assert (
        http.ado(
            "GET",
            "/contoso/_apis/projects",
            auth=False,
            headers={"Authorization": f"Basic {wrong}"},
        ).status_code
        == 203
    )


def test_an_expired_token_is_refused(sim: Simulator, http: Http) -> None:
    url = f"https://{sim.authority}/{sim.tenant_id}/oauth2/v2.0/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "scope": ARM_SCOPE,
    }
    token = http.session.post(url, data=form).json()["access_token"]
    assert http.arm("GET", ID, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    sim.expire_tokens(token)
    r = http.arm("GET", ID, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "ExpiredAuthenticationToken"
    assert http.arm("GET", ID).status_code == 200  # other tokens are untouched
