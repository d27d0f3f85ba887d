"""``reconciler output``: the live ids a pipeline or an application needs, per declared object.

Pure: built from the desired and the live state the shell observed. The JSON shape is described
in README.md ("reconciler output") and versioned by ``OUTPUTS_VERSION``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from reconciler.kinds import REGISTRY
from reconciler.model import DesiredState, LiveState

OUTPUTS_VERSION: Final = "1.0"


def collect_outputs(
    desired: DesiredState, live: LiveState, *, tenant_id: str = ""
) -> dict[str, Any]:
    """For each declared identity and service connection, its live ids, or ``present: false``.

    Identity: ``clientId``, ``principalId``, ``tenantId`` (the identity's, else ``tenant_id``),
    ``id`` (the ARM resource id). Connection: ``id``, ``issuer``, ``subject``,
    ``identityClientId`` (the client id the connection signs in as), ``tenantId`` and the
    declared ``identity`` address. ``complete`` is false when any declared object is missing.
    """
    sections: dict[str, list[dict[str, Any]]] = {}
    for spec in REGISTRY.values():
        if spec.output_section is None:
            continue
        listed = sections.setdefault(spec.output_section, [])
        for resource in desired.of_kind(spec.kind):
            found = live.resources.get(resource.address)
            listed.append(spec.output(resource, found, tenant_id))
    identities, connections = sections["identities"], sections["serviceConnections"]
    missing = [o["address"] for o in (*identities, *connections) if not o["present"]]
    return {
        "outputs_version": OUTPUTS_VERSION,
        "owner": desired.owner,
        "complete": not missing,
        "missing": missing,
        "identities": identities,
        "serviceConnections": connections,
    }


_IDENTITY_FIELDS: Final = ("clientId", "principalId", "tenantId", "id")
_CONNECTION_FIELDS: Final = ("id", "issuer", "subject", "identityClientId", "tenantId")


def _block(title: str, item: Mapping[str, Any], fields: tuple[str, ...]) -> list[str]:
    if not item["present"]:
        return [f"{title}: missing (not created yet: apply the specs)"]
    width = max(len(f) for f in fields)
    return [title] + [f"  {f.ljust(width)} = {item.get(f) or '(none)'}" for f in fields]


def render_outputs(document: Mapping[str, Any], fmt: str = "text") -> str:
    """``json`` (stable: sorted keys) or ``text`` (one block per object)."""
    if fmt == "json":
        return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    lines: list[str] = []
    for item in document.get("identities") or []:
        where = f"{item['subscription']}/{item['resourceGroup']}"
        lines += _block(f"identity {item['name']} ({where})", item, _IDENTITY_FIELDS)
        lines.append("")
    for item in document.get("serviceConnections") or []:
        title = f"service_connection {item['organization']}/{item['project']}/{item['name']}"
        lines += _block(title, item, _CONNECTION_FIELDS)
        lines.append("")
    missing = document.get("missing") or []
    if missing:
        lines.append(f"{len(missing)} declared object{'s' if len(missing) != 1 else ''} missing.")
    elif not lines:
        lines.append("The specs declare no identity and no service connection.")
    else:
        lines.pop()
    return "\n".join(lines) + "\n"
