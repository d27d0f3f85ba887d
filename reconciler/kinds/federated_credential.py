"""Federated identity credential: updated in place, writes under one identity serialised."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler.kinds.base import DELETE_THEN_CREATE, identity_label, short_name
from reconciler.model import Address, Kind, credential_key


class FederatedCredentialKind:
    kind: Kind = Kind.FEDERATED_CREDENTIAL
    # issuer, subject and audiences change in place: a delete/create window breaks sign-in
    declared_fields: tuple[str, ...] = ("issuer", "subject", "audiences")
    immutable_fields: tuple[str, ...] = ()
    replace_action: str | None = DELETE_THEN_CREATE
    optional_fields: tuple[str, ...] = ()
    has_marker: bool = False
    noun: str = "federated credential"
    shown_fields: tuple[str, ...] = ("issuer", "subject", "audiences")
    # a credential is destructive only when a live connection signs in with it
    destructive_warning: str = (
        "!! DESTRUCTIVE: a service connection stops working; apply needs --allow-destroy"
    )

    def natural_key(self, attrs: Mapping[str, Any]) -> str:
        return credential_key(attrs["identity"], attrs["name"])

    def canonical(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        audiences = attrs.get("audiences")
        return {
            "issuer": attrs.get("issuer"),
            "subject": attrs.get("subject"),
            "audiences": audiences if not isinstance(audiences, list) else sorted(audiences),
        }

    def dependencies(self, attrs: Mapping[str, Any]) -> tuple[Address, ...]:
        deps = [Address(Kind.IDENTITY, attrs["identity"])]
        if attrs.get("serviceConnection"):
            # Azure DevOps generates issuer and subject: the connection comes first
            deps.append(Address(Kind.SERVICE_CONNECTION, attrs["serviceConnection"]))
        return tuple(deps)

    def identity_of(self, attrs: Mapping[str, Any]) -> str | None:
        value = attrs.get("identity")
        return str(value) if value else None

    def is_destructive(self, action: str) -> bool:
        return False

    def title(self, change: Mapping[str, Any]) -> str:
        attrs = change.get("after") or change.get("before") or {}
        return f"federated_credential {attrs.get('name')} on {short_name(attrs.get('identity'))}"

    def display(
        self, address: Address, attrs: Mapping[str, Any], label: Callable[[str], str | None]
    ) -> str | None:
        parts = address.key.split("/")
        if len(parts) != 4:
            return None
        return f"{identity_label('/'.join(parts[:3]), label)}/{attrs.get('name') or parts[3]}"

    def identity_in_key(self, address: Address) -> str | None:
        return address.key.rpartition("/")[0]


KIND = FederatedCredentialKind()
