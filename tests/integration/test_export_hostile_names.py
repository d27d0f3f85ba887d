"""``reconciler export`` of hostile live *names* and texts, and of hostile ``--out`` paths.

Live objects whose connection, project and identity names, role assignment descriptions,
connection descriptions and tag values hold YAML-special characters, ``#``, quotes, line
breaks (also Unicode's: NEL, LS, PS), tabs, control characters, leading or trailing spaces,
unicode, very long texts, and words YAML reads as booleans, nulls, numbers or dates. Each
object either round trips (export, validate 0, plan adoption only, apply, plan empty, live
values unchanged) or is a comment in the file naming it and why; never a crash, never a value
that reads back differently, never a comment that a line break in a name turns into YAML.

``--out`` that is a dangling symlink, a symlink to a folder elsewhere, an existing file, or a
folder that cannot be written: exit 1 naming it, or a correct export into the folder the link
names; never a file written outside it, never a file replaced without ``--force``."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.federation import entra_federation
from reconciler.sim.seed import default_seed
from reconciler.sim.server import Simulator
from tests.integration.conftest import run, target
from tests.sim.estates import ORG_ID

SANDBOX = "11111111-1111-1111-1111-111111111111"
RG = f"/subscriptions/{SANDBOX}/resourceGroups/identities-rg"
PROJECT_ID = "9e9e9e9e-0000-4000-8000-000000000001"
LONG = "x" * 250 + " long"
# texts a careless writer gets wrong (tag values, descriptions)
TEXTS = {
    "newline": "line one\nline two",
    "crlf": "line one\r\nline two",
    "tab": "a\tb",
    "control": "bell\x07 escape\x1b end",
    "nel": "a\x85b",
    "line-separator": "a\u2028b",
    "paragraph-separator": "a\u2029b",
    "bom": "\ufeffstarts with a BOM",
    "comment": "value # not a comment",
    "quotes": "it's \"quoted\" 'twice'",
    "yaml": "key: [1, {a: b}] &anchor *alias !tag |",
    "date": "2024-01-01",
    "bool": "off",
    "null": "~",
    "number": "-.inf",
    "padded": "  padded  ",
    "trailing-newline": "ends with a newline\n",
    "unicode": "Zürich – 東京 – 🚀",
    "long": "y" * 256,
}
# identity names Azure allows that YAML reads as something else
IDENTITY_NAMES = ["true", "null", "2024-01-01", "1e3", "0x1F", "0755", "off"]
# connection names Azure DevOps allows (a connection name is free text)
CONNECTION_NAMES = {
    "hash": "deploy #1",
    "quotes": 'it\'s "quoted"',
    "yaml": "key: value - [a] {b} &c *d !e |f >g",
    "bool": "yes",
    "date": "2024-01-01",
    "number": "12e3",
    "unicode": "Zürich 東京 🚀",
    "tab": "tab\there",
    "control": "bell\x07here",
    "newline": "line\nbreak",
    "line-separator": "line\u2028owner: evil",
    "nel": "next\x85line",
    "leading": " leading space",
    "trailing": "trailing space ",
    "long": "c" * 257,
    "max": "m" * 256,
}
PROJECT = "2024-01-01 Zürich #1"  # a date, unicode and a hash: Azure DevOps refuses '#'
PLAIN_PROJECT = "yes"


def _endpoint_id(n: int) -> str:
    return f"eeeeeeee-0000-4000-8000-0000000000{n:02d}"


def _seed(tenant: str) -> dict[str, Any]:
    seed = default_seed()
    identities = []
    for n, name in enumerate(IDENTITY_NAMES):
        identities.append(
            {
                "subscription": SANDBOX,
                "resourceGroup": "identities-rg",
                "name": name,
                "location": "westeurope",
                "clientId": f"c0000000-0000-4000-8000-0000000000{n:02d}",
                "tags": TEXTS if n == 0 else {"k": TEXTS["newline"]},
            }
        )
    # each connection's credential on the identity it signs in as (it signs in today)
    for n, _ in enumerate(sorted(CONNECTION_NAMES)):
        issuer, subject = entra_federation(tenant, ORG_ID, _endpoint_id(n))
        identities[n % len(identities)].setdefault("federatedCredentials", []).append(
            {"name": f"sc-{n}", "issuer": issuer, "subject": subject}
        )
    seed["identities"] = identities
    seed["roleAssignments"] = [
        {
            "identity": f"{SANDBOX}/identities-rg/{name}",
            "scope": f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg",
            "role": "Reader",
            "description": text,
        }
        for name, text in zip(IDENTITY_NAMES, TEXTS.values(), strict=False)
    ]
    contoso = seed["devops"]["organizations"][0]
    contoso["projects"] += [
        {"name": PLAIN_PROJECT, "id": PROJECT_ID, "pipelines": []},
        {"name": PROJECT, "id": "9e9e9e9e-0000-4000-8000-000000000002", "pipelines": []},
    ]
    endpoints = []
    for n, (label, name) in enumerate(sorted(CONNECTION_NAMES.items())):
        endpoints.append(
            {
                "id": _endpoint_id(n),
                "name": name,
                "issuer": "entra",
                "description": list(TEXTS.values())[n % len(TEXTS)],
                "parameters": {
                    "serviceprincipalid": f"c0000000-0000-4000-8000-0000000000{n % 7:02d}",
                    "tenantid": tenant,
                },
                "data": {
                    "subscriptionId": SANDBOX,
                    "subscriptionName": "Sandbox",
                    "environment": "AzureCloud",
                    "scopeLevel": "Subscription",
                    "creationMode": "Manual",
                },
                "projects": [PLAIN_PROJECT if label != "hash" else PROJECT],
            }
        )
    contoso["serviceEndpoints"] = endpoints
    contoso["pipelinePermissions"] = []
    return seed


@pytest.fixture
def hostile(sim: Simulator) -> Simulator:
    sim.reset(_seed(sim.tenant_id))
    return sim


def _live(sim: Simulator) -> dict[str, Any]:
    """Every value the export must keep, as the simulator holds it (markers left out)."""
    state = sim.state()
    out: dict[str, Any] = {}
    for ident in state["identities"]:
        tags = {
            k: v for k, v in (ident.get("tags") or {}).items() if not k.startswith("reconciler")
        }
        out[f"identity {ident['name']}"] = tags
    # descriptions carry the owner marker after one space once adopted, so their trailing
    # whitespace is not kept (ownership.mark_description): compared without it
    for ra in state["roleAssignments"]:
        description = str(ra.get("description") or "").split("[reconciler-owner:")[0]
        out[f"role {ra.get('name')}"] = description.rstrip()
    for org in state["devops"]["organizations"]:
        for e in org.get("serviceEndpoints") or []:
            description = str(e.get("description") or "").split("[reconciler-owner:")[0]
            out[f"connection {e['id']}"] = (e["name"], description.rstrip())
    return out


@pytest.mark.parametrize("split", ["resource-group", "project", "none"])
def test_hostile_names_and_texts_round_trip_or_are_explained(
    hostile: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, split: str
) -> None:
    sim = hostile
    before = _live(sim)
    out = tmp_path / "exported"
    code, stdout, err = run(
        capsys, "export", "--subscription", SANDBOX, "--organization", "contoso",
        "--out", str(out), "--owner", "platform-team", "--split", split, *target(sim),
    )  # fmt: skip
    assert code == 0, stdout + err
    assert {p.parent for p in tmp_path.rglob("*") if p.is_file()} == {out}
    texts = {p.name: p.read_text(encoding="utf-8") for p in sorted(out.iterdir())}
    for name, text in texts.items():
        # no raw line break but "\n", no control character: a name in a comment cannot end
        # the comment's line, a value cannot be folded (YAML escapes them in double quotes)
        assert all(c == "\n" or c.isprintable() for c in text), name
        assert all(
            ln == "" or ln.startswith(("#", " ", "-")) or ":" in ln for ln in text.split("\n")
        )
        documents = yaml.safe_load(text)
        assert set(documents) <= {
            "version",
            "owner",
            "defaults",
            "identities",
            "serviceConnections",
        }
        assert documents["owner"] == "platform-team"
    whole = "\n".join(texts.values())
    # what could not be declared is named, with why
    for label in ("leading", "trailing", "long", "newline"):
        assert f"(id {_endpoint_id(sorted(CONNECTION_NAMES).index(label))}" in whole, label
    flat = re.sub(r"\n#\s*", " ", whole)  # comment lines joined back
    assert "(project: must be an Azure DevOps project name" in flat
    assert (
        "line\\x0abreak" not in whole and "# - service connection contoso/yes/line break" in whole
    )
    code, _, err = run(capsys, "validate", str(out))
    assert code == 0, err
    plan = tmp_path / "plan.json"
    code, _, err = run(capsys, "plan", str(out), *target(sim), "--out", str(plan))
    assert code == 0, err
    changes = json.loads(plan.read_text())["changes"]
    assert changes and all(c["reason"] == "adoption" for c in changes), changes
    # every identity is declared (its name read back as the same text), none left out
    adopted = {c["address"] for c in changes}
    for name in IDENTITY_NAMES:
        assert f"identity.{SANDBOX}/identities-rg/{name}".lower() in adopted, name
    code, _, err = run(capsys, "apply", str(out), *target(sim), "--auto-approve")
    assert code == 0, err
    code, stdout, err = run(capsys, "plan", str(out), *target(sim), "--detailed-exitcode")
    assert code == 0, stdout + err
    assert _live(sim) == before


# -- --out ----------------------------------------------------------------------------------


def _export_to(
    sim: Simulator, capsys: pytest.CaptureFixture[str], out: Path, *extra: str
) -> tuple[int, str]:
    code, stdout, err = run(
        capsys, "export", "--subscription", SANDBOX, "--organization", "contoso",
        "--out", str(out), "--owner", "platform-team", *extra, *target(sim),
    )  # fmt: skip
    return code, stdout + err


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def test_out_a_dangling_symlink_is_refused_naming_it(
    hostile: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for target_path in (tmp_path / "nowhere" / "specs", tmp_path / "not-yet"):
        link = tmp_path / f"link-{target_path.name}"
        link.symlink_to(target_path)
        code, text = _export_to(hostile, capsys, link)
        assert code == 1, text
        assert f"--out {link}" in text and "symbolic link" in text
        assert "Traceback" not in text
        assert not target_path.exists() and _files(tmp_path) == set()


def test_out_a_symlink_to_a_folder_elsewhere_writes_there_and_nowhere_else(
    hostile: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere" / "specs"
    elsewhere.mkdir(parents=True)
    here = tmp_path / "here"
    here.mkdir()
    link = here / "out"
    link.symlink_to(elsewhere, target_is_directory=True)
    code, text = _export_to(hostile, capsys, link)
    assert code == 0, text
    written = _files(tmp_path)
    assert written and {p.parent for p in written} == {elsewhere}
    assert link.is_symlink(), "the link itself is left as it is"
    # written once: a second export into the same (now full) folder needs --force
    before = {p: p.read_bytes() for p in written}
    code, text = _export_to(hostile, capsys, link)
    assert code == 1 and "not empty" in text and "--force" in text
    assert {p: p.read_bytes() for p in _files(tmp_path)} == before


def test_force_replaces_a_symlinked_file_in_out_never_its_target(
    hostile: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, text = _export_to(hostile, capsys, out)
    assert code == 0, text
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours\n")
    (name,) = [p.name for p in out.iterdir()][:1]
    (out / name).unlink()
    (out / name).symlink_to(victim)
    code, text = _export_to(hostile, capsys, out, "--force")
    assert code == 0, text
    assert victim.read_text() == "not yours\n"
    assert not (out / name).is_symlink() and (out / name).read_text().startswith("# yaml")


def test_out_an_existing_file_is_refused_and_left_alone(
    hostile: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    afile = tmp_path / "specs.yaml"
    afile.write_text("mine\n")
    for extra in ((), ("--force",)):
        code, text = _export_to(hostile, capsys, afile, *extra)
        assert code == 1 and f"--out {afile}: is a file" in text
        assert afile.read_text() == "mine\n"


def test_out_in_a_folder_nobody_may_write_is_refused_naming_it(
    hostile: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """/proc refuses new entries even to root (the tests may run as root, for whom a
    read-only mode bit is no obstacle)."""
    out = Path("/proc/reconciler-export-test")
    code, text = _export_to(hostile, capsys, out)
    assert code == 1, text
    assert f"--out {out}: cannot write there" in text and "Traceback" not in text


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through a read-only mode bit")
def test_out_in_a_read_only_folder_is_refused_naming_it(
    hostile: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, text = _export_to(hostile, capsys, locked / "specs")
        assert code == 1 and "cannot write there" in text
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)
