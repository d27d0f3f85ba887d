"""Prune reaches every object carrying the owner's marker, and nothing a live connection signs
in with disappears silently: end to end against the simulator over HTTPS, live state checked
through the simulator's own API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler import observe as observe_module
from reconciler.model import implied_credential_name
from reconciler.sim.server import Simulator

from .conftest import SANDBOX, Portal, plan_document, run, target, writes

PRODUCTION = "22222222-2222-2222-2222-222222222222"
OWNER_ROLE = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
GITHUB = "https://token.actions.githubusercontent.com"
MI_ID = (
    f"/subscriptions/{SANDBOX}/resourceGroups/identities-rg/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/mi-1"
)

HEAD = """version: 1
owner: platform-team
defaults:
  subscription: 11111111-1111-1111-1111-111111111111
  resourceGroup: identities-rg
  location: westeurope
"""
MI_1 = """identities:
  - name: mi-1
"""
SC_1 = """serviceConnections:
  - name: sc-1
    organization: contoso
    project: platform
    identity: mi-1
    subscription: 11111111-1111-1111-1111-111111111111
    subscriptionName: Sandbox
"""
S2_IDENTITY = f"""  - name: s2-mi
    subscription: {PRODUCTION}
    resourceGroup: identities-prod-rg
    roleAssignments:
      - role: Owner
        scope: /subscriptions/{PRODUCTION}
    federatedCredentials:
      - name: github-main
        issuer: {GITHUB}
        subject: repo:contoso/app:ref:refs/heads/main
"""


def _spec(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _changes(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, last part of the key) -> change."""
    return {(c["kind"], c["key"].rsplit("/", 1)[-1]): c for c in document["changes"]}


def _connection(portal: Portal, name: str) -> dict[str, Any] | None:
    found = [c for c in portal.connections("contoso", "platform") if c["name"] == name]
    return found[0] if found else None


def _apply(capsys: pytest.CaptureFixture[str], sim: Simulator, spec: Path, *flags: str) -> str:
    code, out, err = run(capsys, "apply", str(spec), *target(sim), "--auto-approve", *flags)
    assert code == 0, err
    assert "Converged" in out
    return out


# -- section 1: prune reaches every owned object ------------------------------------------


def test_connection_removed_from_specs_is_pruned_though_no_spec_names_its_organisation(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    _apply(capsys, sim, _spec(tmp_path, "both.yaml", HEAD + MI_1 + SC_1))
    assert _connection(portal, "sc-1") is not None
    # an identity applied before the inventory existed: only the credential names contoso
    # (the inventory's own path: test_reach_inventory.py)
    sim.edit("identity", MI_ID, {"tags": {"reconciler-owner": "platform-team"}})
    only_identity = _spec(tmp_path, "identity.yaml", HEAD + MI_1)

    document = plan_document(capsys, sim, tmp_path, [only_identity])
    changes = _changes(document)
    assert ("identity", "mi-1") not in changes
    connection = changes[("service_connection", "sc-1")]
    assert connection["action"] == "delete" and connection["destructive"]
    credential = changes[
        ("federated_credential", implied_credential_name("contoso", "platform", "sc-1").lower())
    ]
    assert credential["action"] == "delete" and credential["reason"] == "not in spec"
    # the organisation was found through the credential's subject, by the accounts API
    assert sim.count("Accounts_List") == 1 and sim.count("Profiles_Get") == 1

    code, out, _ = run(capsys, "drift", str(only_identity), *target(sim))
    assert code == 2 and "sc-1" in out

    sim.clear_log()
    code, _, err = run(capsys, "apply", str(only_identity), *target(sim), "--auto-approve")
    assert code == 1 and "--allow-destroy" in err
    assert writes(sim) == []
    assert _connection(portal, "sc-1") is not None

    _apply(capsys, sim, only_identity, "--allow-destroy")
    assert _connection(portal, "sc-1") is None
    assert portal.credentials(MI_ID) == []
    assert portal.identity("identities-rg", "mi-1")["name"] == "mi-1"
    code, out, _ = run(capsys, "drift", str(only_identity), *target(sim))
    assert code == 0, out


def test_identity_alone_in_another_subscription_is_found_with_its_grant_and_credential(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    _apply(capsys, sim, _spec(tmp_path, "both.yaml", HEAD + MI_1 + S2_IDENTITY))
    (s2,) = [i for i in portal.identities(PRODUCTION) if i["name"] == "s2-mi"]
    principal = s2["properties"]["principalId"]
    assert any(a["properties"]["principalId"] == principal for a in portal.assignments(PRODUCTION))
    only_s1 = _spec(tmp_path, "s1.yaml", HEAD + MI_1)

    changes = _changes(plan_document(capsys, sim, tmp_path, [only_s1]))
    identity = changes[("identity", "s2-mi")]
    assert identity["action"] == "delete" and identity["destructive"]
    assert changes[("federated_credential", "github-main")]["action"] == "delete"
    (grant,) = [c for c in changes.values() if c["kind"] == "role_assignment"]
    assert grant["action"] == "delete"
    assert grant["before"]["roleDefinitionId"] == OWNER_ROLE
    assert grant["before"]["scope"].lower() == f"/subscriptions/{PRODUCTION}"
    code, _, _ = run(capsys, "drift", str(only_s1), *target(sim))
    assert code == 2

    _apply(capsys, sim, only_s1, "--allow-destroy")
    assert [i for i in portal.identities(PRODUCTION) if i["name"] == "s2-mi"] == []
    assert not any(
        a["properties"]["principalId"] == principal for a in portal.assignments(PRODUCTION)
    )
    assert run(capsys, "drift", str(only_s1), *target(sim))[0] == 0


def test_emptied_specs_plan_the_full_decommission_behind_allow_destroy(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    _apply(capsys, sim, _spec(tmp_path, "all.yaml", HEAD + MI_1 + S2_IDENTITY + SC_1))
    empty = _spec(tmp_path, "empty.yaml", "version: 1\nowner: platform-team\nidentities: []\n")
    assert run(capsys, "validate", str(empty))[0] == 0

    changes = _changes(plan_document(capsys, sim, tmp_path, [empty]))
    assert {c["action"] for c in changes.values()} == {"delete"}
    assert {(k, n) for (k, n) in changes if k in ("identity", "service_connection")} == {
        ("identity", "mi-1"),
        ("identity", "s2-mi"),
        ("service_connection", "sc-1"),
    }
    assert sum(1 for c in changes.values() if c["kind"] == "role_assignment") == 1
    assert sum(1 for c in changes.values() if c["kind"] == "federated_credential") == 2
    assert run(capsys, "drift", str(empty), *target(sim))[0] == 2

    code, _, err = run(capsys, "apply", str(empty), *target(sim), "--auto-approve")
    assert code == 1 and "--allow-destroy" in err
    _apply(capsys, sim, empty, "--allow-destroy")
    names = {i["name"] for s in (SANDBOX, PRODUCTION) for i in portal.identities(s)}
    assert not {"mi-1", "s2-mi"} & names
    # what never carried the marker stays
    assert {"shared-build-mi", "data-team-mi"} <= names
    assert _connection(portal, "sc-1") is None
    assert run(capsys, "drift", str(empty), *target(sim))[0] == 0


def test_resource_graph_refusal_fails_plan_and_drift_naming_it(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = _spec(tmp_path, "mi.yaml", HEAD + MI_1)
    # a query the service does not accept: the simulator answers 400 InvalidQuery, as Azure does
    monkeypatch.setattr(
        observe_module, "owned_identities_query", lambda owner: "resources | parse id with *"
    )
    sim.clear_log()
    for command in ("plan", "drift", "apply"):
        flags = ["--auto-approve"] if command == "apply" else []
        code, out, err = run(capsys, command, str(spec), *target(sim), *flags)
        assert code == 1, out
        assert "Azure Resource Graph" in err and "InvalidQuery" in err
        assert "in sync" not in out.lower() and "no changes" not in out.lower()
    assert writes(sim) == []


def test_an_organisation_that_cannot_be_resolved_fails_plan_and_drift_naming_it(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    portal: Portal,
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path, "mi.yaml", HEAD + MI_1)
    _apply(capsys, sim, spec)
    unknown_org = "0badc0de-0000-4000-8000-000000000001"
    portal.put_credential(
        MI_ID,
        "old-connection",
        f"https://vstoken.dev.azure.com/{unknown_org}",
        "sc://gone-org/app/old-connection",
    )
    sim.clear_log()
    for command in ("plan", "drift", "apply"):
        flags = ["--auto-approve"] if command == "apply" else []
        code, out, err = run(capsys, command, str(spec), *target(sim), *flags)
        assert code == 1, out
        assert unknown_org in err and "old-connection" in err
    assert [w["op"] for w in writes(sim)] == []

    # without the accounts host (a connection file that names none) it cannot be resolved either
    connection = json.loads(sim.connection_file.read_text())
    del connection["vssps_url"]
    no_vssps = tmp_path / "no-vssps.json"
    no_vssps.write_text(json.dumps(connection))
    code, out, err = run(capsys, "drift", str(spec), "--target", str(no_vssps))
    assert code == 1, out
    assert unknown_org in err and "vssps_url" in err


def test_reach_adds_an_organisation_to_read(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    _apply(capsys, sim, _spec(tmp_path, "both.yaml", HEAD + MI_1 + SC_1))
    # the identity was deleted out of band, its credential and its inventory with it: nothing
    # the tool can read names contoso any more (README "Safety", Limits)
    sim.delete("identity", MI_ID)
    nothing = _spec(tmp_path, "nothing.yaml", HEAD + "identities: []\n")
    reaching = _spec(
        tmp_path, "reach.yaml", HEAD + "identities: []\nreach:\n  organizations: [contoso]\n"
    )
    changes = _changes(plan_document(capsys, sim, tmp_path, [reaching]))
    assert changes[("service_connection", "sc-1")]["action"] == "delete"
    # documented limit: without reach, without a credential and without an identity whose
    # inventory names the organisation, the organisation is not searched
    assert ("service_connection", "sc-1") not in _changes(
        plan_document(capsys, sim, tmp_path, [nothing])
    )


def test_discovery_costs_the_same_few_requests_for_1_and_10_subscriptions(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    counts = []
    for subscriptions in (1, 10):
        seed = sim.state()
        ids = [f"{n:08d}-aaaa-4aaa-8aaa-aaaaaaaaaaaa" for n in range(subscriptions)]
        seed["subscriptions"] = [
            {"id": s, "name": f"S{n}", "resourceGroups": [{"name": "rg", "location": "westeurope"}]}
            for n, s in enumerate(ids)
        ]
        seed["identities"] = []
        seed["roleAssignments"] = []
        seed.pop("managementGroups", None)
        sim.reset(seed)
        text = "version: 1\nowner: platform-team\nidentities:\n" + "".join(
            f"  - {{name: mi-{n}, subscription: {s}, resourceGroup: rg, location: westeurope}}\n"
            for n, s in enumerate(ids)
        )
        spec = _spec(tmp_path, f"n{subscriptions}.yaml", text)
        sim.clear_log()
        assert run(capsys, "plan", str(spec), *target(sim))[0] == 0
        counts.append({op: sim.count(op) for op in ("Resources", "Profiles_Get", "Accounts_List")})
        assert sim.count("UserAssignedIdentities_ListBySubscription") == subscriptions
    # two Resource Graph queries, whatever the number of subscriptions; no accounts lookup
    # when no credential names an organisation the specs do not
    assert counts == [{"Resources": 2, "Profiles_Get": 0, "Accounts_List": 0}] * 2


# -- section 4: nothing a live connection relies on disappears silently --------------------


def test_credential_of_an_unmarked_live_connection_needs_allow_destroy_and_names_it(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    _apply(capsys, sim, _spec(tmp_path, "both.yaml", HEAD + MI_1 + SC_1))
    connection = _connection(portal, "sc-1")
    assert connection is not None
    # someone removes the owner marker in the portal, then the connection leaves the specs
    sim.edit("service_endpoint", connection["id"], {"description": "kept by hand"})
    only_identity = _spec(tmp_path, "identity.yaml", HEAD + MI_1)

    document = plan_document(capsys, sim, tmp_path, [only_identity])
    changes = _changes(document)
    # no connection of this owner is left in contoso: the inventory drops it
    inventory = changes.pop(("identity", "mi-1"))
    assert inventory["action"] == "update" and not inventory["destructive"]
    assert [f["path"].split(".")[0] for f in inventory["fields"]] == ["organizations"]
    (change,) = changes.values()
    assert change["kind"] == "federated_credential" and change["action"] == "delete"
    assert change["destructive"] is True
    assert "contoso/platform/sc-1" in change["detail"]
    code, text, _ = run(capsys, "plan", str(only_identity), *target(sim))
    assert "contoso/platform/sc-1 signs in with it and would stop working" in text
    code, markdown, _ = run(
        capsys, "plan", str(only_identity), *target(sim), "--format", "markdown"
    )
    assert "contoso/platform/sc-1 signs in with it" in markdown

    sim.clear_log()
    code, _, err = run(capsys, "apply", str(only_identity), *target(sim), "--auto-approve")
    assert code == 1 and "--allow-destroy" in err and "sc-1" in err
    assert writes(sim) == []
    assert len(portal.credentials(MI_ID)) == 1

    _apply(capsys, sim, only_identity, "--allow-destroy")
    assert portal.credentials(MI_ID) == []
    assert _connection(portal, "sc-1") is not None  # unmarked: never deleted


def test_hand_made_credential_on_an_owned_identity_is_added_out_of_band(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    spec = _spec(tmp_path, "mi.yaml", HEAD + MI_1)
    _apply(capsys, sim, spec)
    portal.put_credential(MI_ID, "backdoor", GITHUB, "repo:someone/else:ref:refs/heads/main")

    (change,) = plan_document(capsys, sim, tmp_path, [spec])["changes"]
    assert change["reason"] == "added out of band" and change["action"] == "delete"
    assert change["destructive"] is False
    code, out, _ = run(capsys, "drift", str(spec), *target(sim))
    assert code == 2 and "added out of band" in out and "backdoor" in out

    _apply(capsys, sim, spec)
    assert portal.credentials(MI_ID) == []


def test_the_sim_answers_the_tools_queries_and_refuses_others(
    sim: Simulator, portal: Portal
) -> None:
    owner = "platform-team"
    answer = portal.resource_graph(observe_module.owned_identities_query(owner))
    assert answer["data"] == [] and answer["totalRecords"] == 0
    body = portal.resource_graph("resources | project id", expect=400)
    assert body["error"]["code"] == "BadRequest"
    assert body["error"]["details"][0]["code"] == "InvalidQuery"
    assert json.dumps(body).count("Please provide below info when asking for support") == 1


def test_management_group_grant_left_out_of_the_specs_is_found_and_pruned(
    sim: Simulator, capsys: pytest.CaptureFixture[str], portal: Portal, tmp_path: Path
) -> None:
    group = "/providers/Microsoft.Management/managementGroups/contoso-root"
    granted = HEAD + MI_1 + f"    roleAssignments:\n      - role: Reader\n        scope: {group}\n"
    _apply(capsys, sim, _spec(tmp_path, "granted.yaml", granted))
    principal = portal.identity("identities-rg", "mi-1")["properties"]["principalId"]

    def grants() -> list[Any]:
        page = portal.arm(
            f"{group}/providers/Microsoft.Authorization/roleAssignments?$filter=atScope()",
            "2022-04-01",
        )
        return [a for a in page["value"] if a["properties"]["principalId"] == principal]

    assert len(grants()) == 1
    # the specs no longer name the management group anywhere
    only_identity = _spec(tmp_path, "identity.yaml", HEAD + MI_1)
    (change,) = plan_document(capsys, sim, tmp_path, [only_identity])["changes"]
    assert change["kind"] == "role_assignment" and change["action"] == "delete"
    assert change["before"]["scope"].lower() == group.lower()
    _apply(capsys, sim, only_identity)
    assert grants() == []
