"""The federated credential's executor: PUT and DELETE under its identity through the
``CredentialPort``, with the issuer and subject a service connection generated resolved at
apply time. Writes under one identity never overlap (Azure answers 409 to concurrent ones)
and count against the Managed Identity service's per-subscription rate limit."""

from __future__ import annotations

import contextlib
from typing import Any

from reconciler.changes import Action, Change
from reconciler.errors import NotFoundError, PermanentError
from reconciler.kinds.executors.context import (
    ApplyContext,
    ExecutorDefaults,
    check_generated_pair,
    guard_identity,
    identity_path,
    known,
    lagging,
    step,
)
from reconciler.kinds.executors.decoding import LiveIndex, Raw
from reconciler.model import Address, DesiredState, Kind, LiveState, credential_key


class FederatedCredentialExecutor(ExecutorDefaults):
    kind: Kind = Kind.FEDERATED_CREDENTIAL

    def perform(self, change: Change, ctx: ApplyContext) -> dict[str, Any]:
        return _perform_credential(change, ctx)

    def decode(self, raw: Raw, index: LiveIndex, desired: DesiredState) -> None:
        """The credentials listed under identities that are declared or this owner's; they
        carry their identity's marker."""
        for ident, creds in sorted(raw.credentials.items()):
            for cred in sorted(creds, key=lambda c: str(c.get("name", "")).lower()):
                props = cred.get("properties") or {}
                name = str(cred.get("name", "")).rsplit("/", 1)[-1]
                attrs = {
                    "identity": ident,
                    "name": name,
                    "issuer": props.get("issuer"),
                    "subject": props.get("subject"),
                    "audiences": sorted(props.get("audiences") or []),
                    "id": cred.get("id"),
                }
                index.add(
                    Kind.FEDERATED_CREDENTIAL,
                    credential_key(ident, name),
                    attrs,
                    index.identity_owner.get(ident),
                    cred,
                )

    def lane(self, change: Change) -> str:
        """Its identity's subscription's Managed Identity limit (2 writes per second)."""
        attrs = change.after or change.before or {}
        subscription = str(attrs.get("identity") or change.address.key).split("/", 1)[0]
        return f"managed-identity:{subscription.lower()}"

    def concurrency_key(self, change: Change) -> str | None:
        """Its identity: writes under one identity's credentials must not overlap."""
        attrs = change.after or change.before or {}
        identity = attrs.get("identity")
        if isinstance(identity, str) and identity:
            return f"identity:{identity.lower()}"
        # the credential key is "{identity key}/{name}"
        return f"identity:{change.address.key.rpartition('/')[0]}"

    def out_of_sight(
        self, address: Address, owner: str, owned: set[Address], after: LiveState
    ) -> bool:
        """Read only under an identity that is declared or this owner's: when that identity
        lost this owner's marker (reported itself), its credentials are out of sight."""
        parent = Address(Kind.IDENTITY, address.key.rsplit("/", 1)[0])
        found = after.resources.get(parent)
        return parent in owned and (found is None or found.owner != owner)


EXECUTOR = FederatedCredentialExecutor()


def _perform_credential(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    action = change.action
    if action is Action.DELETE:
        _delete_credential(change, ctx)
        return {}
    if action is Action.DELETE_THEN_CREATE:
        step(ctx, change, "delete old", lambda: _delete_credential(change, ctx))
        return step(ctx, change, "create new", lambda: _put_credential(change, ctx))
    if action is Action.CREATE_THEN_DELETE and change.before is not None:
        result = step(ctx, change, "create new", lambda: _put_credential(change, ctx))
        step(ctx, change, "delete old", lambda: _delete_credential(change, ctx))
        return result
    return _put_credential(change, ctx)


def _issuer_and_subject(change: Change, ctx: ApplyContext) -> tuple[str, str]:
    """The pair to write: the plan's, or (known after apply) what the service connection that
    implies the credential reports; a connection's pair is checked to be one Azure DevOps
    generates for it (``check_generated_pair``)."""
    after = change.after or {}
    issuer, subject = after.get("issuer"), after.get("subject")
    connection = after.get("serviceConnection")
    if not connection:
        if known(issuer) and known(subject):
            return str(issuer), str(subject)
        raise PermanentError(
            f"{change.address}: issuer and subject are unknown and no service connection "
            "implies them",
            code="Plan",
        )
    # the connection's own values, read back after it was written (either issuer format)
    address = Address(Kind.SERVICE_CONNECTION, str(connection))
    source: dict[str, Any] = {}
    live = ctx.live.resources.get(address)
    if live is not None:
        source.update(live.attrs)
    source.update(ctx.result(address) or {})
    issuer = issuer if known(issuer) else source.get("issuer")
    subject = subject if known(subject) else source.get("subject")
    if not (known(issuer) and known(subject)):
        raise PermanentError(
            f"{change.address}: service connection {connection} reported no workload identity "
            "issuer and subject",
            code="IssuerUnknown",
        )
    check_generated_pair(
        ctx,
        (issuer, subject),
        organization=str(connection).split("/", 1)[0],
        connection_id=source.get("id"),
        tenant_id=source.get("tenantId"),
        connection=str(connection),
        identity=str(after.get("identity")),
        project=source.get("project"),
        name=source.get("name"),
    )
    return str(issuer), str(subject)


def _put_credential(change: Change, ctx: ApplyContext) -> dict[str, Any]:
    after = change.after or {}
    ident_key = str(after["identity"])
    sub, rg, ident = identity_path(ctx, ident_key)
    issuer, subject = _issuer_and_subject(change, ctx)
    audiences = sorted(after.get("audiences") or [])
    body = {"properties": {"issuer": issuer, "subject": subject, "audiences": audiences}}
    name = str(after["name"])
    # (not after this change deleted it: a replace writes afresh)
    done = ctx.result(change.address) if change.action in (Action.CREATE, Action.UPDATE) else None
    if done is not None and (
        done.get("issuer"),
        done.get("subject"),
        sorted(done.get("audiences") or []),
    ) == (issuer, subject, audiences):
        # its service connection's change wrote it in this run (before pointing the
        # connection at it): writing it again would restart its propagation in Entra
        return {**done, "identity": ident_key, "name": name}
    try:
        raw = ctx.services.arm.put_credential(sub, rg, ident, name, body)
    except NotFoundError as exc:
        # the parent identity may have just been created
        raise lagging(ctx, exc, ident_key, f"identity {ident}") from None
    return {
        "identity": ident_key,
        "name": name,
        "issuer": issuer,
        "subject": subject,
        "audiences": audiences,
        "id": raw.get("id"),
    }


def _delete_credential(change: Change, ctx: ApplyContext) -> None:
    before = change.before or {}
    ident_key = str(before["identity"])
    sub, rg, ident = identity_path(ctx, ident_key)
    # a credential has no marker of its own: its identity must still be ours (or adopted)
    if not guard_identity(ctx, ident_key, of=f" (parent of {change.address})"):
        return  # a missing identity took its credentials with it
    with contextlib.suppress(NotFoundError):
        ctx.services.arm.delete_credential(sub, rg, ident, str(before["name"]))
