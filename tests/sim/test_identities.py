"""Managed identities and federated credentials through the real azure-mgmt-msi client."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from reconciler.sim.server import Simulator

from .clients import SANDBOX, Http

RG = f"/subscriptions/{SANDBOX}/resourceGroups/identities-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
V = "?api-version=2024-11-30"
ISSUER = "https://token.actions.githubusercontent.com"


def fic(subject: str, issuer: str = ISSUER) -> dict[str, Any]:
    return {"issuer": issuer, "subject": subject, "audiences": ["api://AzureADTokenExchange"]}


def test_create_update_keeps_ids_and_replaces_tags(sim: Simulator, msi: Any) -> None:
    ops = msi.user_assigned_identities
    first = ops.create_or_update(
        "identities-rg", "app-mi", {"location": "West Europe", "tags": {"a": "1", "b": "2"}}
    )
    assert first.location == "westeurope"
    assert (
        first.id
        == f"/subscriptions/{SANDBOX}/resourcegroups/identities-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app-mi"
    )
    assert first.tenant_id == sim.tenant_id
    second = ops.create_or_update(
        "identities-rg", "app-mi", {"location": "westeurope", "tags": {"a": "9"}}
    )
    assert (second.principal_id, second.client_id) == (first.principal_id, first.client_id)
    assert second.tags == {"a": "9"}
    statuses = [e["status"] for e in sim.request_log(op="UserAssignedIdentities_CreateOrUpdate")]
    assert statuses == [201, 200]
    patched = ops.update("identities-rg", "app-mi", {"tags": {"c": "3"}})
    assert patched.tags == {"c": "3"}


def test_names_and_groups_are_case_insensitive_ids_keep_service_casing(
    sim: Simulator, msi: Any
) -> None:
    msi.user_assigned_identities.create_or_update(
        "identities-rg", "Case-MI", {"location": "westeurope"}
    )
    got = msi.user_assigned_identities.get("IDENTITIES-RG", "case-mi")
    assert got.name == "Case-MI"
    assert "/resourcegroups/identities-rg/" in got.id


def test_location_is_immutable(sim: Simulator, msi: Any) -> None:
    msi.user_assigned_identities.create_or_update(
        "identities-rg", "loc-mi", {"location": "westeurope"}
    )
    with pytest.raises(HttpResponseError) as err:
        msi.user_assigned_identities.create_or_update(
            "identities-rg", "loc-mi", {"location": "northeurope"}
        )
    assert err.value.status_code == 409
    assert err.value.error.code == "InvalidResourceLocation"
    assert "already exists in location 'westeurope'" in err.value.error.message


@pytest.mark.parametrize(
    ("group", "name", "status", "code"),
    [
        ("missing-rg", "x-mi", 404, "ResourceGroupNotFound"),
        ("identities-rg", "-bad", 400, "InvalidResourceName"),
        ("identities-rg", "ab", 400, "InvalidResourceName"),
    ],
)
def test_create_errors(
    sim: Simulator, msi: Any, group: str, name: str, status: int, code: str
) -> None:
    with pytest.raises(HttpResponseError) as err:
        msi.user_assigned_identities.create_or_update(group, name, {"location": "westeurope"})
    assert (err.value.status_code, err.value.error.code) == (status, code)


def test_unknown_subscription_and_missing_identity(sim: Simulator, http: Http, msi: Any) -> None:
    r = http.arm(
        "GET",
        f"/subscriptions/99999999-9999-9999-9999-999999999999/providers/Microsoft.ManagedIdentity/userAssignedIdentities{V}",
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "SubscriptionNotFound"
    with pytest.raises(ResourceNotFoundError) as err:
        msi.user_assigned_identities.get("identities-rg", "nobody-mi")
    assert err.value.error.code == "ResourceNotFound"
    assert (
        "userAssignedIdentities/nobody-mi' under resource group 'identities-rg' was not found"
        in err.value.error.message
    )


def test_delete_is_idempotent_and_recreate_gets_new_ids(
    sim: Simulator, msi: Any, http: Http
) -> None:
    ops = msi.user_assigned_identities
    first = ops.create_or_update("identities-rg", "re-mi", {"location": "westeurope"})
    assert http.arm("DELETE", f"{RG}/re-mi{V}").status_code == 200
    assert http.arm("DELETE", f"{RG}/re-mi{V}").status_code == 204
    assert ops.delete("identities-rg", "re-mi") is None
    second = ops.create_or_update("identities-rg", "re-mi", {"location": "westeurope"})
    assert second.principal_id != first.principal_id and second.client_id != first.client_id


def test_list_pages_with_absolute_next_links(sim: Simulator, msi: Any, http: Http) -> None:
    for n in range(5):
        msi.user_assigned_identities.create_or_update(
            "sandbox-rg", f"page-mi-{n}", {"location": "westeurope"}
        )
    sim.update_faults(identity_page_size=2)
    first = http.arm(
        "GET",
        f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities{V}",
    ).json()
    assert len(first["value"]) == 2
    assert (
        first["nextLink"].startswith(sim.arm_url + "/subscriptions/")
        and "$skiptoken=" in first["nextLink"]
    )
    sim.clear_log()
    names = [i.name for i in msi.user_assigned_identities.list_by_resource_group("sandbox-rg")]
    assert names == [f"page-mi-{n}" for n in range(5)]
    assert sim.count("UserAssignedIdentities_ListByResourceGroup") == 3
    everything = [i.name for i in msi.user_assigned_identities.list_by_subscription()]
    assert len(everything) == 7  # plus the two seeded identities


@pytest.mark.parametrize(
    ("query", "code"),
    [("", "MissingApiVersionParameter"), ("?api-version=2099-01-01", "InvalidApiVersionParameter")],
)
def test_api_version_is_required_and_checked(
    sim: Simulator, http: Http, query: str, code: str
) -> None:
    r = http.arm("GET", f"{RG}/shared-build-mi{query}")
    assert r.status_code == 400 and r.json()["error"]["code"] == code


def test_arm_headers(sim: Simulator, http: Http) -> None:
    r = http.arm(
        "GET", f"{RG}/shared-build-mi{V}", headers={"x-ms-correlation-request-id": "corr-1"}
    )
    assert r.headers["x-ms-correlation-request-id"] == "corr-1"
    assert r.headers["x-ms-request-id"]
    assert int(r.headers["x-ms-ratelimit-remaining-subscription-reads"]) > 0
    w = http.arm("PUT", f"{RG}/hdr-mi{V}", json={"location": "westeurope"})
    assert "x-ms-ratelimit-remaining-subscription-writes" in w.headers
    d = http.arm("DELETE", f"{RG}/hdr-mi{V}")
    assert "x-ms-ratelimit-remaining-subscription-deletes" in d.headers


# --- federated identity credentials -------------------------------------------------------


def test_credential_crud(sim: Simulator, msi: Any) -> None:
    msi.user_assigned_identities.create_or_update(
        "identities-rg", "fic-mi", {"location": "westeurope"}
    )
    ops = msi.federated_identity_credentials
    created = ops.create_or_update(
        "identities-rg", "fic-mi", "github-main", fic("repo:a/b:ref:refs/heads/main")
    )
    assert created.audiences == ["api://AzureADTokenExchange"]
    updated = ops.create_or_update(
        "identities-rg", "fic-mi", "github-main", fic("repo:a/b:environment:prod")
    )
    assert updated.subject == "repo:a/b:environment:prod"
    assert [
        e["status"] for e in sim.request_log(op="FederatedIdentityCredentials_CreateOrUpdate")
    ] == [201, 200]
    assert ops.get("identities-rg", "fic-mi", "GITHUB-MAIN").name == "github-main"
    assert [c.name for c in ops.list("identities-rg", "fic-mi")] == ["github-main"]
    assert ops.delete("identities-rg", "fic-mi", "github-main") is None
    with pytest.raises(ResourceNotFoundError):
        ops.get("identities-rg", "fic-mi", "github-main")


def test_credential_list_pages_with_top(sim: Simulator, msi: Any, http: Http) -> None:
    msi.user_assigned_identities.create_or_update(
        "identities-rg", "many-mi", {"location": "westeurope"}
    )
    for n in range(5):
        msi.federated_identity_credentials.create_or_update(
            "identities-rg", "many-mi", f"cred-{n}", fic(f"s{n}")
        )
    page = http.arm("GET", f"{RG}/many-mi/federatedIdentityCredentials{V}&$top=2").json()
    assert len(page["value"]) == 2 and "$skipToken=2" in page["nextLink"]
    assert (
        len(list(msi.federated_identity_credentials.list("identities-rg", "many-mi", top=2))) == 5
    )


def test_credential_rules(sim: Simulator, msi: Any) -> None:
    msi.user_assigned_identities.create_or_update(
        "identities-rg", "rules-mi", {"location": "westeurope"}
    )
    ops = msi.federated_identity_credentials
    ops.create_or_update("identities-rg", "rules-mi", "first", fic("same"))
    with pytest.raises(HttpResponseError) as err:
        ops.create_or_update("identities-rg", "rules-mi", "second", fic("same"))
    assert err.value.status_code == 400
    assert (
        err.value.error.message
        == "Issuer and subject combination already exists for this Managed Identity."
    )
    for name, body in (
        ("x", fic("n1")),  # too short
        ("_lead", fic("n2")),
        ("two-aud", {**fic("n3"), "audiences": ["a", "b"]}),
        ("no-aud", {**fic("n4"), "audiences": []}),
        ("no-subject", {"issuer": ISSUER, "audiences": ["api://AzureADTokenExchange"]}),
    ):
        with pytest.raises(HttpResponseError) as bad:
            ops.create_or_update("identities-rg", "rules-mi", name, body)
        assert bad.value.status_code == 400, name
    for n in range(19):
        ops.create_or_update("identities-rg", "rules-mi", f"more-{n}", fic(f"more-{n}"))
    with pytest.raises(HttpResponseError) as full:
        ops.create_or_update("identities-rg", "rules-mi", "the-21st", fic("the-21st"))
    assert full.value.status_code == 400
    assert full.value.error.code == "FederatedIdentityCredentialLimitExceeded"
    # updating one of the 20 is still fine
    ops.create_or_update("identities-rg", "rules-mi", "more-0", fic("more-0-changed"))


def test_credential_parent_must_exist(sim: Simulator, msi: Any) -> None:
    with pytest.raises(ResourceNotFoundError) as err:
        msi.federated_identity_credentials.create_or_update(
            "identities-rg", "ghost-mi", "cred", fic("s")
        )
    assert err.value.error.code == "ParentResourceNotFound"


def test_deleting_an_identity_takes_its_credentials_and_leaves_assignments(
    sim: Simulator, msi: Any, authz: Any
) -> None:
    mi = msi.user_assigned_identities.create_or_update(
        "identities-rg", "gone-mi", {"location": "westeurope"}
    )
    msi.federated_identity_credentials.create_or_update(
        "identities-rg", "gone-mi", "cred", fic("s")
    )
    scope = f"/subscriptions/{SANDBOX}"
    authz.role_assignments.create(
        scope,
        "4a1b2c3d-0000-4000-8000-000000000001",
        {
            "role_definition_id": f"{scope}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",
            "principal_id": mi.principal_id,
            "principal_type": "ServicePrincipal",
        },
    )
    msi.user_assigned_identities.delete("identities-rg", "gone-mi")
    msi.user_assigned_identities.create_or_update(
        "identities-rg", "gone-mi", {"location": "westeurope"}
    )
    assert list(msi.federated_identity_credentials.list("identities-rg", "gone-mi")) == []
    orphans = list(
        authz.role_assignments.list_for_scope(scope, filter=f"principalId eq '{mi.principal_id}'")
    )
    assert [a.name for a in orphans] == ["4a1b2c3d-0000-4000-8000-000000000001"]


def test_overlapping_credential_writes_conflict(sim: Simulator, msi: Any) -> None:
    msi.user_assigned_identities.create_or_update(
        "identities-rg", "busy-mi", {"location": "westeurope"}
    )
    sim.update_faults(fic_write_ms=300)
    results: dict[str, Any] = {}

    def write(name: str) -> None:
        try:
            results[name] = msi.federated_identity_credentials.create_or_update(
                "identities-rg", "busy-mi", name, fic(name)
            )
        except ResourceExistsError as exc:
            results[name] = exc

    threads = [threading.Thread(target=write, args=(n,)) for n in ("one-cred", "two-cred")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r for r in results.values() if isinstance(r, ResourceExistsError)]
    assert len(errors) == 1
    assert (
        errors[0].error.code
        == "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
    )
    # writes under another identity do not conflict, and sequential writes are fine
    sim.update_faults(fic_write_ms=0)
    msi.federated_identity_credentials.create_or_update(
        "identities-rg", "busy-mi", "three-cred", fic("three")
    )


def test_resource_group_list_follows_the_documented_shape(sim: Simulator, http: Http) -> None:
    # ResourceGroups_List (Microsoft.Resources; resources.json is not under apispecs: the shape
    # is the documented ResourceGroupListResult, README "Resource groups")
    r = http.arm("GET", f"/subscriptions/{SANDBOX}/resourcegroups?api-version=2021-04-01")
    assert r.status_code == 200
    body = r.json()
    assert set(body) <= {"value", "nextLink"}
    groups = {g["name"]: g for g in body["value"]}
    assert set(groups) == {"identities-rg", "sandbox-rg", "team-a-rg", "team-b-rg"}
    group = groups["team-b-rg"]
    assert group["id"] == f"/subscriptions/{SANDBOX}/resourceGroups/team-b-rg"
    assert group["type"] == "Microsoft.Resources/resourceGroups"
    assert group["location"] == "northeurope"
    assert group["properties"] == {"provisioningState": "Succeeded"}
    gone = http.arm(
        "GET",
        "/subscriptions/99999999-9999-9999-9999-999999999999/resourcegroups?api-version=2021-04-01",
    )
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "SubscriptionNotFound"
