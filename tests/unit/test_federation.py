"""The Entra and Azure DevOps issuer and subject formulas (reconciler/federation.py), held to
the worked example in azure-contracts.md §3.4."""

from __future__ import annotations

import uuid

import pytest

from reconciler.federation import (
    devops_issuer,
    devops_subject,
    entra_federation,
    entra_issuer,
    entra_subject,
    guid_segment,
    is_devops_issuer,
)
from reconciler.model import DEVOPS_RESOURCE_ID

# azure-contracts.md §3.4: "tenant ff882432-09b0-437b-bd22-ca13c0037ded becomes
# MiSI_7AJe0O9IsoTwAN97Q"; "rISbSSETf0KqFyZ8ppdXmA is the same encoding of 499b84ac-..."
TENANT = "ff882432-09b0-437b-bd22-ca13c0037ded"
TENANT_SEGMENT = "MiSI_7AJe0O9IsoTwAN97Q"
DEVOPS_APP_SEGMENT = "rISbSSETf0KqFyZ8ppdXmA"
ORG_ID = "0c7a5f0e-8d8b-4f7e-9a53-2f0b1f6c9d21"
CONNECTION_ID = "6b0d8a4e-2c1f-4e3a-9b7d-5f8e0a1c2d3b"


def test_guid_segments_match_the_worked_example() -> None:
    assert guid_segment(TENANT) == TENANT_SEGMENT
    assert guid_segment(DEVOPS_RESOURCE_ID) == DEVOPS_APP_SEGMENT


def test_entra_subject_of_an_existing_connection() -> None:
    assert entra_subject(TENANT, ORG_ID, CONNECTION_ID) == (
        f"/eid1/c/pub/t/{TENANT_SEGMENT}/a/{DEVOPS_APP_SEGMENT}/sc/{ORG_ID}/{CONNECTION_ID}"
    )
    issuer, subject = entra_federation(TENANT, ORG_ID, CONNECTION_ID)
    assert issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert subject == entra_subject(TENANT, ORG_ID, CONNECTION_ID)


def test_ids_are_written_in_lower_case() -> None:
    upper = entra_subject(TENANT.upper(), ORG_ID.upper(), CONNECTION_ID.upper())
    assert upper == entra_subject(TENANT, ORG_ID, CONNECTION_ID)
    assert entra_issuer(TENANT.upper()) == entra_issuer(TENANT)


def test_the_application_id_is_part_of_the_subject() -> None:
    other = str(uuid.UUID(int=1))
    subject = entra_subject(TENANT, ORG_ID, CONNECTION_ID, application_id=other)
    assert f"/a/{guid_segment(other)}/" in subject
    assert DEVOPS_APP_SEGMENT not in subject


def test_segment_is_little_endian_unpadded_base64() -> None:
    # the first three GUID fields are byte-swapped: 00010203-... -> 03 02 01 00 ...
    value = "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert guid_segment(value) == "AwIBAAUEBwYICQoLDA0ODw"
    assert len(guid_segment(str(uuid.uuid4()))) == 22


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("not-a-guid", ORG_ID, CONNECTION_ID), "tenant id"),
        ((TENANT, "contoso", CONNECTION_ID), "organization id"),
        ((TENANT, ORG_ID, "my-connection"), "service connection id"),
    ],
)
def test_a_value_that_is_not_a_guid_is_named(args: tuple[str, str, str], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        entra_subject(*args)


def test_legacy_issuer_and_subject() -> None:
    assert devops_issuer(ORG_ID) == f"https://vstoken.dev.azure.com/{ORG_ID}"
    assert devops_subject("contoso", "platform", "deploy") == "sc://contoso/platform/deploy"
    assert is_devops_issuer(devops_issuer(ORG_ID))
    assert not is_devops_issuer(entra_issuer(TENANT))
    assert not is_devops_issuer(None)


def test_the_simulator_computes_the_same_subject_independently() -> None:
    # the simulator stands in for Azure DevOps with its own copy of the formula (issue 11 §6):
    # the two must agree, or a conversion test would pass against a stand-in that is wrong
    from reconciler.sim.seed import entra_subject as sim_subject

    for _ in range(20):
        tenant, org, connection = (str(uuid.uuid4()) for _ in range(3))
        assert sim_subject(tenant, org, connection) == entra_subject(tenant, org, connection)


@pytest.mark.parametrize(
    ("issuer", "subject", "found"),
    [
        # what Azure DevOps generates for this connection: accepted
        (None, None, None),
        ("devops", "sc://contoso/platform/app-sc", None),
        # another issuer altogether, or the right one of another tenant or organisation
        ("https://token.actions.githubusercontent.com", "repo:x/y:ref:refs/heads/main", "neither"),
        ("https://login.microsoftonline.com.evil.example/t/v2.0", "/eid1/x", "neither"),
        (f"https://login.microsoftonline.com/{uuid.UUID(int=1)}/v2.0", None, "another tenant"),
        (f"https://login.microsoftonline.com/{TENANT}/v1.0", None, "v2.0"),
        ("https://login.microsoftonline.com/common/v2.0", None, "of a tenant"),
        (f"https://vstoken.dev.azure.com/{uuid.UUID(int=2)}", "sc://a/b/c", "another organisation"),
        ("https://vstoken.dev.azure.com/not-a-guid", "sc://a/b/c", "of an organisation"),
        # the right issuers with subjects that are not theirs or name another connection
        ("devops", "repo:x/y:ref:refs/heads/main", "sc://"),
        (None, "sc://contoso/platform/app-sc", "/eid1/"),
        (None, f"/eid1/c/pub/t/x/a/y/sc/{ORG_ID}/{uuid.UUID(int=3)}", "does not name"),
    ],
)
def test_only_the_pairs_azure_devops_generates_for_a_connection_are_accepted(
    issuer: str | None, subject: str | None, found: str | None
) -> None:
    from reconciler.federation import generated_pair_problem

    entra_pair = entra_federation(TENANT, ORG_ID, CONNECTION_ID)
    issuer = {None: entra_pair[0], "devops": devops_issuer(ORG_ID)}.get(issuer, issuer)
    subject = subject if subject is not None else entra_pair[1]
    problem = generated_pair_problem(
        issuer, subject, tenant_id=TENANT, organization_id=ORG_ID, connection_id=CONNECTION_ID
    )
    if found is None:
        assert problem is None
    else:
        assert problem is not None and found in problem, problem
    # the form is checked even when the ids are not known
    loose = generated_pair_problem(
        issuer, subject, tenant_id=None, organization_id=None, connection_id=None
    )
    if found in (None, "another tenant", "another organisation", "does not name"):
        assert loose is None
    else:
        assert loose is not None


@pytest.mark.parametrize(
    ("subject", "found"),
    [
        ("sc://contoso/platform/app-sc", None),
        ("SC://contoso/platform/app-sc", "sc://"),
        ("sc://Contoso/PLATFORM/App-SC", None),  # names compare case-insensitively
        ("sc://contoso/team-a/app-sc", "does not name this connection"),
        ("sc://contoso/platform/victim", "does not name this connection"),
        ("sc://fabrikam/platform/app-sc", "does not name this connection"),
        ("sc://contoso/platform/app-sc/", "does not name this connection"),
        ("sc://contoso/platform", "does not name this connection"),
    ],
)
def test_a_legacy_subject_must_name_the_connection(subject: str, found: str | None) -> None:
    from reconciler.federation import generated_pair_problem

    problem = generated_pair_problem(
        devops_issuer(ORG_ID),
        subject,
        tenant_id=TENANT,
        organization_id=ORG_ID,
        connection_id=CONNECTION_ID,
        organization="contoso",
        project="platform",
        connection_name="app-sc",
    )
    if found is None:
        assert problem is None
    else:
        assert problem is not None and found in problem, problem
    # without the names (a connection not read yet) only the form is checked
    loose = generated_pair_problem(
        devops_issuer(ORG_ID), subject, tenant_id=None, organization_id=None, connection_id=None
    )
    assert (loose is None) == subject.startswith("sc://")


def test_an_entra_subject_must_name_the_tenant_but_not_its_middle() -> None:
    from reconciler.federation import generated_pair_problem

    issuer, subject = entra_federation(TENANT, ORG_ID, CONNECTION_ID)
    other = guid_segment(str(uuid.UUID(int=7)))

    def check(text: str, tenant: str | None = TENANT) -> str | None:
        return generated_pair_problem(
            issuer, text, tenant_id=tenant, organization_id=ORG_ID, connection_id=CONNECTION_ID
        )

    assert check(subject) is None
    # text the service adds before /sc/ (a changed app id or cloud code) is followed
    assert check(subject.replace("/sc/", "/drifted/sc/")) is None
    assert check(subject.replace("/a/", "/a/x", 1)) is None
    # another tenant's segment, a second tenant segment after the wrong one, none at all
    forged = subject.replace(f"/t/{TENANT_SEGMENT}/", f"/t/{other}/")
    for text in (forged, forged.replace("/a/", f"/t/{TENANT_SEGMENT}/a/", 1)):
        problem = check(text)
        assert problem is not None and "tenant" in problem, problem
    problem = check(f"/eid1/c/pub/sc/{ORG_ID}/{CONNECTION_ID}")
    assert problem is not None and "tenant" in problem
    # the tenant unknown: its segment is not checked
    assert check(forged, tenant=None) is None


@pytest.mark.parametrize(
    ("issuer", "subject", "project"),
    [
        ("devops", "sc://contoso/platform/app-sc", "platform"),
        ("devops", "sc://CONTOSO/Platform/APP-SC", "Platform"),
        ("devops", "sc://contoso/platform/other-sc", None),  # another connection's
        ("devops", "sc://fabrikam/platform/app-sc", None),  # another organisation's
        ("devops", "sc://contoso//app-sc", None),
        ("devops", "sc://contoso/a/b/app-sc", None),
        ("entra", "sc://contoso/platform/app-sc", None),  # not the Azure DevOps issuer's
        ("devops", None, None),
    ],
)
def test_the_owning_project_is_read_from_a_legacy_subject_only(
    issuer: str, subject: str | None, project: str | None
) -> None:
    from reconciler.federation import legacy_subject_project

    held = devops_issuer(ORG_ID) if issuer == "devops" else entra_issuer(TENANT)
    assert legacy_subject_project(held, subject, "contoso", "app-sc") == project
