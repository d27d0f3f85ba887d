"""The Resource Graph queries observe sends and the organisation ids it reads from
federated credentials: pure functions, checked without a network."""

from __future__ import annotations

import pytest

from reconciler.observe import (
    kql_string,
    organization_of,
    owned_assignments_query,
    owned_identities_query,
)

ORG = "0c7a5f0e-8d8b-4f7e-9a53-2f0b1f6c9d21"
ENDPOINT = "68f2b542-503f-55ed-bd53-f2bb7589b249"


def test_a_quote_or_backslash_cannot_end_the_literal() -> None:
    assert kql_string("plain") == "'plain'"
    assert kql_string("it's") == "'it\\'s'"
    assert kql_string("a\\' | project id //") == "'a\\\\\\' | project id //'"
    for bad in ("line\nbreak", "cr\rx", "nul\0"):
        with pytest.raises(ValueError):
            kql_string(bad)


def test_queries_name_the_owner_marker_exactly() -> None:
    assert owned_identities_query("platform-team") == (
        "resources | where type =~ 'microsoft.managedidentity/userassignedidentities' "
        "| where tags['reconciler-owner'] =~ 'platform-team' | project id, subscriptionId, tags"
    )
    assert "endswith '[reconciler-owner: platform-team]'" in owned_assignments_query(
        "platform-team"
    )


@pytest.mark.parametrize(
    ("issuer", "subject", "expected"),
    [
        (f"https://vstoken.dev.azure.com/{ORG}", "sc://contoso/platform/sc-1", ORG),
        (f"https://vstoken.dev.azure.com/{ORG.upper()}/", "sc://x/y/z", ORG),
        (
            "https://login.microsoftonline.com/7e1a6a0c-3c1d-4b8e-9f4a-1b2c3d4e5f60/v2.0",
            f"/eid1/c/pub/t/DGoafh08jkufShssPU5fYA/a/rISbSSETf0KqFyZ8ppdXmA/sc/{ORG}/{ENDPOINT}",
            ORG,
        ),
        (
            "https://token.actions.githubusercontent.com",
            "repo:contoso/app:ref:refs/heads/main",
            None,
        ),
        ("https://login.microsoftonline.com/t/v2.0", f"/sc/{ORG}/{ENDPOINT}", None),
        (None, None, None),
    ],
)
def test_organisation_named_by_a_credential(issuer: str, subject: str, expected: str) -> None:
    assert organization_of(issuer, subject) == expected
