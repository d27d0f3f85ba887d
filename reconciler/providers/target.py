"""Where the tool talks to: real Azure, or the simulator described by its connection file.

Only endpoints, authority, CA and (for the simulator) the client credentials differ between
the two; every other code path is the same.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from reconciler.errors import ConfigError

TARGET_ENV: Final = "RECONCILER_TARGET"
AZURE_NAME: Final = "azure"
_FIELDS: Final = ("arm_url", "devops_url", "authority", "tenant_id", "client_id", "client_secret")


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
    # "azure" for the real services, else the connection file's path
    name: str
    # Azure DevOps' organisation-independent host (profile, accounts); "" when a connection
    # file names none, and then organisations cannot be resolved from their ids
    vssps_url: str = ""

    @property
    def is_azure(self) -> bool:
        return self.name == AZURE_NAME


AZURE: Final = Target(
    arm_url="https://management.azure.com",
    devops_url="https://dev.azure.com",
    authority="login.microsoftonline.com",
    tenant_id="",
    client_id="",
    client_secret="",
    ca_bundle=None,
    name=AZURE_NAME,
    vssps_url="https://app.vssps.visualstudio.com",
)


def resolve_target(path: str | None) -> Target | None:
    """The target from ``path``, else from ``$RECONCILER_TARGET``, else None (real Azure)."""
    chosen = path or os.environ.get(TARGET_ENV) or None
    if chosen is None:
        return None
    origin = "--target" if path else f"${TARGET_ENV}"
    return load_target(Path(chosen), origin=origin)


def load_target(path: Path, *, origin: str = "--target") -> Target:
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
    )
