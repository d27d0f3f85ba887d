"""Issue 10 §3: exit codes and error output that scheduled jobs can rely on, end to end."""

from __future__ import annotations

import io
import json
import re
import socket
from pathlib import Path

import pytest

from reconciler import runner
from reconciler.cli import main
from reconciler.retry import RetryPolicy
from reconciler.sim.server import Simulator

from .conftest import WALKTHROUGH, run, target


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- usage errors exit 1, not 2 (2 means drift) ------------------------------------------


@pytest.mark.parametrize(
    ("argv", "usage", "message"),
    [
        (
            ["plan", "x.yaml", "--bogus"],
            "usage: reconciler plan",
            "unrecognized arguments: --bogus",
        ),
        (["drift", "x.yaml", "--nope"], "usage: reconciler drift", "unrecognized arguments"),
        (
            ["plan", "x.yaml", "--format", "yaml"],
            "usage: reconciler plan",
            "invalid choice: 'yaml'",
        ),
        (["show"], "usage: reconciler show", "the following arguments are required: FILE"),
        ([], "usage: reconciler", "the following arguments are required: COMMAND"),
        (["sim", "serve", "--nope"], "usage: reconciler sim serve", "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_1_with_the_subcommands_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str], usage: str, message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert out == ""
    assert err.startswith(usage)
    assert message in err


def test_no_command_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)
    assert code == 1
    for command in ("validate", "plan", "drift", "show", "apply"):
        assert f"    {command}" in err


def test_drift_accepts_detailed_exitcode_as_a_no_op(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "drift", str(WALKTHROUGH), *target(sim), "--detailed-exitcode")
    assert code == 2 and "Drift: 4 differences" in out
    assert run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")[0] == 0
    code, out, _ = run(capsys, "drift", str(WALKTHROUGH), *target(sim), "--detailed-exitcode")
    assert code == 0 and "No drift" in out


# -- plan --out -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["missing-folder", "onto-a-folder"])
def test_plan_out_to_a_bad_place_prints_the_plan_then_exits_1_leaving_nothing(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str
) -> None:
    (tmp_path / "existing").mkdir()
    out_path = (
        tmp_path / "missing" / "plan.json" if where == "missing-folder" else tmp_path / "existing"
    )
    before = sorted(tmp_path.rglob("*"))
    code, out, err = run(capsys, "plan", str(WALKTHROUGH), *target(sim), "--out", str(out_path))
    assert code == 1
    assert "Plan: 4 to create" in out  # printed first: the reader keeps what they waited for
    assert f"error: --out {out_path}: " in err
    assert "does not exist" in err if where == "missing-folder" else "is a folder" in err
    assert "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before  # no stray temporary file


def test_plan_out_writes_atomically_and_leaves_no_temporary_file(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "plan", str(WALKTHROUGH), *target(sim), "--out", str(tmp_path / "p.json")
    )
    assert code == 0, err
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]
    assert json.loads((tmp_path / "p.json").read_text())["summary"]["create"] == 4


# -- show refuses what apply refuses ----------------------------------------------------


def test_show_and_apply_refuse_an_unsupported_plan_format_alike(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    saved = tmp_path / "plan.json"
    assert run(capsys, "plan", str(WALKTHROUGH), *target(sim), "--out", str(saved))[0] == 0
    document = json.loads(saved.read_text())
    document["format_version"] = "2.0"
    saved.write_text(json.dumps(document))
    code, out, show_err = run(capsys, "show", str(saved))
    assert code == 1 and out == ""
    assert f"error: {saved}: plan document format 2.0 is not supported" in show_err
    code, _, apply_err = run(capsys, "apply", str(saved), *target(sim), "--auto-approve")
    assert code == 1
    assert apply_err.splitlines()[-1] == show_err.splitlines()[-1]


# -- unreachable services and retries ---------------------------------------------------


def _broken_target(sim: Simulator, tmp_path: Path, *, fields: tuple[str, ...]) -> tuple[Path, int]:
    port = _closed_port()
    connection = dict(sim.connection)
    real = connection["authority"].rpartition(":")[2]
    for name in fields:
        connection[name] = connection[name].replace(f":{real}", f":{port}")
    path = tmp_path / "refused.json"
    path.write_text(json.dumps(connection))
    return path, port


def test_a_refused_endpoint_fails_naming_the_url_after_one_announced_retry(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path, port = _broken_target(sim, tmp_path, fields=("arm_url", "devops_url"))
    code, _, err = run(capsys, "plan", str(WALKTHROUGH), "--target", str(path))
    assert code == 1
    last = err.splitlines()[-1]
    assert last.startswith("error: ")
    assert f"cannot reach Azure Resource Manager at POST https://127.0.0.1:{port}/" in last or (
        f"cannot reach Azure Resource Manager at GET https://127.0.0.1:{port}/" in last
    )
    assert "connection refused (nothing listens there)" in last
    retries = [line for line in err.splitlines() if line.startswith("retrying ")]
    # one line per reason, however many reads were refused at once
    assert len(retries) == 1
    assert re.match(
        rf"retrying (GET|POST) https://127\.0\.0\.1:{port}/\S+ in \d+\.\ds: ServiceUnreachable",
        retries[0],
    )
    assert "?" not in retries[0]  # no query string


def test_throttled_reads_are_announced_on_stderr_with_url_reason_and_delay(
    sim: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a short retry policy, so that the run gives up quickly under a permanent 429
    monkeypatch.setattr(
        "reconciler.observe.RetryPolicy",
        lambda: RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02),
    )
    sim.set_faults(rate_429=1.0, ops=("Projects_List",), retry_after_ms=10)
    code, _, err = run(capsys, "plan", str(WALKTHROUGH), *target(sim))
    assert code == 1
    lines = err.splitlines()
    first = [line for line in lines if line.startswith("retrying GET")]
    assert len(first) == 1, err
    assert re.match(
        rf"retrying GET {re.escape(sim.devops_url)}/contoso/_apis/projects in \d+\.\ds: HTTP 429 ",
        first[0],
    )
    # the other retries of the same reason are counted, not printed one by one
    assert any(re.match(r"retried 2 more requests for HTTP 429 ", line) for line in lines), err


# -- credentials ------------------------------------------------------------------------


def test_without_credentials_one_line_per_credential_tried_and_the_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "RECONCILER_TARGET",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT",
        "MSI_ENDPOINT",
        "AZURE_DEVOPS_EXT_PAT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no `az` to ask
    code, out, err = run(capsys, "plan", str(WALKTHROUGH), "--auth", "auto")
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) <= 6, err
    assert sum("AzureCliCredential:" in line for line in lines) == 1
    assert sum("EnvironmentCredential:" in line for line in lines) == 1
    assert "ChainedTokenCredential failed" not in err
    assert "`az login`" in err and "--auth pipelines" in err and "--target FILE" in err


def test_the_run_says_once_whom_it_signed_in_as_and_never_the_secret(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "plan", str(WALKTHROUGH), *target(sim))
    assert code == 0
    signed = [line for line in err.splitlines() if line.startswith("signed in")]
    assert signed == [
        f"signed in to the simulator ({sim.connection_file}, tenant "
        f"{sim.connection['tenant_id']}) as application {sim.connection['client_id']}"
    ]
    assert sim.connection["client_secret"] not in out + err


# -- role names, interruption, columns --------------------------------------------------


def test_a_pruned_role_assignment_is_shown_by_role_name(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(capsys, "apply", str(WALKTHROUGH), *target(sim), "--auto-approve")[0] == 0
    spec = tmp_path / "spec.yaml"
    text = WALKTHROUGH.read_text()
    start = text.index("    roleAssignments:")
    end = text.index("serviceConnections:")
    spec.write_text(text[:start] + "\n" + text[end:])
    for fmt in ("text", "markdown"):
        code, out, err = run(capsys, "plan", str(spec), *target(sim), "--format", fmt)
        assert code == 0, err
        assert "role_assignment Contributor at /subscriptions/" in out
        assert "role_assignment b24988ac" not in out
    code, out, _ = run(capsys, "apply", str(spec), *target(sim), "--auto-approve")
    assert code == 0
    assert "role assignment ado-pipeline-mi: Contributor on sandbox-rg deleted" in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_an_interruption_message_starts_on_its_own_line_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "cmd_plan", interrupted)
    stderr = _Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    assert main(["plan", "x.yaml"]) == 130
    # the terminal echoed "^C" where the cursor was (after a bar or a prompt)
    assert stderr.getvalue() == "\ninterrupted\n"


def test_plan_time_errors_give_file_line_and_column(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(WALKTHROUGH.read_text().replace("role: Contributor", "role: Bucket Wrangler"))
    code, _, err = run(capsys, "plan", str(spec), *target(sim))
    assert code == 1
    lines = spec.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "role: Bucket Wrangler" in text)
    column = lines[line - 1].index("Bucket Wrangler") + 1
    assert f"{spec}:{line}:{column}: " in err
