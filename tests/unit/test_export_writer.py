"""The pure export writer (reconciler/export.py) and the kinds' export rules, from data."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.export import export_specs, owners_found
from reconciler.model import (
    Address,
    ExportScope,
    Kind,
    LiveResource,
    LiveState,
    RoleDefinition,
    connection_key,
    credential_key,
    identity_key,
    implied_credential_name,
    role_assignment_key,
)
from reconciler.specs import builtin_roles, load_desired_state

SUB = "11111111-1111-1111-1111-111111111111"
SUB2 = "22222222-2222-2222-2222-222222222222"
TENANT = "7e1a6a0c-3c1d-4b8e-9f4a-1b2c3d4e5f60"
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
CUSTOM = "9f0c2a8e-5b7d-4c3e-8a1f-6d2e4b8c0a11"
TWIN = "9f0c2a8e-5b7d-4c3e-8a1f-6d2e4b8c0a12"
BUILTIN = {guid.lower(): name for name, guid in builtin_roles().items()}
SCOPE = ExportScope((SUB, SUB2), (), ("contoso",), ())


def _identity(sub: str, rg: str, name: str, client: str, owner: str | None = None) -> LiveResource:
    key = identity_key(sub, rg, name)
    attrs = {
        "subscription": sub,
        "resourceGroup": rg,
        "name": name,
        "location": "westeurope",
        "tags": {},
        "organizations": {},
        "clientId": client,
        "principalId": f"p-{client}",
    }
    return LiveResource(Address(Kind.IDENTITY, key), attrs, owner)


def _cred(
    identity: str, name: str, issuer: str, subject: str, audiences: list[str] | None = None
) -> LiveResource:
    attrs = {
        "identity": identity,
        "name": name,
        "issuer": issuer,
        "subject": subject,
        "audiences": audiences or ["api://AzureADTokenExchange"],
    }
    return LiveResource(Address(Kind.FEDERATED_CREDENTIAL, credential_key(identity, name)), attrs)


def _ra(
    identity: str, scope: str, guid: str, owner: str | None = None, **extra: Any
) -> LiveResource:
    attrs = {"identity": identity, "roleDefinitionId": guid, "scope": scope, "description": None,
             "condition": None, "conditionVersion": None, **extra}  # fmt: skip
    return LiveResource(
        Address(Kind.ROLE_ASSIGNMENT, role_assignment_key(identity, scope, guid)), attrs, owner
    )


def _sc(project: str, name: str, identity: str | None, subject: str, **extra: Any) -> LiveResource:
    attrs = {
        "organization": "contoso",
        "project": project,
        "name": name,
        "description": None,
        "identity": identity,
        "subscriptionId": SUB,
        "subscriptionName": "Sandbox",
        "scope": None,
        "sharedWith": [],
        "pipelinePermissions": None,
        "servicePrincipalId": "x",
        "issuer": ISSUER,
        "subject": subject,
        "scheme": "WorkloadIdentityFederation",
        **extra,
    }
    return LiveResource(
        Address(Kind.SERVICE_CONNECTION, connection_key("contoso", project, name)), attrs
    )


A = identity_key(SUB, "rg-a", "deploy-mi")
B = identity_key(SUB, "rg-a", "build-mi")
C = identity_key(SUB2, "rg-c", "deploy-mi")
F = identity_key(SUB, "rg-a", "foreign-mi")


def _live(
    *extra: LiveResource, federations: dict[tuple[str, str], tuple[str, ...]] | None = None
) -> LiveState:
    resources = [
        _identity(SUB, "rg-a", "deploy-mi", "c1"),
        _identity(SUB, "rg-a", "build-mi", "c2"),
        _identity(SUB2, "rg-c", "deploy-mi", "c3"),
        _identity(SUB, "rg-a", "foreign-mi", "c4", owner="data-team"),
        _cred(
            A,
            "github",
            "https://token.actions.githubusercontent.com",
            "repo:x/y:ref:refs/heads/main",
        ),
        _cred(A, "hand-made-sc", ISSUER, "/eid1/sc/a"),
        _cred(F, "theirs", "https://token.actions.githubusercontent.com", "repo:x/z:pull_request"),
        _ra(A, f"/subscriptions/{SUB}/resourceGroups/app-rg", CONTRIBUTOR),
        _ra(A, f"/subscriptions/{SUB}", CUSTOM),
        _ra(A, f"/subscriptions/{SUB}/resourceGroups/other", TWIN),
        _ra(B, "/providers/Microsoft.Management/managementGroups/root", CUSTOM),
        _ra(B, f"/subscriptions/{SUB}/resourceGroups/app-rg", CONTRIBUTOR, owner="data-team"),
        _sc("platform", "deploy-sc", A, "/eid1/sc/a"),
        _sc("platform", "prod-sc", C, "/eid1/sc/c", pipelinePermissions="all"),
        *extra,
    ]
    return LiveState(
        resources={r.address: r for r in resources},
        role_definitions={
            SUB: (
                RoleDefinition(CUSTOM, "Identity Auditor", "CustomRole"),
                RoleDefinition(TWIN, "Twin", "CustomRole"),
                RoleDefinition("9f0c2a8e-5b7d-4c3e-8a1f-6d2e4b8c0a13", "Twin", "CustomRole"),
            )
        },
        federations=federations
        or {
            (ISSUER, "/eid1/sc/a"): ("contoso/platform/deploy-sc",),
            (ISSUER, "/eid1/sc/c"): ("contoso/platform/prod-sc",),
        },
    )


def _export(live: LiveState, split: str = "resource-group") -> dict[str, str]:
    return export_specs(live, SCOPE, owner="platform", split=split, builtin=BUILTIN).files


def _validate(files: dict[str, str], folder: Path) -> None:
    """The files validate together (``load_desired_state`` raises ``SpecError`` otherwise)."""
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    load_desired_state([str(folder)])


def _all(files: dict[str, str], section: str) -> list[dict[str, Any]]:
    return [e for t in files.values() for e in (yaml.safe_load(t).get(section) or [])]


def test_roles_by_name_scopes_shortened_and_implied_credentials_left_out(tmp_path: Path) -> None:
    files = _export(_live())
    _validate(files, tmp_path / "v")
    deploy = next(
        i
        for i in _all(files, "identities")
        if i["name"] == "deploy-mi" and i.get("subscription", SUB) == SUB
    )
    assert deploy.get("federatedCredentials") == [
        {
            "name": "github",
            "issuer": "https://token.actions.githubusercontent.com",
            "subject": "repo:x/y:ref:refs/heads/main",
        }
    ]
    roles = [
        (r["role"], r.get("resourceGroup") or r.get("scope")) for r in deploy["roleAssignments"]
    ]
    assert ("Contributor", "app-rg") in roles
    assert ("Identity Auditor", f"/subscriptions/{SUB}") in roles
    # a custom role whose name two definitions share: its GUID, which the plan cannot confuse
    assert (TWIN, "other") in roles


def test_management_group_custom_role_is_written_by_guid_and_foreign_child_is_a_comment(
    tmp_path: Path,
) -> None:
    files = _export(_live())
    build = next(i for i in _all(files, "identities") if i["name"] == "build-mi")
    assert build["roleAssignments"] == [
        {"role": CUSTOM, "scope": "/providers/Microsoft.Management/managementGroups/root"}
    ]
    text = "".join(files.values())
    assert "owner marker 'data-team'" in " ".join(text.split())
    assert "foreign-mi" in text and "theirs" not in text  # the identity's comment covers it


def test_identities_sharing_a_name_are_named_in_full_by_connections(tmp_path: Path) -> None:
    connections = {c["name"]: c for c in _all(_export(_live()), "serviceConnections")}
    assert connections["deploy-sc"]["identity"] == {
        "name": "deploy-mi",
        "resourceGroup": "rg-a",
        "subscription": SUB,
    }
    assert connections["prod-sc"]["identity"] == {
        "name": "deploy-mi",
        "resourceGroup": "rg-c",
        "subscription": SUB2,
    }
    assert connections["prod-sc"]["subscription"] == SUB  # not the identity's own subscription
    assert connections["prod-sc"]["pipelinePermissions"] == "all"
    assert "subscription" not in connections["deploy-sc"]


def test_defaults_are_factored_per_file_when_two_entries_share_a_value(tmp_path: Path) -> None:
    files = _export(_live())
    doc = yaml.safe_load(files["rg-a.yaml"])
    # two identities share them; the one connection there shares its organisation with none
    assert doc["defaults"] == {
        "subscription": SUB,
        "resourceGroup": "rg-a",
        "location": "westeurope",
    }
    assert doc["serviceConnections"][0]["organization"] == "contoso"
    assert all("resourceGroup" not in i for i in doc["identities"])
    lone = yaml.safe_load(files["rg-c.yaml"])
    assert "defaults" not in lone and lone["identities"][0]["resourceGroup"] == "rg-c"


def test_output_is_deterministic_whatever_the_order_read(tmp_path: Path) -> None:
    live = _live()
    items = list(live.resources.items())
    random.Random(7).shuffle(items)
    shuffled = LiveState(
        resources=dict(items), role_definitions=live.role_definitions, federations=live.federations
    )
    assert _export(shuffled) == _export(live)
    for split in ("project", "none"):
        files = _export(live, split)
        _validate(files, tmp_path / split)
        assert files == _export(shuffled, split)


def test_a_credential_a_spec_cannot_declare_keeps_its_identity_out(tmp_path: Path) -> None:
    odd = _cred(B, "two-audiences", "https://example.com", "s", ["a", "b"])
    files = _export(_live(odd))
    _validate(files, tmp_path / "v")
    assert "build-mi" not in [i["name"] for i in _all(files, "identities")]
    assert "2 audiences" in " ".join("".join(files.values()).split())


def test_secret_and_app_registration_connections_are_comments_and_nothing_secret(
    tmp_path: Path,
) -> None:
    spn = _sc(
        "platform",
        "spn-sc",
        None,
        "",
        scheme="ServicePrincipal",
        issuer=None,
        servicePrincipalId="app-1",
    )
    app = _sc("platform", "app-sc", None, "/eid1/sc/z", servicePrincipalId="app-2")
    files = _export(_live(spn, app))
    _validate(files, tmp_path / "v")
    assert sorted(c["name"] for c in _all(files, "serviceConnections")) == ["deploy-sc", "prod-sc"]
    prose = " ".join(x.lstrip("#").strip() for x in "".join(files.values()).splitlines())
    assert (
        "spn-sc" in prose
        and "signs in with a secret" in prose
        and "converts it to workload identity federation in place" in prose
    )
    assert "app-sc" in prose and "signs in as app-2" in prose
    assert "serviceprincipalkey" not in prose.lower()


def test_a_credential_of_a_connection_not_exported_is_written_explicitly(tmp_path: Path) -> None:
    # the connection that signs in with it carries another owner's marker: not exported, so
    # its credential must be declared, or adopting the identity would delete it
    theirs = LiveResource(
        Address(Kind.SERVICE_CONNECTION, "contoso/platform/deploy-sc"),
        dict(_sc("platform", "deploy-sc", A, "/eid1/sc/a").attrs),
        "data-team",
    )
    live = _live()
    resources = dict(live.resources)
    resources[theirs.address] = theirs
    files = _export(
        LiveState(
            resources=resources,
            role_definitions=live.role_definitions,
            federations=live.federations,
        )
    )
    _validate(files, tmp_path / "v")
    names = [
        c["name"] for i in _all(files, "identities") for c in i.get("federatedCredentials") or []
    ]
    assert "hand-made-sc" in names


def test_unknown_split_and_owners_found(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown split"):
        export_specs(_live(), SCOPE, owner="x", split="subscription")
    assert owners_found(_live()) == (["data-team"], True)


def test_a_credential_named_as_a_connection_implies_keeps_both_out(tmp_path: Path) -> None:
    # declaring both would name the credential twice: neither the identity nor the connection
    # signing in as it is written, and the reason is given
    stale = _cred(A, implied_credential_name("contoso", "platform", "deploy-sc"), ISSUER, "/old")
    files = _export(_live(stale))
    _validate(files, tmp_path / "v")
    written = [(i["name"], i.get("subscription", SUB)) for i in _all(files, "identities")]
    assert ("deploy-mi", SUB) not in written and ("deploy-mi", SUB2) in written
    assert [c["name"] for c in _all(files, "serviceConnections")] == ["prod-sc"]
    prose = " ".join(x.lstrip("#").strip() for x in "".join(files.values()).splitlines())
    assert "has the name of the credential connection contoso/platform/deploy-sc implies" in prose
    assert "deploy-sc (id None): it signs in as identity deploy-mi" in prose


def test_names_and_tag_counts_a_spec_cannot_hold_are_comments(tmp_path: Path) -> None:
    crowded = _identity(SUB, "rg-b", "crowded-mi", "c9")
    crowded = LiveResource(
        crowded.address, {**crowded.attrs, "tags": {f"t{i:02d}": "v" for i in range(50)}}
    )
    spaced = _sc("platform", " spaced-sc ", A, "/eid1/sc/s")
    files = _export(_live(crowded, spaced))
    _validate(files, tmp_path / "v")
    assert "crowded-mi" not in [i["name"] for i in _all(files, "identities")]
    assert " spaced-sc " not in [c["name"] for c in _all(files, "serviceConnections")]
    prose = " ".join(x.lstrip("#").strip() for x in "".join(files.values()).splitlines())
    assert "it has 50 tags" in prose and "starts or ends with whitespace" in prose
