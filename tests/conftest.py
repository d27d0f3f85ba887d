"""Shared fixtures. ``simulator``: one running simulator per test session (per xdist worker)
with the default seed; ``sim``: the same handle, reset to the seed with an empty request log
and no faults before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.sim.server import Simulator, start


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    handle = start(state_dir=tmp_path_factory.mktemp("sim"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def sim(simulator: Simulator) -> Simulator:
    simulator.set_faults(None)
    simulator.reset()
    simulator.clear_log()
    return simulator
