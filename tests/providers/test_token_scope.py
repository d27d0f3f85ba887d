"""Credentials are scoped to their target: real-cloud credentials never reach a host a
connection file names, a file's endpoints receive only the file's own token, and the PAT goes
only over TLS to Azure DevOps.

End to end: the CLI runs in a subprocess with a fake ``az`` first on ``PATH`` (it records
being called and would hand out a token) and ``AZURE_DEVOPS_EXT_PAT`` set, against loopback
HTTPS servers that record every request (its ``Authorization`` header and body).
"""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from azure.core.credentials import AccessToken

from reconciler.errors import AuthError, ConfigError, PermanentError
from reconciler.providers import connect
from reconciler.providers.arm import ArmClient
from reconciler.providers.auth import (
    ARM_SCOPE,
    CachedCredential,
    DevOpsAuth,
    arm_scope,
    make_credential,
)
from reconciler.providers.devops import DevOpsClient
from reconciler.providers.http import make_session
from reconciler.providers.target import (
    AZURE,
    CLOUDS,
    Service,
    TargetKind,
    cloud_target,
    is_devops_host,
    load_target,
    resolve_target,
    token_may_go,
)

ROOT = Path(__file__).resolve().parents[2]
TENANT = "7e1a6a0c-3c1d-4b8e-9f4a-1b2c3d4e5f60"
CLIENT = "5b1d7c3e-0a2f-4e8b-9c6d-7f0e1a2b3c4d"
FILE_SECRET = "file-own-client-secret"
FILE_TOKEN = "file-own-access-token"
AZ_TOKEN = "az-cli-access-token"
PAT = "pat-secret-value-7f3k"
HANG_GUARD = 60.0  # seconds: a hang guard for each CLI run, not a speed assertion


# --- a loopback HTTPS server that records every request ----------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None
    body: str


@dataclass
class Recorder:
    host: str
    port: int
    refuse_tokens: bool
    seen: list[Seen] = field(default_factory=list)

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.netloc}"

    def token_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path.endswith("/oauth2/v2.0/token")]

    def service_requests(self) -> list[Seen]:
        return [
            s
            for s in self.seen
            if not s.path.endswith("/oauth2/v2.0/token") and "/.well-known/" not in s.path
        ]


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            recorder.seen.append(
                Seen(self.command, self.path, self.headers.get("Authorization"), body)
            )
            path = self.path.split("?", 1)[0]
            status, answer = 200, {"value": [], "count": 0}
            if path.endswith("/.well-known/openid-configuration"):
                base = f"{recorder.url}/{TENANT}"
                answer = {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "issuer": f"{base}/v2.0",
                    "token_endpoint_auth_methods_supported": ["client_secret_post"],
                }
            elif path.endswith("/oauth2/v2.0/token"):
                if recorder.refuse_tokens:
                    status, answer = (
                        401,
                        {
                            "error": "invalid_client",
                            "error_description": "AADSTS7000215: Invalid client secret provided.",
                            "error_codes": [7000215],
                        },
                    )
                else:
                    answer = {
                        "token_type": "Bearer",
                        "expires_in": 3599,
                        "ext_expires_in": 3599,
                        "access_token": FILE_TOKEN,
                    }
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@dataclass
class Loopback:
    ca_bundle: Path
    ca: trustme.CA
    servers: list[ThreadingHTTPServer] = field(default_factory=list)

    def serve(self, host: str = "127.0.0.1", *, refuse_tokens: bool = False) -> Recorder:
        recorder = Recorder(host, 0, refuse_tokens)
        server = ThreadingHTTPServer((host, 0), _handler(recorder))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(host).configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        recorder.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return recorder


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[Loopback]:
    ca = trustme.CA()
    bundle = tmp_path / "loopback-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    net = Loopback(bundle, ca)
    try:
        yield net
    finally:
        for server in net.servers:
            server.shutdown()
            server.server_close()


def _connection(
    path: Path, authority: Recorder, service: Recorder | None = None, ca: Path | None = None
) -> Path:
    """A connection file whose token endpoint is ``authority`` and whose ARM and Azure DevOps
    endpoints are ``service`` (default: the same server)."""
    service = service or authority
    data = {
        "arm_url": service.url,
        "devops_url": f"{service.url}/devops",
        "vssps_url": f"{service.url}/vssps",
        "authority": authority.netloc,
        "tenant_id": TENANT,
        "client_id": CLIENT,
        "client_secret": FILE_SECRET,
        "ca_bundle": str(ca) if ca else "",
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def fake_az(tmp_path: Path) -> tuple[Path, Path]:
    """A directory holding an ``az`` that records each call and prints a token, and the
    record file (absent until it is called)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "az-called.log"
    az = bin_dir / "az"
    token = json.dumps(
        {
            "accessToken": AZ_TOKEN,
            "expiresOn": "2099-01-01 00:00:00.000000",
            "expires_on": 4070908800,
            "subscription": "11111111-1111-1111-1111-111111111111",
            "tenant": TENANT,
            "tokenType": "Bearer",
        }
    )
    az.write_text(f"#!/bin/sh\necho \"$@\" >> '{record}'\necho '{token}'\n", encoding="utf-8")
    az.chmod(az.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir, record


def _env(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "RECONCILER_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["AZURE_DEVOPS_EXT_PAT"] = PAT
    env.update(extra)
    return env


def _spec(directory: Path) -> Path:
    spec = directory / "spec.yaml"
    spec.write_text((ROOT / "specs" / "walkthrough.yaml").read_text("utf-8"), encoding="utf-8")
    return spec


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )


def _assert_only_the_files_own_token(
    result: subprocess.CompletedProcess[str],
    record: Path,
    authority: Recorder,
    service: Recorder,
) -> None:
    assert not record.exists(), "the Azure CLI was called"
    assert "Traceback" not in result.stderr
    everything = [*authority.seen, *([] if service is authority else service.seen)]
    for seen in everything:
        assert seen.authorization in (None, f"Bearer {FILE_TOKEN}"), seen
        assert PAT not in (seen.authorization or "") and PAT not in seen.body
        assert AZ_TOKEN not in (seen.authorization or "") and AZ_TOKEN not in seen.body
    # the file's secret went only to its own authority's token endpoint
    for seen in everything:
        if FILE_SECRET in seen.body:
            assert seen in authority.token_requests()
    if service is not authority:
        assert service.token_requests() == []
        assert all(s.authorization is None for s in authority.seen)
    assert PAT not in result.stdout + result.stderr
    assert FILE_SECRET not in result.stdout + result.stderr
    assert FILE_TOKEN not in result.stdout + result.stderr


# --- a connection file named like the real thing is still a connection file -------------------


@pytest.mark.parametrize(
    ("name", "via"),
    [
        ("azure", "--target"),
        ("azure", "env"),
        ("./azure", "--target"),
        ("./azure", "env"),
        ("azure.json", "--target"),
        ("azure/azure", "--target"),  # a file inside a folder named azure
        ("ABSOLUTE", "--target"),  # the absolute path of a file named azure
    ],
)
def test_a_connection_file_named_azure_gets_only_its_own_credentials(
    tmp_path: Path, loopback: Loopback, fake_az: tuple[Path, Path], name: str, via: str
) -> None:
    bin_dir, record = fake_az
    server = loopback.serve()
    work = tmp_path / "work"
    work.mkdir()
    if name == "ABSOLUTE":
        name = str(work / "azure")
    path = work / name
    path.parent.mkdir(parents=True, exist_ok=True)
    _connection(path, server, ca=loopback.ca_bundle)
    _spec(work)
    args, env = ["plan", "spec.yaml"], _env(bin_dir)
    if via == "--target":
        args += ["--target", name]
    else:
        env["RECONCILER_TARGET"] = name
    result = _run(args, work, env)
    # the file was used (its own token endpoint and endpoints were called), with its token
    assert server.token_requests(), result.stderr
    assert any(s.authorization == f"Bearer {FILE_TOKEN}" for s in server.service_requests())
    assert any("/devops/" in s.path for s in server.service_requests())
    _assert_only_the_files_own_token(result, record, server, server)


def test_a_folder_named_azure_is_not_the_real_cloud(
    tmp_path: Path, loopback: Loopback, fake_az: tuple[Path, Path]
) -> None:
    bin_dir, record = fake_az
    (tmp_path / "azure").mkdir()
    _spec(tmp_path)
    for args, env in (
        (["plan", "spec.yaml", "--target", "azure"], _env(bin_dir)),
        (["plan", "spec.yaml"], _env(bin_dir, RECONCILER_TARGET="azure")),
    ):
        result = _run(args, tmp_path, env)
        assert result.returncode == 1
        assert "target file 'azure'" in result.stderr and "cannot be read" in result.stderr
    assert not record.exists()


def test_a_refusing_token_endpoint_never_gets_the_pat(
    tmp_path: Path, loopback: Loopback, fake_az: tuple[Path, Path]
) -> None:
    bin_dir, record = fake_az
    server = loopback.serve(refuse_tokens=True)
    _connection(tmp_path / "azure", server, ca=loopback.ca_bundle)
    _spec(tmp_path)
    for command in ("plan", "drift", "apply"):
        extra = ["--auto-approve"] if command == "apply" else []
        result = _run([command, "spec.yaml", "--target", "azure", *extra], tmp_path, _env(bin_dir))
        assert result.returncode == 1, result.stderr
        assert "AADSTS7000215" in result.stderr
        assert server.token_requests()
        _assert_only_the_files_own_token(result, record, server, server)
        assert all(s.authorization is None for s in server.seen)


def test_the_pat_fallback_never_fires_for_a_connection_file(
    tmp_path: Path, loopback: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, straight at the Azure DevOps client: with the token endpoint refusing and
    the PAT set, listing projects fails with the Entra error and sends nothing."""
    server = loopback.serve(refuse_tokens=True)
    monkeypatch.setenv("AZURE_DEVOPS_EXT_PAT", PAT)
    services = connect(load_target(_connection(tmp_path / "azure", server, ca=loopback.ca_bundle)))
    try:
        with pytest.raises(AuthError) as err:
            services.devops.list_projects("contoso")
    finally:
        services.close()
    assert PAT not in str(err.value)
    assert not services.devops._auth.using_pat
    assert server.service_requests() == []
    assert all(s.authorization is None and PAT not in s.body for s in server.seen)


def test_endpoints_on_another_loopback_host_get_only_the_files_token(
    tmp_path: Path, loopback: Loopback, fake_az: tuple[Path, Path]
) -> None:
    bin_dir, record = fake_az
    authority = loopback.serve("127.0.0.1")
    service = loopback.serve("127.0.0.2")
    _connection(tmp_path / "azure", authority, service, ca=loopback.ca_bundle)
    _spec(tmp_path)
    result = _run(["plan", "spec.yaml", "--target", "azure"], tmp_path, _env(bin_dir))
    assert authority.token_requests(), result.stderr
    assert any(s.authorization == f"Bearer {FILE_TOKEN}" for s in service.seen)
    _assert_only_the_files_own_token(result, record, authority, service)


@pytest.mark.parametrize(
    "extra",
    [["--auth", "cli"], ["--auth", "default"], ["--cloud", "usgovernment"], ["--cloud", "public"]],
)
def test_real_cloud_options_with_target_are_an_error(
    tmp_path: Path, loopback: Loopback, fake_az: tuple[Path, Path], extra: list[str]
) -> None:
    """One command line naming a connection file and a real-cloud option contradicts itself."""
    bin_dir, record = fake_az
    server = loopback.serve()
    _connection(tmp_path / "azure", server, ca=loopback.ca_bundle)
    _spec(tmp_path)
    result = _run(["plan", "spec.yaml", "--target", "azure", *extra], tmp_path, _env(bin_dir))
    assert result.returncode == 1
    assert f"{' '.join(extra)} chose the real Azure services, and --target 'azure' is a " in (
        result.stderr
    )
    assert server.seen == [] and not record.exists()


@pytest.mark.parametrize(
    "extra", [["--auth", "cli"], ["--auth", "pipelines"], ["--cloud", "china"]]
)
def test_real_cloud_options_with_the_environment_target_are_announced_and_not_used(
    tmp_path: Path, loopback: Loopback, fake_az: tuple[Path, Path], extra: list[str]
) -> None:
    """``$RECONCILER_TARGET`` is how an unchanged command (a pipeline template's ``--auth
    pipelines``) is pointed at the simulator: the option is named in a warning and the file
    still gets only its own credentials."""
    bin_dir, record = fake_az
    server = loopback.serve()
    _connection(tmp_path / "azure", server, ca=loopback.ca_bundle)
    _spec(tmp_path)
    pipeline_vars = {
        "SYSTEM_OIDCREQUESTURI": f"{server.url}/oidc",
        "AZURESUBSCRIPTION_CLIENT_ID": CLIENT,
        "AZURESUBSCRIPTION_TENANT_ID": TENANT,
        "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": "sc-id",
        "SYSTEM_ACCESSTOKEN": "system-access-token",
    }
    env = _env(bin_dir, RECONCILER_TARGET="azure", **pipeline_vars)
    result = _run(["plan", "spec.yaml", *extra], tmp_path, env)
    assert (
        f"warning: {' '.join(extra)} not used: $RECONCILER_TARGET names the connection file "
        "'azure'" in result.stderr
    )
    assert server.token_requests(), result.stderr
    _assert_only_the_files_own_token(result, record, server, server)
    assert not any("/oidc" in s.path for s in server.seen)
    assert all("system-access-token" not in s.body for s in server.seen)


def test_the_fake_az_is_what_the_real_cloud_would_use(
    fake_az: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control for the cases above: without a connection file the Azure CLI credential
    is used, and it reaches this fake ``az`` (so "never called" above means something)."""
    bin_dir, record = fake_az
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    credential = make_credential(resolve_target(None), "cli")
    assert credential.get_token(ARM_SCOPE).token == AZ_TOKEN
    assert record.exists()


# --- the host rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://dev.azure.com/contoso/_apis/projects", True),
        ("https://DEV.AZURE.COM/contoso", True),
        ("https://dev.azure.com:443/contoso", True),
        ("https://contoso.visualstudio.com/_apis/projects", True),
        ("https://app.vssps.visualstudio.com/_apis/accounts", True),
        ("https://dev.azure.com.evil.test/contoso", False),
        ("https://visualstudio.com.evil/contoso", False),
        ("https://visualstudio.com/contoso", False),
        ("https://evil.test/visualstudio.com", False),
        ("https://a.b.visualstudio.com/x", True),
        ("https://a..visualstudio.com/x", False),
        ("https://evilvisualstudio.com/x", False),
        ("http://dev.azure.com/contoso", False),
        ("http://contoso.visualstudio.com/x", False),
        ("https://dev.azure.com:8443/contoso", False),
        ("https://user@dev.azure.com/contoso", False),
        ("https://dev.azure.com@evil.test/contoso", False),
        ("https://127.0.0.1/devops", False),
        ("https://dev.azure.com./contoso", False),
        ("https://dev.azure.com:bad/contoso", False),
        ("dev.azure.com/contoso", False),
    ],
)
def test_the_pat_and_devops_tokens_go_only_to_azure_devops(url: str, allowed: bool) -> None:
    assert is_devops_host(url) is allowed
    assert token_may_go(AZURE, Service.DEVOPS, url) is allowed


def test_a_cloud_tokens_go_only_to_its_own_management_host() -> None:
    for name, cloud in CLOUDS.items():
        target = cloud_target(name)
        assert target.kind is TargetKind.CLOUD
        assert arm_scope(target) == f"{cloud.arm_url}/.default"
        for other_name, other in CLOUDS.items():
            url = f"{other.arm_url}/subscriptions?api-version=2022-12-01"
            assert token_may_go(target, Service.ARM, url) is (other_name == name)
        for url in (
            "http://management.azure.com/subscriptions",
            "https://management.azure.com.evil.test/subscriptions",
            "https://127.0.0.1:8443/subscriptions",
            "https://dev.azure.com/contoso",
        ):
            assert not token_may_go(target, Service.ARM, url)
    with pytest.raises(ConfigError, match="unknown cloud"):
        cloud_target("moon")


def test_a_connection_file_tokens_go_only_to_its_own_endpoints(
    tmp_path: Path, loopback: Loopback
) -> None:
    server = loopback.serve()
    target = load_target(_connection(tmp_path / "azure", server, ca=loopback.ca_bundle))
    assert target.kind is TargetKind.FILE and arm_scope(target) == ARM_SCOPE
    assert token_may_go(target, Service.ARM, f"{server.url}/subscriptions")
    assert token_may_go(target, Service.DEVOPS, f"{server.url}/devops/contoso")
    assert token_may_go(target, Service.DEVOPS, f"{server.url}/vssps/_apis/accounts")
    for url in (
        "https://management.azure.com/subscriptions",
        "https://dev.azure.com/contoso",
        f"http://{server.netloc}/subscriptions",
        f"https://{server.host}:{server.port + 1}/subscriptions",
        "https://127.0.0.2/subscriptions",
    ):
        assert not token_may_go(target, Service.ARM, url), url
        assert not token_may_go(target, Service.DEVOPS, url), url


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("arm_url", "https://management.azure.com"),
        ("devops_url", "https://dev.azure.com"),
        ("vssps_url", "https://app.vssps.visualstudio.com"),
        ("authority", "login.microsoftonline.com"),
        ("authority", "login.microsoftonline.us:443"),
        ("arm_url", "https://management.usgovcloudapi.net"),
        ("devops_url", "https://contoso.visualstudio.com"),
    ],
)
def test_a_connection_file_may_not_name_a_microsoft_host(
    tmp_path: Path, loopback: Loopback, field_name: str, value: str
) -> None:
    server = loopback.serve()
    path = _connection(tmp_path / "conn.json", server, ca=loopback.ca_bundle)
    data = json.loads(path.read_text())
    data[field_name] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=f"field '{field_name}' names the Microsoft host"):
        load_target(path)


def test_an_authority_must_be_a_bare_host(tmp_path: Path, loopback: Loopback) -> None:
    server = loopback.serve()
    path = _connection(tmp_path / "conn.json", server, ca=loopback.ca_bundle)
    for bad in ("https://127.0.0.1:8443", "127.0.0.1/evil", "user@127.0.0.1"):
        data = json.loads(path.read_text())
        data["authority"] = bad
        path.write_text(json.dumps(data))
        with pytest.raises(ConfigError, match="field 'authority' must be a host"):
            load_target(path)


def test_a_tenant_id_azure_identity_would_refuse_is_a_config_error(
    tmp_path: Path, loopback: Loopback
) -> None:
    server = loopback.serve()
    path = _connection(tmp_path / "conn.json", server, ca=loopback.ca_bundle)
    for bad in ("../../x", "tenant id", "", "a/b"):
        data = json.loads(path.read_text())
        data["tenant_id"] = bad
        path.write_text(json.dumps(data))
        with pytest.raises(ConfigError, match="field 'tenant_id'"):
            load_target(path)
    for good in ("7e1a6a0c-3c1d-4b8e-9f4a-1b2c3d4e5f60", "contoso.onmicrosoft.com"):
        data["tenant_id"] = good
        path.write_text(json.dumps(data))
        assert load_target(path).tenant_id == good


# --- defence in depth: the clients check where a token goes before attaching it ---------------


class _Recording:
    """A credential that records being asked (it must not be)."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.asked: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.asked.append(scopes)
        return AccessToken("real-cloud-token", 4070908800)


def test_arm_client_refuses_a_real_cloud_token_for_a_non_cloud_host(loopback: Loopback) -> None:
    server = loopback.serve()
    # a malformed cloud target naming a loopback host: the kind decides, and the host is not
    # the cloud's management host, so nothing is sent (SDK clients and raw requests alike)
    bent = replace(AZURE, arm_url=server.url, ca_bundle=str(loopback.ca_bundle))
    credential = _Recording(bent)
    arm = ArmClient(
        bent,
        credential,  # type: ignore[arg-type]
        session=make_session(workers=2, verify=str(loopback.ca_bundle)),
    )
    sub = "11111111-1111-1111-1111-111111111111"
    for call in (
        lambda: arm.get_identity(sub, "rg", "mi"),  # raw transport
        lambda: arm.delete_credential(sub, "rg", "mi", "fic"),  # management SDK pipeline
    ):
        with pytest.raises(PermanentError) as err:
            call()
        assert err.value.code == "TokenRefused"
        assert "real-cloud token" in str(err.value)
    assert credential.asked == [] and server.seen == []


def test_devops_client_refuses_a_real_cloud_token_for_a_non_cloud_host(
    loopback: Loopback,
) -> None:
    server = loopback.serve()
    bent = replace(AZURE, devops_url=server.url, ca_bundle=str(loopback.ca_bundle))
    credential = _Recording(bent)
    auth = DevOpsAuth(credential, target=bent, environ={"AZURE_DEVOPS_EXT_PAT": PAT})  # type: ignore[arg-type]
    devops = DevOpsClient(
        bent, auth, session=make_session(workers=2, verify=str(loopback.ca_bundle))
    )
    with pytest.raises(PermanentError) as err:
        devops.list_projects("contoso")
    assert err.value.code == "TokenRefused" and PAT not in str(err.value)
    assert credential.asked == [] and server.seen == []


def test_file_clients_refuse_to_send_the_file_token_to_a_cloud_host(
    tmp_path: Path, loopback: Loopback
) -> None:
    server = loopback.serve()
    target = load_target(_connection(tmp_path / "conn.json", server, ca=loopback.ca_bundle))
    credential = _Recording(target)
    arm = ArmClient(target, credential, session=make_session(workers=2, verify=True))  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match="connection file token"):
        arm._get("https://management.azure.com/subscriptions?api-version=2022-12-01", "x")
    auth = DevOpsAuth(credential, target=target, environ={"AZURE_DEVOPS_EXT_PAT": PAT})  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match="connection file token"):
        auth.header("https://dev.azure.com/contoso/_apis/projects")
    assert credential.asked == []


def test_a_credential_is_bound_to_its_target(tmp_path: Path, loopback: Loopback) -> None:
    server = loopback.serve()
    target = load_target(_connection(tmp_path / "conn.json", server, ca=loopback.ca_bundle))
    real = make_credential(AZURE, "cli")
    assert isinstance(real, CachedCredential) and real.target == AZURE
    with pytest.raises(ConfigError, match="cannot be used"):
        ArmClient(target, real, session=make_session(workers=2, verify=True))
    with pytest.raises(ConfigError, match="cannot be used"):
        DevOpsAuth(real, target=target)


def test_a_new_connection_names_the_target_cloud() -> None:
    """A connection created against ``--cloud usgovernment`` says so (its ``environment`` and
    ARM URL); one against the public cloud or a connection file keeps ``AzureCloud``."""
    from types import SimpleNamespace

    from reconciler.kinds.executors.service_connection import _cloud_of, connection_body

    after = {"name": "sc", "project": "p", "subscriptionId": "s", "subscriptionName": "S"}
    for target, environment, url in (
        (
            cloud_target("usgovernment"),
            "AzureUSGovernment",
            "https://management.usgovcloudapi.net/",
        ),
        (cloud_target("china"), "AzureChinaCloud", "https://management.chinacloudapi.cn/"),
        (AZURE, "AzureCloud", "https://management.azure.com/"),
        (replace(AZURE, kind=TargetKind.FILE), "AzureCloud", "https://management.azure.com/"),
    ):
        ctx = SimpleNamespace(services=SimpleNamespace(target=target))
        body = connection_body({}, after, "o", "c", "t", "p", **_cloud_of(ctx))  # type: ignore[arg-type]
        assert body["data"]["environment"] == environment
        assert body["url"] == url
