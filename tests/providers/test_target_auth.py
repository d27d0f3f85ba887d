"""Target resolution, credential choice, token caching and retry hints (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from reconciler.errors import AuthError, ConfigError
from reconciler.providers.auth import (
    DEVOPS_SCOPE,
    PIPELINE_VARS,
    CachedCredential,
    DevOpsAuth,
    make_credential,
    tenant_from_token,
)
from reconciler.providers.http import retry_after
from reconciler.providers.target import (
    AZURE,
    TARGET_ENV,
    TargetKind,
    load_target,
    resolve_target,
)

ORG_URL = "https://dev.azure.com/contoso/_apis/projects"


def _connection(tmp_path: Path, **override: Any) -> Path:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    data = {
        "arm_url": "https://127.0.0.1:4443/",
        "devops_url": "https://127.0.0.1:4443/devops",
        "authority": "127.0.0.1:4443",
        "tenant_id": "7e1a6a0c-3c1d-4b8e-9f4a-1b2c3d4e5f60",
        "client_id": "5b1d7c3e-0a2f-4e8b-9c6d-7f0e1a2b3c4d",
        "client_secret": "s3cret-value",
        "ca_bundle": "ca.pem",
        "connection_file": str(tmp_path / "connection.json"),
    }
    data.update(override)
    path = tmp_path / "connection.json"
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not None}))
    return path


def test_explicit_path_wins_and_fields_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TARGET_ENV, str(tmp_path / "elsewhere.json"))
    target = resolve_target(str(_connection(tmp_path)))
    assert target is not None
    assert target.arm_url == "https://127.0.0.1:4443"  # trailing slash dropped
    assert target.devops_url == "https://127.0.0.1:4443/devops"
    assert target.ca_bundle == str(tmp_path / "ca.pem")  # relative to the file
    assert target.kind is TargetKind.FILE and not target.is_cloud
    assert "s3cret-value" not in repr(target)


def test_environment_variable_then_real_azure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TARGET_ENV, str(_connection(tmp_path)))
    target = resolve_target(None)
    assert target is not None and target.authority == "127.0.0.1:4443"
    monkeypatch.delenv(TARGET_ENV)
    assert resolve_target(None) == AZURE
    assert AZURE.arm_url == "https://management.azure.com" and AZURE.kind is TargetKind.CLOUD


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"arm_url": None}, "field 'arm_url' is missing"),
        ({"client_secret": ""}, "field 'client_secret' must be a non-empty string"),
        ({"tenant_id": 7}, "field 'tenant_id' must be a non-empty string"),
        ({"devops_url": "http://127.0.0.1/devops"}, "field 'devops_url' must be an https:// URL"),
        ({"ca_bundle": "missing.pem"}, "field 'ca_bundle': no such file"),
    ],
)
def test_malformed_connection_file_names_the_field(
    tmp_path: Path, override: dict[str, Any], message: str
) -> None:
    path = _connection(tmp_path, **override)
    with pytest.raises(ConfigError) as err:
        load_target(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_and_invalid_json_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_target(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  'arm_url': 1}")
    with pytest.raises(ConfigError, match=r"bad.json'.*:2:3: not valid JSON"):
        resolve_target(str(bad))
    listy = tmp_path / "list.json"
    listy.write_text("[]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        resolve_target(str(listy))


def test_simulator_target_uses_its_client_secret(tmp_path: Path) -> None:
    from azure.identity import ClientSecretCredential

    target = load_target(_connection(tmp_path))
    credential = make_credential(target)
    assert isinstance(credential, CachedCredential)
    assert isinstance(credential._inner, ClientSecretCredential)
    assert credential.target == target
    # --auth chooses among real credentials: with a connection file it is an error
    for mode in ("cli", "environment", "managed-identity", "default", "pipelines"):
        with pytest.raises(ConfigError, match=f"--auth {mode} chooses a real Azure credential"):
            make_credential(target, mode)


def test_auto_picks_pipelines_only_when_every_variable_is_set() -> None:
    from azure.identity import AzurePipelinesCredential, ChainedTokenCredential

    env = {name: "x" for name in PIPELINE_VARS}
    env["SYSTEM_OIDCREQUESTURI"] = "https://dev.azure.com/contoso/oidc"
    chosen = make_credential(None, "auto", environ=env)
    assert isinstance(chosen, CachedCredential)
    assert isinstance(chosen._inner, AzurePipelinesCredential)
    del env["SYSTEM_ACCESSTOKEN"]
    fallback = make_credential(None, "auto", environ=env)
    assert isinstance(fallback, CachedCredential)
    assert isinstance(fallback._inner, ChainedTokenCredential)
    names = [type(c).__name__ for c in fallback._inner.credentials]
    assert names == ["AzureCliCredential", "EnvironmentCredential", "ManagedIdentityCredential"]


def test_explicit_modes_and_their_errors() -> None:
    from azure.identity import (
        AzureCliCredential,
        DefaultAzureCredential,
        EnvironmentCredential,
        ManagedIdentityCredential,
    )

    expected = {
        "cli": AzureCliCredential,
        "environment": EnvironmentCredential,
        "managed-identity": ManagedIdentityCredential,
        "default": DefaultAzureCredential,
    }
    for mode, cls in expected.items():
        chosen = make_credential(None, mode, environ={})
        assert isinstance(chosen, CachedCredential)
        assert isinstance(chosen._inner, cls)
    with pytest.raises(ConfigError) as err:
        make_credential(None, "pipelines", environ={"SYSTEM_ACCESSTOKEN": "secret-token"})
    assert "SYSTEM_OIDCREQUESTURI" in str(err.value)
    assert "secret-token" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown --auth mode"):
        make_credential(None, "magic", environ={})


class _Counting:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append(scopes)
        if self.fail is not None:
            raise self.fail
        return AccessToken(f"token-{len(self.calls)}", 10_000)


def test_cached_credential_shares_tokens_until_near_expiry() -> None:
    inner = _Counting()
    now = [0.0]
    cached = CachedCredential(inner, now=lambda: now[0])  # type: ignore[arg-type]
    assert cached.get_token("a/.default").token == "token-1"
    assert cached.get_token("a/.default").token == "token-1"
    assert cached.get_token("b/.default").token == "token-2"
    now[0] = 9_800.0  # inside the refresh margin
    assert cached.get_token("a/.default").token == "token-3"
    assert cached.get_token("a/.default", claims="x").token == "token-4"  # CAE: never cached


def test_devops_auth_prefers_entra_and_falls_back_to_pat_with_a_warning() -> None:
    from azure.core.exceptions import ClientAuthenticationError

    inner = _Counting()
    warnings: list[str] = []
    auth = DevOpsAuth(
        inner,  # type: ignore[arg-type]
        target=AZURE,
        environ={"AZURE_DEVOPS_EXT_PAT": "pat"},
        warn=warnings.append,
    )
    assert auth.header(ORG_URL) == "Bearer token-1"
    assert inner.calls == [(DEVOPS_SCOPE,)]
    assert warnings == []

    failing = _Counting(ClientAuthenticationError("AADSTS700016: app not found"))
    auth = DevOpsAuth(
        failing,  # type: ignore[arg-type]
        target=AZURE,
        environ={"AZURE_DEVOPS_EXT_PAT": "my-pat"},
        warn=warnings.append,
    )
    assert auth.header(ORG_URL) == "Basic Om15LXBhdA=="  # base64(":my-pat")
    assert auth.header(ORG_URL) == "Basic Om15LXBhdA=="
    assert len(warnings) == 1 and "AZURE_DEVOPS_EXT_PAT" in warnings[0]
    assert "my-pat" not in warnings[0]

    auth = DevOpsAuth(failing, target=AZURE, environ={}, warn=warnings.append)  # type: ignore[arg-type]
    with pytest.raises(AuthError, match="AADSTS700016"):
        auth.header(ORG_URL)


def test_tenant_from_token_reads_the_tid_claim() -> None:
    import base64

    payload = base64.urlsafe_b64encode(json.dumps({"tid": "t-1"}).encode()).decode().rstrip("=")
    assert tenant_from_token(f"e30.{payload}.sig") == "t-1"
    assert tenant_from_token("opaque-simulator-token") is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"x-ms-retry-after-ms": "1500", "Retry-After": "2"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "soon"}, 1.0),
        ({"Retry-After": "100000"}, 300.0),
        ({}, 1.0),
        (None, 1.0),
    ],
)
def test_retry_after(headers: dict[str, str] | None, expected: float) -> None:
    assert retry_after(headers) == expected


def test_retry_after_http_date() -> None:
    import email.utils
    import time

    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after({"Retry-After": when}) <= 31
