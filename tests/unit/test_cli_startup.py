"""Start-up cost: commands that do not talk to Azure import neither the SDK nor metadata."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reconciler.cli import main


def test_version_goes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out, err = capsys.readouterr()
    assert out.startswith("reconciler ")
    assert len(out.split()) == 2
    assert err == ""


def _imported_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(result.stdout.split())


def test_parsing_arguments_imports_no_sdk_and_no_package_metadata() -> None:
    modules = _imported_after(
        "from reconciler.cli import build_parser\nbuild_parser().parse_args(['validate', 'x'])"
    )
    assert "importlib.metadata" not in modules
    assert not {m for m in modules if m == "azure" or m.startswith(("azure.", "requests"))}


def test_a_plan_without_differences_does_not_import_deepdiff() -> None:
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from cases.caseload import load_case\n"
        "from reconciler.plan import make_plan\n"
        "desired, live, _ = load_case('in_sync_walkthrough_no_changes')\n"
        "assert not make_plan(desired, live).changes\n"
        "assert 'deepdiff' not in sys.modules\n"
        "desired, live, _ = load_case('drift_out_of_band_edits')\n"
        "assert make_plan(desired, live).changes\n"
        "assert 'deepdiff' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_collector_is_tuned_only_when_the_cli_owns_the_process(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import gc

    before = gc.get_threshold()
    assert main(["validate", "specs/walkthrough.yaml"]) == 0
    assert gc.get_threshold() == before  # called with arguments: a test or a library user
    code = (
        "import gc, sys\n"
        "from reconciler.cli import main\n"
        "sys.argv = ['reconciler', 'validate', 'specs/walkthrough.yaml']\n"
        "assert main() == 0\n"
        "print(gc.get_threshold())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip().splitlines()[-1] == "(50000, 20, 100)"
