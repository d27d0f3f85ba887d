"""What the run says about credentials: the chain's failure in short, whom it signed in as."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest

from reconciler.providers.auth import (
    AnnouncedCredential,
    describe_credential_error,
    describe_sign_in,
    make_credential,
)
from reconciler.providers.target import AZURE, TargetKind


def _jwt(claims: dict[str, str]) -> str:
    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.signature-not-checked"


def test_a_chain_failure_is_one_line_per_credential_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "IDENTITY_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    credential = make_credential(None, "auto", environ={})
    with pytest.raises(Exception) as caught:
        credential.get_token("https://management.azure.com/.default")
    text = describe_credential_error(caught.value)
    lines = text.splitlines()
    assert lines[0] == "no credential could sign in; tried:"
    assert [line.split(":")[0].strip() for line in lines[1:4]] == [
        "AzureCliCredential",
        "EnvironmentCredential",
        "ManagedIdentityCredential",
    ]
    assert "aka.ms" not in text  # the SDK's links, repeated after each, are left out
    assert lines[-1].strip().startswith("to fix: run `az login`")
    assert "--auth pipelines" in lines[-1] and "--target FILE" in lines[-1]


def test_a_single_failure_stays_one_line() -> None:
    assert describe_credential_error(ValueError("AADSTS7000215: bad secret\nmore")) == (
        "AADSTS7000215: bad secret"
    )


def test_sign_in_names_the_user_or_application_and_tenant_never_the_token() -> None:
    user = _jwt({"upn": "ana@contoso.com", "oid": "o-1", "tid": "t-1"})
    assert describe_sign_in(user, AZURE) == (
        "signed in to Azure public cloud (tenant t-1) as user ana@contoso.com (object id o-1)"
    )
    app = _jwt({"appid": "a-1", "oid": "o-2", "tid": "t-2"})
    line = describe_sign_in(app, AZURE)
    assert line == "signed in to Azure public cloud (tenant t-2) as application a-1 (object id o-2)"
    assert app not in line and "signature" not in line
    sim = replace(
        AZURE, name="/tmp/sim.json", tenant_id="t-3", client_id="c-3", kind=TargetKind.FILE
    )
    assert describe_sign_in("opaque", sim) == (
        "signed in to the simulator (/tmp/sim.json, tenant t-3) as application c-3"
    )


class _Token:
    def __init__(self, token: str) -> None:
        self.token = token
        self.expires_on = 2**31


class _Inner:
    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def get_token(self, *scopes: str, **kwargs: object) -> _Token:
        self.calls += 1
        if self.fail:
            raise ConnectionError("connection refused")
        return _Token(_jwt({"appid": "a-1", "tid": "t-1"}))


def test_the_announcement_is_written_once_and_a_failure_is_not_asked_again() -> None:
    written: list[str] = []
    inner = _Inner()
    credential = AnnouncedCredential(inner, AZURE, write=written.append)  # type: ignore[arg-type]
    for _ in range(3):
        credential.get_token("scope-a")
    assert written == ["signed in to Azure public cloud (tenant t-1) as application a-1\n"]
    failing = _Inner(fail=True)
    credential = AnnouncedCredential(failing, AZURE, write=written.append)  # type: ignore[arg-type]
    for scope in ("scope-a", "scope-a", "scope-b"):
        with pytest.raises(ConnectionError):
            credential.get_token(scope)
    assert failing.calls == 1  # the endpoint is unreachable: every caller hears the same at once
