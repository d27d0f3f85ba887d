"""Optional: plan and drift against a real tenant and organisation (read-only).

Runs only with RECONCILER_LIVE=1 and RECONCILER_LIVE_SPECS naming spec files or folders for that
tenant, and credentials the tool can find (Azure CLI login, environment, managed identity or an
Azure Pipelines service connection). Azure cannot be reached from CI, so CI skips these.
"""

from __future__ import annotations

import json
import os

import pytest

from reconciler.cli import main

LIVE = os.environ.get("RECONCILER_LIVE") == "1"
SPECS = os.environ.get("RECONCILER_LIVE_SPECS", "")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (LIVE and SPECS),
        reason="live Azure test: set RECONCILER_LIVE=1 and RECONCILER_LIVE_SPECS (no Azure here)",
    ),
]


def test_plan_against_real_azure_is_read_only_and_exits_0_or_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["plan", *SPECS.split(os.pathsep), "--detailed-exitcode", "--no-color"])
    out, err = capsys.readouterr()
    assert code in (0, 2), err
    assert "Bearer" not in out + err


def test_drift_against_real_azure(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["drift", *SPECS.split(os.pathsep), "--format", "json"])
    out, err = capsys.readouterr()
    assert code in (0, 2), err
    assert json.loads(out)["mode"] == "drift"
