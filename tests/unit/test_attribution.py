"""The pure half of incremental drift: baseline parsing, which identities the Activity Log
names, and who made a change (reconciler/attribution.py)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.attribution import (
    ACTIVITY_LOG,
    AUDIT_LOG,
    Baseline,
    BaselineError,
    OrganizationBaseline,
    SubscriptionBaseline,
    activity_events,
    attribute,
    audit_coverage,
    audit_events,
    auditing_switched_off,
    identity_of,
    iso,
    latest_change,
    parse_baseline,
    provider_of,
    touched_identities,
)

SUB = "11111111-1111-1111-1111-111111111111"
IDENT = (
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/"
    "userAssignedIdentities/mi"
)
CRED = f"{IDENT}/federatedIdentityCredentials/gh"
RA = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/g"


def _event(resource: str, operation: str, status: str, caller: str, at: str) -> dict[str, Any]:
    return {
        "resourceId": resource,
        "operationName": {"value": operation, "localizedValue": operation},
        "status": {"value": status},
        "caller": caller,
        "eventTimestamp": at,
    }


MSI = "Microsoft.ManagedIdentity/userAssignedIdentities"


def test_touched_identities_names_the_identity_of_any_msi_event_whatever_its_status() -> None:
    other = IDENT.replace("/mi", "/other")
    third = IDENT.replace("/mi", "/third")
    events = activity_events(
        [
            _event(
                CRED,
                f"{MSI}/federatedIdentityCredentials/write",
                "Failed",
                "a",
                "2026-11-30T10:00:00Z",
            ),
            _event(other.upper(), f"{MSI}/delete", "Started", "b", "2026-11-30T10:00:01Z"),
            _event(
                RA,
                "Microsoft.Authorization/roleAssignments/write",
                "Succeeded",
                "c",
                "2026-11-30T10:00:02Z",
            ),
            _event(third, f"{MSI}/write", "Succeeded", "d", "not a time"),
        ]
    )
    assert touched_identities(events) == {IDENT.lower(), other.lower()}


def test_identity_and_provider_of_ids() -> None:
    assert identity_of(CRED) == IDENT.lower()
    assert identity_of(IDENT + "/") == IDENT.lower()
    assert identity_of(RA) is None
    assert provider_of(CRED) == "Microsoft.ManagedIdentity"
    scoped = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v"
    assert provider_of(f"{scoped}/providers/Microsoft.Authorization/roleAssignments/g") == (
        "Microsoft.Authorization"
    )


def test_latest_successful_change_wins_and_a_parent_delete_counts() -> None:
    events = activity_events(
        [
            _event(
                CRED,
                f"{MSI}/federatedIdentityCredentials/write",
                "Succeeded",
                "alice",
                "2026-11-30T10:00:00Z",
            ),
            _event(
                CRED,
                f"{MSI}/federatedIdentityCredentials/write",
                "Failed",
                "mallory",
                "2026-11-30T11:00:00Z",
            ),
            _event(
                CRED,
                f"{MSI}/federatedIdentityCredentials/write",
                "Started",
                "mallory",
                "2026-11-30T11:00:00Z",
            ),
            _event(IDENT, f"{MSI}/write", "Succeeded", "bob", "2026-11-30T12:00:00Z"),
        ]
    )
    found = latest_change(events, CRED.upper())
    assert found is not None and found.caller == "alice"
    # the identity deleted later: the credential went with it
    events += activity_events(
        [_event(IDENT, f"{MSI}/delete", "Succeeded", "carol", "2026-11-30T13:00:00.1234567Z")]
    )
    found = latest_change(events, CRED)
    assert found is not None and found.caller == "carol" and found.operation == f"{MSI}/delete"
    assert attribute(found, "x").to_json() == {
        "caller": "carol",
        "time": "2026-11-30T13:00:00.1234567Z",
        "operation": f"{MSI}/delete",
        "status": "Succeeded",
        "source": ACTIVITY_LOG,
    }
    assert latest_change(events, RA) is None
    assert attribute(None, "because").to_json() == {"caller": None, "unknown": "because"}


def test_audit_entries_name_connections_and_auditing_switched_off_after_them() -> None:
    conn = "0c7a5f0e-8d8b-4f7e-9a53-2f0b1f6c9d21"
    entries = [
        {
            "actionId": "Library.ServiceConnectionModified",
            "timestamp": "2026-11-30T10:00:00Z",
            "actorUPN": "eve@contoso.com",
            "actorDisplayName": "Eve",
            "data": {"ConnectionId": conn.upper()},
        },
        {
            "actionId": "Pipelines.ResourceAuthorizedForPipeline",
            "timestamp": "2026-11-30T11:00:00Z",
            "actorDisplayName": "build-bot",
            "data": {"ResourceType": "endpoint", "ResourceId": conn, "PipelineId": 3},
        },
        {
            "actionId": "OrganizationPolicy.PolicyValueUpdated",
            "timestamp": "2026-11-30T12:00:00Z",
            "actorUPN": "admin@contoso.com",
            "data": {"PolicyName": "Policy.LogAuditEvents", "PolicyValue": "Off"},
        },
    ]
    found = latest_change(audit_events(entries), conn)
    assert found is not None
    assert (found.caller, found.operation, found.source) == (
        "build-bot",
        "Pipelines.ResourceAuthorizedForPipeline",
        AUDIT_LOG,
    )
    assert auditing_switched_off(entries, found.at) == ("2026-11-30T12:00:00Z", "admin@contoso.com")
    assert auditing_switched_off(entries[:2]) is None
    turned_on = {
        **entries[2],
        "timestamp": "2026-11-30T09:00:00Z",
        "data": {"PolicyName": "Policy.LogAuditEvents", "PolicyValue": "On"},
    }
    assert auditing_switched_off([*entries[:2], turned_on]) is None


def test_baseline_round_trip() -> None:
    baseline = Baseline(owner="platform-team", tenant="t")
    baseline.subscriptions[SUB] = SubscriptionBaseline(
        1_796_000_000.0,
        {IDENT.lower(): ("p", [{"name": "gh", "properties": {"issuer": "i"}}])},
        groups=["rg"],
    )
    baseline.subscriptions["22222222-2222-2222-2222-222222222222"] = SubscriptionBaseline(
        1_796_000_000.0
    )
    baseline.organizations["contoso"] = OrganizationBaseline(
        1_796_000_000.0, {"0c7a5f0e-8d8b-4f7e-9a53-2f0b1f6c9d21": {"allPipelines": None}}
    )
    baseline.objects["identity.x"] = ("/id", "abc")
    document = baseline.to_json(written=1_796_000_100.0)
    baseline.written = 1_796_000_100.0
    assert parse_baseline(document) == baseline


def _audit(action: str, at: str, **data: Any) -> dict[str, Any]:
    return {"actionId": action, "timestamp": at, "actorUPN": "admin@contoso.com", "data": data}


def test_the_audit_log_covers_a_window_only_with_the_last_reads_entry_and_no_policy_change() -> (
    None
):
    last = 1_796_000_000.0
    after = iso(last + 60)
    before = iso(last - 3600)
    access = _audit("AuditLog.AccessLog", after)
    assert audit_coverage([access], last_read=last, margin_s=300) is None
    # an empty answer (auditing off answers 200 with nothing) proves nothing
    assert "no entry of the last run reading it" in str(
        audit_coverage([], last_read=last, margin_s=300)
    )
    # an older read is not the last run's
    old = _audit("AuditLog.AccessLog", before)
    assert audit_coverage([old], last_read=last, margin_s=300) is not None
    # the policy changed since: off for a while, even if on again now
    flip = _audit(
        "OrganizationPolicy.PolicyValueUpdated",
        after,
        PolicyName="Policy.LogAuditEvents",
        PolicyValue="On",
    )
    why = audit_coverage([access, flip], last_read=last, margin_s=300)
    assert why is not None and "set to On" in why and "admin@contoso.com" in why


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "the baseline: expected dict"),
        ({"format": "other"}, "format: not 'reconciler-drift-baseline'"),
        ({"format": "reconciler-drift-baseline", "version": 2}, "version: 2 is not a version"),
        (
            {
                "format": "reconciler-drift-baseline",
                "version": 1,
                "owner": "o",
                "tenant": "t",
                "subscriptions": {"s": {"checked": "yesterday"}},
            },
            "subscriptions.s.checked: not an ISO 8601 time",
        ),
        (
            {
                "format": "reconciler-drift-baseline",
                "version": 1,
                "owner": "o",
                "tenant": "t",
                "subscriptions": {
                    "s": {
                        "checked": "2026-11-30T10:00:00Z",
                        "identities": {"i": {"credentials": "x"}},
                    }
                },
            },
            "subscriptions.s.identities.i.credentials: expected list",
        ),
    ],
)
def test_a_bad_baseline_names_what_is_wrong(document: Any, message: str) -> None:
    with pytest.raises(BaselineError, match=message.replace(".", r"\.")):
        parse_baseline(document)
