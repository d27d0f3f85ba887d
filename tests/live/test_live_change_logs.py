"""Optional: confirm against a real tenant what the simulator assumes about the Activity Log
and the Azure DevOps audit log (reconciler/sim/README.md, "Change logs").

Runs only with RECONCILER_LIVE=1 and RECONCILER_LIVE_SUBSCRIPTION (a subscription the
credentials may read the Activity Log of; its log should hold a write by a service principal
in the last 90 days for the caller check), with credentials the tool can find (Azure CLI login,
environment, managed identity). The audit log checks also need RECONCILER_LIVE_ORG (an Azure
DevOps organisation) and, for the one about auditing being off, RECONCILER_LIVE_AUDIT=on|off
(what that organisation's "Log Audit Events" policy is). Read-only: nothing is written. Azure
cannot be reached from CI, so CI skips these.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.errors import PermanentError

LIVE = os.environ.get("RECONCILER_LIVE") == "1"
SUBSCRIPTION = os.environ.get("RECONCILER_LIVE_SUBSCRIPTION", "")
ORG = os.environ.get("RECONCILER_LIVE_ORG", "")
AUDIT = os.environ.get("RECONCILER_LIVE_AUDIT", "")
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
OID = "http://schemas.microsoft.com/identity/claims/objectidentifier"

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (LIVE and SUBSCRIPTION),
        reason="live Azure test: set RECONCILER_LIVE=1 and RECONCILER_LIVE_SUBSCRIPTION (no Azure here)",
    ),
]
needs_org = pytest.mark.skipif(not ORG, reason="set RECONCILER_LIVE_ORG to check the audit log")


@pytest.fixture(scope="module")
def services():  # type: ignore[no-untyped-def]
    from reconciler.providers import connect

    handle = connect(None)
    yield handle
    handle.close()


def _days(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=n)


def _raw(services: Any, flt: str) -> Any:
    """One page with a hand-written filter, as the service answers it."""
    from urllib.parse import quote

    url = (
        f"{services.target.arm_url}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Insights/"
        f"eventtypes/management/values?api-version=2015-04-01&$filter={quote(flt, safe='')}"
    )
    return services.arm._get(url, "live")


def test_the_documented_filter_is_answered_newest_first(services) -> None:  # type: ignore[no-untyped-def]
    # AL-order-paging, AL-window: a start beyond the retention is answered, newest first
    events = services.arm.list_activity_log(
        SUBSCRIPTION, _days(100), resource_provider="Microsoft.ManagedIdentity"
    )
    stamps = [e["eventTimestamp"] for e in events]
    assert stamps == sorted(stamps, reverse=True)
    assert all(
        e["operationName"]["value"].lower().startswith("microsoft.managedidentity/") for e in events
    )


def test_a_service_principals_caller_is_its_object_id(services) -> None:  # type: ignore[no-untyped-def]
    # AL-caller: for an app-only caller, caller equals the oid claim (not appid)
    events = services.arm.list_activity_log(
        SUBSCRIPTION, _days(89), select=("caller", "claims", "status", "eventTimestamp")
    )
    apps = [e for e in events if e.get("claims", {}).get("appid") and GUID.match(e["caller"])]
    if not apps:
        pytest.skip("no write by a service principal in this subscription's last 89 days")
    assert all(e["caller"].lower() == e["claims"][OID].lower() for e in apps)


def test_the_ingestion_delay_is_visible_in_the_timestamps(services) -> None:  # type: ignore[no-untyped-def]
    # AL-delay: submissionTimestamp - eventTimestamp, to choose the reader's safety margin
    events = services.arm.list_activity_log(SUBSCRIPTION, _days(7))
    if not events:
        pytest.skip("no events in the last 7 days")

    from reconciler.sim.activitylog import parse_time

    gaps = sorted(
        parse_time(e["submissionTimestamp"]) - parse_time(e["eventTimestamp"]) for e in events
    )
    print(
        f"ingestion delay over {len(gaps)} events: median {gaps[len(gaps) // 2]:.0f} s, max {gaps[-1]:.0f} s"
    )
    assert gaps[0] >= 0


@pytest.mark.parametrize(
    "flt",
    [
        "caller eq 'someone@example.com'",
        "eventTimestamp ge '{t}' and status eq 'Succeeded'",
        "eventTimestamp ge '{t}' or resourceGroupName eq 'x'",
    ],
)
def test_other_filters_are_refused_with_bad_request(services, flt: str) -> None:  # type: ignore[no-untyped-def]
    # AL-refusal: status 400 and code BadRequest
    with pytest.raises(PermanentError) as caught:
        _raw(services, flt.format(t=_days(1).strftime("%Y-%m-%dT%H:%M:%SZ")))
    assert caught.value.status == 400
    assert caught.value.code.lower() == "badrequest"


@needs_org
def test_the_audit_log_answers_with_the_documented_shape(services) -> None:  # type: ignore[no-untyped-def]
    from reconciler.providers.devops import AuditLogUnavailable

    try:
        entries = services.devops.list_audit_log(ORG, _days(7))
    except AuditLogUnavailable as exc:  # AD-forbidden: what the refusal looks like
        pytest.skip(f"the audit log cannot be read here: {exc}")
    for e in entries:
        assert {"id", "timestamp", "actionId", "actorUserId", "scopeId"} <= set(e)
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids)  # AD: ids sort newest first


@needs_org
@pytest.mark.skipif(
    AUDIT != "off", reason="set RECONCILER_LIVE_AUDIT=off for an organisation with auditing off"
)
def test_with_auditing_off_the_log_is_read_not_refused(services) -> None:  # type: ignore[no-untyped-def]
    # AD-off: the simulator answers 200 with nothing new; a refusal here disproves it
    entries = services.devops.list_audit_log(ORG, _days(1))
    assert isinstance(entries, list)
