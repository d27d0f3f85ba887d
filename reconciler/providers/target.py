"""Where the tool talks to: a real Azure cloud, or the simulator its connection file describes.

A target's kind is explicit (``TargetKind``), never inferred from a name or a path: a
connection file is always a ``FILE`` target, however it is named; the real services are
chosen only by giving no connection file, and a sovereign cloud only by ``--cloud``.

Which credentials may go where is decided here, from the kind, and checked again by every
client where a token is attached (``check_token_destination``):

- a ``CLOUD`` target's tokens (Azure CLI, environment, managed identity, Azure Pipelines) go
  only over TLS to that cloud's management host and to Azure DevOps (``dev.azure.com``,
  ``*.visualstudio.com``);
- a ``FILE`` target's tokens come only from the file's own client credentials (its secret is
  sent only to the file's own authority) and go only to the file's own endpoints, which may
  not be Microsoft cloud hosts;
- the personal access token in ``$AZURE_DEVOPS_EXT_PAT`` goes only over TLS to
  ``dev.azure.com`` or ``*.visualstudio.com`` (``is_devops_host``), for a ``CLOUD`` target.
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from reconciler.errors import ConfigError, PermanentError

TARGET_ENV: Final = "RECONCILER_TARGET"
_FIELDS: Final = ("arm_url", "devops_url", "authority", "tenant_id", "client_id", "client_secret")


class TargetKind(enum.Enum):
    CLOUD = "cloud"  # the real Azure and Azure DevOps of one cloud (``Cloud``)
    FILE = "file"  # the endpoints and client credentials of a connection file (the simulator)


class Service(enum.Enum):
    ARM = "Azure Resource Manager"
    DEVOPS = "Azure DevOps"


@dataclass(frozen=True)
class Cloud:
    """One Azure cloud's documented hosts.

    Sources: management endpoints and login authorities as listed by ``az cloud show --name
    AzureCloud|AzureUSGovernment|AzureChinaCloud`` and azure-identity's ``AzureAuthorityHosts``;
    service connection environments as Azure DevOps names them (``AzureCloud``,
    ``AzureUSGovernment``, ``AzureChinaCloud``). Azure DevOps Services itself runs only in the
    public cloud (``dev.azure.com``), whatever cloud the subscriptions are in.
    """

    name: str
    arm_url: str
    login_host: str
    environment: str
    devops_url: str = "https://dev.azure.com"
    vssps_url: str = "https://app.vssps.visualstudio.com"
    # the audit log's host [spec: vsts-rest-api-specs specification/audit/7.1/audit.json]
    audit_url: str = "https://auditservice.dev.azure.com"


CLOUDS: Final = {
    "public": Cloud(
        "public", "https://management.azure.com", "login.microsoftonline.com", "AzureCloud"
    ),
    "usgovernment": Cloud(
        "usgovernment",
        "https://management.usgovcloudapi.net",
        "login.microsoftonline.us",
        "AzureUSGovernment",
    ),
    "china": Cloud(
        "china", "https://management.chinacloudapi.cn", "login.chinacloudapi.cn", "AzureChinaCloud"
    ),
}
DEFAULT_CLOUD: Final = "public"
DEVOPS_HOST: Final = "dev.azure.com"
# the audit log's host: Azure DevOps Services, reached with the same tokens and PATs
AUDIT_HOST: Final = "auditservice.dev.azure.com"
_DEVOPS_SUFFIX: Final = ".visualstudio.com"
# a connection file may name none of these (or a host under them): they are Microsoft's
_MICROSOFT_DOMAINS: Final = (
    "azure.com",
    "visualstudio.com",
    "microsoftonline.com",
    "microsoftonline.us",
    "usgovcloudapi.net",
    "chinacloudapi.cn",
    "windows.net",
    "microsoft.com",
    "azure.us",
    "azure.cn",
)


@dataclass(frozen=True)
class Target:
    arm_url: str
    devops_url: str
    authority: str
    tenant_id: str
    client_id: str
    # repr=False: a Target may end up in a traceback or a debug print
    client_secret: str = field(repr=False)
    ca_bundle: str | None
    # for messages only ("Azure public cloud", or the connection file's path): never decides
    name: str
    # Azure DevOps' organisation-independent host (profile, accounts); "" when a connection
    # file names none, and then organisations cannot be resolved from their ids
    vssps_url: str = ""
    # Azure DevOps' audit service (``auditservice.dev.azure.com``); "" when a connection file
    # names none, and then the audit log cannot be read
    audit_url: str = ""
    # what this target is (required, never derived): decides which credentials are used and
    # where tokens may go
    kind: TargetKind = field(kw_only=True)
    # the cloud of a CLOUD target (a key of CLOUDS); "public" for a FILE target, whose
    # simulator answers as the public cloud does
    cloud: str = field(default=DEFAULT_CLOUD, kw_only=True)

    @property
    def is_cloud(self) -> bool:
        return self.kind is TargetKind.CLOUD

    @property
    def environment(self) -> str:
        """The Azure DevOps service connection ``environment`` for subscriptions here."""
        return CLOUDS[self.cloud].environment


def cloud_target(name: str = DEFAULT_CLOUD) -> Target:
    """The real Azure and Azure DevOps of cloud ``name`` (a key of ``CLOUDS``)."""
    cloud = CLOUDS.get(name)
    if cloud is None:
        raise ConfigError(f"unknown cloud {name!r}; choose one of {', '.join(CLOUDS)}")
    return Target(
        arm_url=cloud.arm_url,
        devops_url=cloud.devops_url,
        authority=cloud.login_host,
        tenant_id="",
        client_id="",
        client_secret="",
        ca_bundle=None,
        name=f"Azure {name} cloud",
        vssps_url=cloud.vssps_url,
        audit_url=cloud.audit_url,
        kind=TargetKind.CLOUD,
        cloud=name,
    )


AZURE: Final = cloud_target(DEFAULT_CLOUD)


# --- where tokens may go ----------------------------------------------------------------------


def _tls_host(url: str) -> str | None:
    """The lower-case host of an ``https://`` URL on the default port with no user info, else
    None (a bearer token or a PAT is only ever sent to such a URL)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() != "https" or parts.username is not None or parts.password is not None:
        return None
    if port not in (None, 443) or not parts.hostname:
        return None
    return parts.hostname.lower()


def is_devops_host(url: str) -> bool:
    """True for ``https://dev.azure.com/...``, ``https://auditservice.dev.azure.com/...`` and
    ``https://{name}.visualstudio.com/...`` only (default port, no user info): the Azure DevOps
    Services hosts (learn.microsoft.com, "Allowed IP addresses and domain URLs"; the audit
    log's host from its REST reference). The only place a PAT may be sent."""
    host = _tls_host(url)
    if host is None:
        return False
    if host in (DEVOPS_HOST, AUDIT_HOST):
        return True
    # any name under visualstudio.com (organisations, app.vssps), each label non-empty
    labels = host.removesuffix(_DEVOPS_SUFFIX)
    return host.endswith(_DEVOPS_SUFFIX) and all(labels.split("."))


def is_microsoft_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in _MICROSOFT_DOMAINS)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def token_may_go(target: Target, service: Service, url: str) -> bool:
    """Whether a token of ``target``'s credential for ``service`` may be attached to ``url``."""
    host = _tls_host(url)
    if target.kind is TargetKind.CLOUD:
        cloud = CLOUDS.get(target.cloud)
        if cloud is None or host is None:
            return False
        if service is Service.ARM:
            return host == _tls_host(cloud.arm_url)
        return is_devops_host(url)
    # a FILE target: only the file's own endpoints over TLS, never a Microsoft host
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    if parts.scheme.lower() != "https" or not parts.hostname or is_microsoft_host(parts.hostname):
        return False
    if parts.username is not None or parts.password is not None:
        return False
    own = (
        [target.arm_url]
        if service is Service.ARM
        else [target.devops_url, target.vssps_url, target.audit_url]
    )
    return _origin(url) in {_origin(u) for u in own if u}


def check_token_destination(target: Target, service: Service, url: str) -> None:
    """Raise ``PermanentError`` (code ``TokenRefused``) unless ``token_may_go``; the message
    names the origin, never a token."""
    if not token_may_go(target, service, url):
        parts = urlsplit(url)
        kind = "real-cloud" if target.is_cloud else "connection file"
        raise PermanentError(
            f"refusing to send a {kind} token for {service.value} to "
            f"{parts.scheme}://{parts.hostname or '?'}: it is not one of this target's "
            f"{service.value} hosts ({target.name})",
            code="TokenRefused",
        )


# --- choosing the target ----------------------------------------------------------------------


def resolve_target(
    path: str | None,
    *,
    cloud: str | None = None,
    auth: str = "auto",
    warn: Callable[[str], None] | None = None,
) -> Target:
    """The connection file at ``path``, else at ``$RECONCILER_TARGET`` (a ``FILE`` target,
    whatever its name); else the real services of ``cloud`` (default public).

    ``cloud`` and ``auth`` (other than ``auto``) choose among the real cloud's hosts and
    credentials, which a connection file never gets. Given together with ``--target`` (one
    command line contradicting itself) they are a ``ConfigError``. With the file from
    ``$RECONCILER_TARGET`` they are announced through ``warn`` and not used: the variable is
    how an unchanged command (a pipeline template's ``--auth pipelines``) is pointed at the
    simulator. Raises ``ConfigError`` for anything ``load_target`` refuses."""
    chosen = path or os.environ.get(TARGET_ENV) or None
    if chosen is None:
        return cloud_target(cloud or DEFAULT_CLOUD)
    origin = "--target" if path else f"${TARGET_ENV}"
    ignored = [f"--cloud {cloud}"] if cloud is not None else []
    ignored += [f"--auth {auth}"] if auth != "auto" else []
    if ignored and path:
        raise ConfigError(
            f"{' and '.join(ignored)} chose the real Azure services, and --target {path!r} is "
            "a connection file, which only ever signs in with its own client credentials at its "
            "own endpoints: drop one of them"
        )
    target = load_target(Path(chosen), origin=origin)
    if ignored and warn is not None:
        warn(
            f"{' and '.join(ignored)} not used: ${TARGET_ENV} names the connection file "
            f"{chosen!r}, which only ever signs in with its own client credentials at its own "
            "endpoints"
        )
    return target


def effective_auth(target: Target, auth: str) -> str:
    """``auth`` for a cloud target; ``auto`` for a connection file (whose own client is the
    only credential it ever gets; ``resolve_target`` has refused or announced the option)."""
    return auth if target.is_cloud else "auto"


def load_target(path: Path, *, origin: str = "--target") -> Target:
    """A ``FILE`` target from a connection file (JSON written by ``reconciler sim serve``).

    Raises ``ConfigError`` naming the file and field: missing or empty fields, endpoints that
    are not ``https://`` URLs, an ``authority`` that is not a bare ``host[:port]``, any endpoint
    on a Microsoft cloud host (a connection file is a simulator; the real services are chosen by
    giving no file), or a missing CA bundle."""
    where = f"target file {str(path)!r} (from {origin})"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{where} does not exist; start the simulator (reconciler sim serve) or fix the path"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror}") from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{where}:1: nested too deeply for a connection file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object with the connection fields")
    values: dict[str, str] = {}
    for name in (*_FIELDS, "ca_bundle"):
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            problem = "is missing" if value is None else "must be a non-empty string"
            raise ConfigError(f"{where}: field {name!r} {problem}")
        values[name] = value.strip()
    for name in ("arm_url", "devops_url"):
        # bearer tokens are only ever sent over TLS (azure-core refuses plain http anyway)
        if not values[name].startswith("https://"):
            raise ConfigError(f"{where}: field {name!r} must be an https:// URL")
        values[name] = values[name].rstrip("/")
    vssps = data.get("vssps_url")
    if vssps is not None and (not isinstance(vssps, str) or not vssps.startswith("https://")):
        raise ConfigError(f"{where}: field 'vssps_url' must be an https:// URL")
    audit = data.get("audit_url")
    if audit is not None and (not isinstance(audit, str) or not audit.startswith("https://")):
        raise ConfigError(f"{where}: field 'audit_url' must be an https:// URL")
    authority = values["authority"]
    try:
        authority_host = urlsplit(f"https://{authority}").hostname
        bare = "/" not in authority and "@" not in authority and authority_host is not None
    except ValueError:
        bare = False
    if not bare:
        raise ConfigError(
            f"{where}: field 'authority' must be a host[:port], such as 127.0.0.1:8443"
        )
    hosts = {
        "arm_url": urlsplit(values["arm_url"]).hostname or "",
        "devops_url": urlsplit(values["devops_url"]).hostname or "",
        "vssps_url": urlsplit(vssps).hostname or "" if vssps else "",
        "audit_url": urlsplit(audit).hostname or "" if audit else "",
        "authority": authority_host or "",
    }
    for name, host in hosts.items():
        if host and is_microsoft_host(host):
            raise ConfigError(
                f"{where}: field {name!r} names the Microsoft host {host!r}: a connection file "
                "describes a simulator; to use the real services give no --target (and "
                "unset $RECONCILER_TARGET)"
            )
    # azure-identity refuses any other tenant (``validate_tenant_id``); say so here, as for the
    # other fields, rather than as an internal error on the first sign-in
    if not re.fullmatch(r"[0-9A-Za-z.-]+", values["tenant_id"]):
        raise ConfigError(
            f"{where}: field 'tenant_id' must be a tenant id (a GUID) or a domain name: "
            "letters, digits, '-' and '.' only"
        )
    ca = Path(values["ca_bundle"])
    if not ca.is_absolute():
        ca = path.parent / ca
    if not ca.is_file():
        raise ConfigError(f"{where}: field 'ca_bundle': no such file {str(ca)!r}")
    return Target(
        arm_url=values["arm_url"],
        devops_url=values["devops_url"],
        authority=values["authority"],
        tenant_id=values["tenant_id"],
        client_id=values["client_id"],
        client_secret=values["client_secret"],
        ca_bundle=str(ca),
        name=str(path),
        vssps_url=(vssps or "").strip().rstrip("/"),
        audit_url=(audit or "").strip().rstrip("/"),
        kind=TargetKind.FILE,
    )
