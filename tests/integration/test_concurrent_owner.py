"""Two applies of one owner at once (issue 9, section 7): the convergence check names the
other writer instead of reporting a generic non-convergence."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from reconciler import runner
from reconciler.cli import main
from reconciler.sim.server import Simulator

from .conftest import SANDBOX, Portal, run, target

OWNER = "ops-team"


def _spec(folder: Path, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"version: 1\nowner: {OWNER}\n"
        "identities:\n"
        f"  - name: {name}\n"
        f"    subscription: {SANDBOX}\n"
        "    resourceGroup: identities-rg\n"
        "    location: westeurope\n"
    )
    return path


def _address(name: str) -> str:
    return f"identity.{SANDBOX}/identities-rg/{name}"


def test_two_spec_sets_of_one_owner_applied_at_once_name_the_other_writer(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    portal: Portal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = _spec(tmp_path, "ops-a-mi"), _spec(tmp_path, "ops-b-mi")
    # both runs finish reading live state before either writes, and read it again only once
    # both have written: the interleaving two pipelines of one owner produce when they overlap
    barrier = threading.Barrier(2, timeout=60)
    observe = runner._observe

    def in_step(session: Any) -> Any:
        barrier.wait()  # the other run is done writing (or has not started)
        live = observe(session)
        barrier.wait()  # the other run has read too
        return live

    monkeypatch.setattr(runner, "_observe", in_step)
    codes: dict[str, int] = {}

    def apply(spec: Path) -> None:
        argv = ["apply", str(spec), *target(sim), "--auto-approve", "--allow-destroy"]
        codes[spec.stem] = main(argv)

    threads = [threading.Thread(target=apply, args=(s,)) for s in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    _, err = capsys.readouterr()
    assert codes == {"ops-a-mi": 1, "ops-b-mi": 1}, err
    assert err.count("another writer changed 1 of this owner's objects during the run") == 2
    assert f"{_address('ops-a-mi')} (appeared)" in err
    assert f"{_address('ops-b-mi')} (appeared)" in err
    assert f"another apply of owner '{OWNER}'" in err
    assert "did not converge" not in err
    # both landed: each run created its own identity and deleted nothing
    assert {"ops-a-mi", "ops-b-mi"} <= {i["name"] for i in portal.identities()}


def test_a_writer_that_deletes_this_runs_objects_is_named(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    portal: Portal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = _spec(tmp_path, "ops-a-mi"), _spec(tmp_path, "ops-b-mi")
    check = runner._check_converged
    nested: dict[str, Any] = {}

    def other_run_first(*args: Any, **kwargs: Any) -> int:
        if not nested:
            # the other spec set's whole apply lands between this run's writes and its check
            nested["code"] = main(
                ["apply", str(second), *target(sim), "--auto-approve", "--allow-destroy"]
            )
            nested["output"] = capsys.readouterr()
        return check(*args, **kwargs)

    monkeypatch.setattr(runner, "_check_converged", other_run_first)
    code, _, err = run(
        capsys, "apply", str(first), *target(sim), "--auto-approve", "--allow-destroy"
    )
    assert nested["code"] == 0, "the other run deleted ops-a-mi and converged"
    assert code == 1
    assert "another writer changed 2 of this owner's objects during the run" in err
    assert f"{_address('ops-a-mi')} (gone after this run wrote it)" in err
    assert f"{_address('ops-b-mi')} (appeared)" in err
    names = {i["name"] for i in portal.identities()}
    assert "ops-b-mi" in names and "ops-a-mi" not in names
