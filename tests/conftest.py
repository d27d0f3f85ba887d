"""Shared fixtures. ``simulator``: one running simulator per test session (per xdist worker)
with the default seed; ``sim``: the same handle, reset to the seed with an empty request log
and no faults before each test. Every test that reaches the simulator, through ``sim`` or not
(``http``, ``simulator``), starts with no faults: a test that injects faults cannot leak them
into the next test on its worker."""

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


@pytest.fixture(autouse=True)
def _no_leaked_faults(request: pytest.FixtureRequest) -> None:
    # fixturenames is the whole closure, so tests using only a session fixture built on the
    # simulator (e.g. ``http``) are covered too; tests that never touch it do not start it
    if "simulator" in request.fixturenames:
        handle: Simulator = request.getfixturevalue("simulator")
        handle.set_faults(None)


@pytest.fixture
def sim(simulator: Simulator) -> Simulator:
    simulator.set_faults(None)
    simulator.reset()
    simulator.clear_log()
    return simulator
