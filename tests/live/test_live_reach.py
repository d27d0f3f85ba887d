"""Optional: confirm against a real tenant what the simulator assumes about Azure Resource
Graph and the Azure DevOps accounts host (reconciler/sim/README.md, "Reach").

Runs only with RECONCILER_LIVE=1 and RECONCILER_LIVE_OWNER (an owner name used in that
tenant), with credentials the tool can find (Azure CLI login, environment, managed identity).
Read-only. Azure cannot be reached from CI, so CI skips these.
"""

from __future__ import annotations

import os

import pytest

from reconciler.errors import PermanentError
from reconciler.observe import owned_assignments_query, owned_identities_query

LIVE = os.environ.get("RECONCILER_LIVE") == "1"
OWNER = os.environ.get("RECONCILER_LIVE_OWNER", "")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (LIVE and OWNER),
        reason="live Azure test: set RECONCILER_LIVE=1 and RECONCILER_LIVE_OWNER (no Azure here)",
    ),
]


@pytest.fixture(scope="module")
def services():  # type: ignore[no-untyped-def]
    from reconciler.providers import connect

    handle = connect(None)
    yield handle
    handle.close()


def test_the_tools_queries_are_accepted_and_answer_rows(services) -> None:  # type: ignore[no-untyped-def]
    identities = services.arm.query_resource_graph(owned_identities_query(OWNER), what="live")
    assert all({"id", "subscriptionId", "tags"} <= set(row) for row in identities)
    # tags come back as the resource's tag object (the inventory is read from it)
    assert all(isinstance(row["tags"], dict) for row in identities)
    assert all(
        "/providers/microsoft.managedidentity/userassignedidentities/" in row["id"].lower()
        for row in identities
    )
    # properties.description is in the authorizationresources table, and endswith works on it
    assignments = services.arm.query_resource_graph(owned_assignments_query(OWNER), what="live")
    assert all({"id", "subscriptionId", "scope"} <= set(row) for row in assignments)


def test_another_query_is_refused_with_invalid_query(services) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PermanentError) as caught:
        services.arm.query_resource_graph("resources | parse id with *", what="live")
    assert caught.value.status == 400 and "InvalidQuery" in str(caught.value)


def test_member_organisations_resolve_ids(services) -> None:  # type: ignore[no-untyped-def]
    accounts = services.devops.list_member_organizations()
    assert all(a.get("accountId") and a.get("accountName") for a in accounts)
