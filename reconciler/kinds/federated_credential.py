"""Federated identity credential: updated in place, writes under one identity serialised."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.kinds.base import (
    DELETE_THEN_CREATE,
    ChangeLike,
)
from reconciler.model import Address, Kind, credential_key


class FederatedCredentialKind:
    kind: Kind = Kind.FEDERATED_CREDENTIAL
    # issuer, subject and audiences change in place: a delete/create window breaks sign-in
    declared_fields: tuple[str, ...] = ("issuer", "subject", "audiences")
    immutable_fields: tuple[str, ...] = ()
    replace_action: str = DELETE_THEN_CREATE
    optional_fields: tuple[str, ...] = ()
    has_marker: bool = False

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

    def concurrency_key(self, change: ChangeLike) -> str | None:
        # Azure answers 409 to overlapping credential writes under one identity
        attrs = change.after or change.before or {}
        return self.identity_of(attrs)

    def is_destructive(self, action: str) -> bool:
        return False


KIND = FederatedCredentialKind()
