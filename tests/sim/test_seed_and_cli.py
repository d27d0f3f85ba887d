"""Seeds (default world, files, programmatic, large), persistence, and `reconciler sim serve`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from bench.estates import large_seed
from reconciler.sim.seed import build_world, default_seed, load_seed, snapshot
from reconciler.sim.server import start
from reconciler.sim.world import identity_key

SANDBOX = "11111111-1111-1111-1111-111111111111"
PRODUCTION = "22222222-2222-2222-2222-222222222222"


def test_default_seed_is_the_world_of_the_brief() -> None:
    w = build_world(default_seed())
    assert w.tenant_id == "7e1a6a0c-3c1d-4b8e-9f4a-1b2c3d4e5f60"
    assert w.subscriptions[SANDBOX].display_name == "Sandbox"
    assert w.subscriptions[PRODUCTION].display_name == "Production"
    groups = {(s, g.name, g.location) for (s, _), g in w.resource_groups.items()}
    assert groups == {
        (SANDBOX, "identities-rg", "westeurope"),
        (SANDBOX, "sandbox-rg", "westeurope"),
        (SANDBOX, "team-a-rg", "westeurope"),
        (SANDBOX, "team-b-rg", "northeurope"),
        (PRODUCTION, "identities-prod-rg", "westeurope"),
        (PRODUCTION, "app-prod-rg", "westeurope"),
    }
    auditor = w.role_definitions["9f0c2a8e-5b7d-4c3e-8a1f-6d2e4b8c0a11"]
    assert auditor.role_name == "Identity Auditor" and auditor.role_type == "CustomRole"
    assert {f"/subscriptions/{SANDBOX}", f"/subscriptions/{PRODUCTION}"} == set(
        auditor.assignable_scopes
    )
    contoso, fabrikam = w.organizations["contoso"], w.organizations["fabrikam"]
    assert (contoso.id, contoso.issuer_format) == ("0c7a5f0e-8d8b-4f7e-9a53-2f0b1f6c9d21", "entra")
    assert (fabrikam.id, fabrikam.issuer_format) == (
        "5d3e2c1b-7a9f-4e6d-8c0b-1a2b3c4d5e6f",
        "vstoken",
    )
    pipelines = {
        (p.name, pl.id, pl.name) for p in contoso.projects.values() for pl in p.pipelines.values()
    }
    assert pipelines == {
        ("platform", 1, "infra-deploy"),
        ("platform", 2, "app-ci"),
        ("team-a", 3, "team-a-deploy"),
        ("team-a", 4, "team-a-ci"),
        ("team-b", 5, "team-b-deploy"),
    }
    assert [(pl.id, pl.name) for pl in fabrikam.projects["legacy-app"].pipelines.values()] == [
        (1, "legacy-release")
    ]
    shared = w.identities[identity_key(SANDBOX, "identities-rg", "shared-build-mi")]
    assert "reconciler-owner" not in shared.tags
    readers = [a for a in w.role_assignments.values() if a.principal_id == shared.principal_id]
    assert [(a.scope, a.role_guid, a.description) for a in readers] == [
        (f"/subscriptions/{SANDBOX}", "acdd72a7-3385-48ef-bd42-f606fba81ae7", None)
    ]
    data = w.identities[identity_key(SANDBOX, "identities-rg", "data-team-mi")]
    assert data.tags["reconciler-owner"] == "data-team"
    assert not w.endpoints  # no service connections exist before the demo creates them


def test_seeds_are_deterministic_and_round_trip() -> None:
    a, b = build_world(default_seed()), build_world(default_seed())
    assert [i.principal_id for i in a.identities.values()] == [
        i.principal_id for i in b.identities.values()
    ]
    big = build_world(large_seed(50))
    again = build_world(snapshot(big))
    assert snapshot(again) == snapshot(big)


def test_large_seed_of_ten_thousand_objects() -> None:
    seed = large_seed(1000, credentials_per_identity=5, assignments_per_identity=3)
    w = build_world(seed)
    objects = (
        len(w.identities)
        + sum(len(i.fics) for i in w.identities.values())
        + len(w.role_assignments)
        + len(w.endpoints)
    )
    assert objects >= 10_000
    # every bench connection's credential matches the connection's issuer and subject
    sample = next(e for e in w.endpoints.values() if e.name == "bench-mi-00007")
    assert w.fic_with(
        str(sample.parameters["workloadIdentityFederationIssuer"]),
        str(sample.parameters["workloadIdentityFederationSubject"]),
    )


def test_yaml_and_json_seed_files(tmp_path: Path) -> None:
    data = default_seed()
    data["identities"].append(
        {
            "subscription": SANDBOX,
            "resourceGroup": "sandbox-rg",
            "name": "from-file-mi",
            "location": "westeurope",
        }
    )
    (tmp_path / "seed.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "seed.json").write_text(json.dumps(data))
    for name in ("seed.yaml", "seed.json"):
        w = build_world(load_seed(tmp_path / name))
        assert identity_key(SANDBOX, "sandbox-rg", "from-file-mi") in w.identities


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    sim = start(state_dir=tmp_path / "one", state_file=state)
    session = requests.Session()
    session.trust_env = False
    session.verify = sim.connection["ca_bundle"]
    token = session.post(
        f"https://{sim.authority}/{sim.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sim.client_id,
            "client_secret": sim.client_secret,
            "scope": "https://management.azure.com/.default",
        },
    ).json()["access_token"]
    url = f"{sim.arm_url}/subscriptions/{SANDBOX}/resourceGroups/identities-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/kept-mi?api-version=2024-11-30"
    created = session.put(
        url, json={"location": "westeurope"}, headers={"Authorization": f"Bearer {token}"}
    ).json()
    sim.stop()
    assert state.exists() and not list(state.parent.glob(".state.json.*"))  # written atomically
    again = start(state_dir=tmp_path / "two", state_file=state)
    try:
        kept = again.world.identities[identity_key(SANDBOX, "identities-rg", "kept-mi")]
        assert kept.principal_id == created["properties"]["principalId"]
        again.reset()  # back to the seed, not the saved state
        assert identity_key(SANDBOX, "identities-rg", "kept-mi") not in again.world.identities
    finally:
        again.stop()


def test_stop_is_prompt(tmp_path: Path) -> None:
    sim = start(state_dir=tmp_path)
    started = time.perf_counter()
    sim.stop()
    assert time.perf_counter() - started < 1.0


def test_serve_command(tmp_path: Path) -> None:
    connection = tmp_path / "conn" / "connection.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "sim",
            "serve",
            "--port",
            "0",
            "--connection-file",
            str(connection),
            "--fault",
            "latency:1",
            "--fault",
            "429:0",
            "--state",
            str(tmp_path / "state.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("{"):
                break
        fields = json.loads(lines[-1])
        assert json.loads(connection.read_text()) == fields
        assert Path(fields["ca_bundle"]).parent == connection.parent
        text = "".join(lines)
        assert fields["arm_url"] in text and fields["ca_bundle"] in text and "Ctrl-C" in text
        stats = requests.get(
            f"{fields['arm_url']}/_sim/stats", verify=fields["ca_bundle"], timeout=5
        )
        assert stats.status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert (tmp_path / "state.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_rejects_bad_faults(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "sim",
            "serve",
            "--fault",
            "bogus:1",
            "--connection-file",
            str(tmp_path / "c.json"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1 and "unknown fault" in r.stderr


def _seed_bomb() -> str:
    lines = ['lol0: &lol0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        lines.append(f"lol{level}: &lol{level} [{','.join([f'*lol{level - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_seed_is_bounded(tmp_path: Path) -> None:
    """An alias bomb, a fan-out and deep nesting in a seed are refused naming file and line
    (the seed loader has its own guard: the simulator does not import the tool's loader)."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_seed_bomb(), encoding="utf-8")
    # lol_k is 1 + 9 * lol_(k-1) nodes (lol0: 10): lol6, on line 7, alone is 5,380,840
    with pytest.raises(ValueError, match=r"bomb\.yaml:7: seed larger than 5,000,000 nodes"):
        load_seed(bomb)
    fan = tmp_path / "fan.yaml"
    fan.write_text(
        "x: &x [" + ",".join(["a"] * 1000) + "]\nrefs:\n" + "  - *x\n" * 6000, encoding="utf-8"
    )
    # 1,005 nodes before the aliases (root, `x`, its list of 1,001, `refs`, its list), 1,001 per
    # alias: 1,005 + 4,995 x 1,001 = 5,001,000, so the 4,995th alias (line 4,997) crosses
    with pytest.raises(ValueError, match=r"fan\.yaml:4997: seed larger"):
        load_seed(fan)
    deep = tmp_path / "deep.yaml"
    deep.write_text("x: " + "[" * 65 + "]" * 65 + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"deep\.yaml:1: seed nesting deeper than 64"):
        load_seed(deep)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "sim",
            "serve",
            "--seed",
            str(bomb),
            "--connection-file",
            str(tmp_path / "c.json"),
        ],
        capture_output=True,
        text=True,
        timeout=30,  # a hang guard: unbounded, this seed exhausts memory
    )
    assert r.returncode == 1 and "bomb.yaml:7: seed larger" in r.stderr


def test_the_devops_app_segment_is_the_encoded_resource_id() -> None:
    from reconciler.sim.world import DEVOPS_APP_SEGMENT, DEVOPS_RESOURCE, guid_segment

    assert guid_segment(DEVOPS_RESOURCE) == DEVOPS_APP_SEGMENT
    # the worked example in azure-contracts.md §3.4
    assert guid_segment("ff882432-09b0-437b-bd22-ca13c0037ded") == "MiSI_7AJe0O9IsoTwAN97Q"
