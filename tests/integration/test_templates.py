"""The CI templates under ``templates/``: each parses, says what the platform needs (workload
identity / OIDC, approvals, locks, no secret), and every ``reconciler`` step runs, as its script
text, with the pipeline's variables set, against the simulator.

A small emulator walks each pipeline's jobs in order. Script steps run through ``bash`` as the
platform runs them (Azure Pipelines: no ``-e``; GitHub: ``-eo pipefail``) with the installed
``reconciler`` console script on PATH. The only substitution: ``--auth X`` (real Azure sign-in)
becomes ``--target`` the simulator's connection file, which ``RECONCILER_TARGET`` also names for
the steps that sign in to nothing (validate, comment: the simulator's CA); everything else is
the template's own text with its macros and expressions filled in. Artifact steps copy files; sign-in, checkout and install steps are checked, not run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from reconciler.sim.server import Simulator

from .conftest import REPO, Portal

TEMPLATES = REPO / "templates"
ADO = sorted((TEMPLATES / "azure-pipelines").glob("*.yml"))
GITHUB = sorted((TEMPLATES / "github-actions").glob("*.yml"))
BIN = Path(sys.executable).parent
ORG, PROJECT, REPO_ID, PR = "contoso", "platform", "0c9f3a51-7d2e-4b6a-9e8f-1a2b3c4d5e6f", 31
GH_REPO, GH_PR = "contoso/identities", 5


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _admin(sim: Simulator, path: str, body: Any = None) -> Any:
    r = requests.request(
        "POST" if body is not None else "GET",
        f"{sim.arm_url}/_sim/pullrequests{path}",
        json=body,
        verify=sim.connection["ca_bundle"],
    )
    r.raise_for_status()
    return r.json()


def _has_reconciler_line(script: str) -> bool:
    return re.search(r"^\s*reconciler\s", script, re.MULTILINE) is not None


# --- static checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ADO + GITHUB, ids=lambda p: p.name)
def test_template_has_no_secret(path: Path) -> None:
    # what the pipeline does, without its comments (which explain that no PAT is needed)
    text = json.dumps(_load(path))
    for banned in ("secrets.", "AZURE_DEVOPS_EXT_PAT", "client-secret", "servicePrincipalKey"):
        assert banned not in text, f"{path.name} mentions {banned}"
    assert re.search(r"\bPAT\b", text) is None


def _ado_steps(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "task" in node or "script" in node:
            yield node
        for value in node.values():
            yield from _ado_steps(value)
    elif isinstance(node, list):
        for item in node:
            yield from _ado_steps(item)


@pytest.mark.parametrize("path", ADO, ids=lambda p: p.name)
def test_azure_pipelines_sign_in_with_workload_identity(path: Path) -> None:
    steps = list(_ado_steps(_load(path)))
    azure = [s for s in steps if s.get("task") == "AzureCLI@2"]
    assert azure, "the reconciler runs inside AzureCLI@2"
    for step in azure:
        inputs = step["inputs"]
        assert inputs["addSpnToEnvironment"] is True
        assert inputs["azureSubscription"]
        assert "--auth pipelines" in inputs["inlineScript"]
        # AzurePipelinesCredential needs the job token mapped explicitly
        assert step["env"]["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"
    for step in steps:
        if "script" in step and _has_reconciler_line(step["script"]):
            assert "--auth" not in step["script"], "Azure calls belong in AzureCLI@2"


@pytest.mark.parametrize("path", GITHUB, ids=lambda p: p.name)
def test_github_workflows_sign_in_with_oidc(path: Path) -> None:
    workflow = _load(path)
    assert workflow["permissions"]["id-token"] == "write"
    for job in workflow["jobs"].values():
        logins = [s for s in job["steps"] if str(s.get("uses", "")).startswith("azure/login@")]
        assert len(logins) == 1
        assert set(logins[0]["with"]) == {"client-id", "tenant-id", "subscription-id"}
        assert all("vars" in str(v) for v in logins[0]["with"].values())


def test_apply_templates_wait_for_approval_and_run_one_at_a_time() -> None:
    ado = _load(TEMPLATES / "azure-pipelines" / "apply.yml")
    (apply_stage,) = [s for s in ado["stages"] if s["stage"] == "Apply"]
    assert apply_stage["lockBehavior"] == "sequential"
    assert apply_stage["jobs"][0]["environment"] == "$(environmentName)"
    gh = _load(TEMPLATES / "github-actions" / "reconciler-apply.yml")
    assert gh["concurrency"]["cancel-in-progress"] is False
    assert gh["jobs"]["apply"]["environment"]
    assert gh["jobs"]["apply"]["needs"] == "plan"
    sharded = _load(TEMPLATES / "github-actions" / "reconciler-sharded-apply.yml")
    assert "matrix.shard.name" in sharded["jobs"]["apply"]["concurrency"]["group"]
    assert "matrix.shard.name" in sharded["jobs"]["apply"]["environment"]


def test_pull_request_workflow_may_comment() -> None:
    gh = _load(TEMPLATES / "github-actions" / "reconciler-pull-request.yml")
    assert gh["permissions"]["pull-requests"] == "write"
    # PyYAML reads the bare key `on` as True
    assert "pull_request" in (gh.get("on") or gh[True])


# --- the emulator ----------------------------------------------------------------------------


@dataclass
class Run:
    """One pipeline run's machine: a workspace with the checkout, artifacts and env."""

    sim: Simulator
    root: Path
    env: dict[str, str]
    outputs: list[tuple[str, int, str, str]] = field(default_factory=list)

    @property
    def sources(self) -> Path:
        return self.root / "s"

    def bash(self, name: str, script: str, env: Mapping[str, str], *, errexit: bool) -> int:
        flags = ["--noprofile", "--norc"] + (["-eo", "pipefail"] if errexit else [])
        # the one substitution: the template's real-Azure sign-in becomes the simulator target
        # (a connection file brings its own client credentials; --auth would be refused)
        script = re.sub(r"--auth \S+", f"--target {self.sim.connection_file}", script)
        merged = {**self.env, **env}
        done = subprocess.run(
            ["bash", *flags, "-c", script],
            cwd=self.sources,
            env=merged,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.outputs.append((name, done.returncode, done.stdout, done.stderr))
        return done.returncode

    def last(self) -> tuple[str, int, str, str]:
        return self.outputs[-1]


def _workspace(tmp_path: Path, sim: Simulator, specs: Mapping[str, Path]) -> Run:
    root = tmp_path / "agent"
    (root / "s").mkdir(parents=True)
    for name, source in specs.items():
        target = root / "s" / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TF_BUILD", "SYSTEM_", "BUILD_", "GITHUB_", "AZURESUBSCRIPTION_"))
    }
    base["PATH"] = f"{BIN}{os.pathsep}{base.get('PATH', '')}"
    base["RECONCILER_TARGET"] = str(sim.connection_file)
    return Run(sim, root, base)


def _shards(tmp_path: Path) -> dict[str, Path]:
    """Two team folders, each with its own owner (one owner per shard)."""
    made: dict[str, Path] = {}
    for team in ("team-a", "team-b"):
        text = (REPO / "specs" / "teams" / f"{team}.yaml").read_text(encoding="utf-8")
        folder = tmp_path / "shard-src" / team
        folder.mkdir(parents=True)
        (folder / f"{team}.yaml").write_text(
            text.replace("owner: platform-team", f"owner: {team}"), encoding="utf-8"
        )
        made[f"shards/{team}"] = folder
    return made


# Azure Pipelines ------------------------------------------------------------------------------

_MACRO = re.compile(r"\$\((?P<name>[A-Za-z_][A-Za-z0-9_.]*)\)")
_TEMPLATE_EXPR = re.compile(r"\$\{\{\s*(?P<expr>[^}]+?)\s*\}\}")


def _expand_each(node: Any, parameters: Mapping[str, Any], scope: Mapping[str, Any]) -> Any:
    """Template expressions: ``${{ each x in parameters.y }}`` and ``${{ x.field }}``."""
    if isinstance(node, list):
        out: list[Any] = []
        for item in node:
            if isinstance(item, dict) and len(item) == 1:
                ((key, body),) = item.items()
                found = re.fullmatch(r"\$\{\{\s*each (\w+) in parameters\.(\w+)\s*\}\}", str(key))
                if found:
                    for value in parameters[found.group(2)]:
                        inner = {**scope, found.group(1): value}
                        out.extend(_expand_each(body, parameters, inner))
                    continue
            out.append(_expand_each(item, parameters, scope))
        return out
    if isinstance(node, dict):
        return {
            _expand_each(k, parameters, scope): _expand_each(v, parameters, scope)
            for k, v in node.items()
        }
    if isinstance(node, str):

        def value(match: re.Match[str]) -> str:
            head, *rest = match.group("expr").split(".")
            current: Any = scope[head]
            for part in rest:
                current = current[part]
            return str(current)

        return _TEMPLATE_EXPR.sub(value, node)
    return node


def _ado_pipeline(path: Path) -> dict[str, Any]:
    raw = _load(path)
    parameters = {p["name"]: p.get("default") for p in raw.get("parameters") or []}
    expanded: dict[str, Any] = _expand_each(raw, parameters, {})
    return expanded


def _ado_jobs(pipeline: Mapping[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    stages = pipeline.get("stages") or [
        {"jobs": pipeline.get("jobs") or [{"job": "job", "steps": pipeline["steps"]}]}
    ]
    jobs: list[tuple[str, list[dict[str, Any]]]] = []
    for stage in stages:
        for job in stage["jobs"]:
            if "deployment" in job:
                jobs.append((job["deployment"], job["strategy"]["runOnce"]["deploy"]["steps"]))
            else:
                jobs.append((job["job"], job["steps"]))
    return jobs


def _run_ado(run: Run, path: Path, predefined: Mapping[str, str]) -> list[int]:
    """Run every job's steps in order; returns the exit code of each reconciler step. Stops a
    job at its first failing step, as the agent does (no step here opts out of that)."""
    pipeline = _ado_pipeline(path)
    variables = {**predefined, **(pipeline.get("variables") or {})}

    def fill(text: str) -> str:
        return _MACRO.sub(lambda m: str(variables[m.group("name")]), text)

    codes: list[int] = []
    for _, steps in _ado_jobs(pipeline):
        for step in steps:
            if "publish" in step:
                source = Path(fill(step["publish"]))
                target = Path(variables["Pipeline.Workspace"]) / step["artifact"]
                target.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, target, dirs_exist_ok=True)
                else:
                    shutil.copy(source, target)
                continue
            if step.get("task") == "AzureCLI@2":
                script = step["inputs"]["inlineScript"]
                # what the task exports to the script (the simulator target overrides sign-in)
                extra = {
                    "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": "sim-connection",
                    "AZURESUBSCRIPTION_CLIENT_ID": "sim-client",
                    "AZURESUBSCRIPTION_TENANT_ID": run.sim.connection["tenant_id"],
                    "SYSTEM_OIDCREQUESTURI": f"{run.sim.devops_url}/{ORG}/oidctoken",
                }
            elif "script" in step:
                script, extra = step["script"], {}
            else:
                continue  # checkout, download (artifacts are already in place), UsePythonVersion
            if not _has_reconciler_line(script):
                continue  # the install step: this test runs the installed package
            env = {**extra, **{k: fill(str(v)) for k, v in (step.get("env") or {}).items()}}
            code = run.bash(step.get("displayName", ""), fill(script), env, errexit=False)
            codes.append(code)
            if code != 0:
                return codes
    return codes


def _ado_predefined(run: Run, token: str) -> dict[str, str]:
    staging = run.root / "a"
    staging.mkdir(exist_ok=True)
    values = {
        "Build.ArtifactStagingDirectory": str(staging),
        "Pipeline.Workspace": str(run.root),
        "Build.SourcesDirectory": str(run.sources),
        "System.AccessToken": token,
        "Build.Reason": "PullRequest",
    }
    run.env.update(
        {
            "TF_BUILD": "True",
            "BUILD_REASON": "PullRequest",
            "SYSTEM_COLLECTIONURI": f"{run.sim.devops_url}/{ORG}/",
            "SYSTEM_TEAMPROJECT": PROJECT,
            "BUILD_REPOSITORY_ID": REPO_ID,
            "SYSTEM_PULLREQUEST_PULLREQUESTID": str(PR),
            "SYSTEM_PULLREQUEST_SOURCECOMMITID": "c0ffee00" * 5,
            "BUILD_BUILDID": "77",
            "BUILD_SOURCESDIRECTORY": str(run.sources),
            "BUILD_ARTIFACTSTAGINGDIRECTORY": str(staging),
            "PIPELINE_WORKSPACE": str(run.root),
        }
    )
    return values


@pytest.fixture
def ado_token(sim: Simulator) -> str:
    _admin(
        sim,
        "",
        {
            "platform": "azure-devops",
            "organization": ORG,
            "project": PROJECT,
            "repository": REPO_ID,
            "pullRequest": PR,
        },
    )
    return str(_admin(sim, "/tokens", {"platform": "azure-devops", "write": True})["token"])


def _threads(sim: Simulator) -> list[dict[str, Any]]:
    return [t for pr in _admin(sim, "")["azure_devops"] for t in pr["threads"]]


def _plan_is_empty(run: Run, specs: str) -> bool:
    return (
        run.bash("check", f'reconciler plan "{specs}" --detailed-exitcode', {}, errexit=False) == 0
    )


def _drift_out_of_band(sim: Simulator) -> None:
    """A portal user deletes the walkthrough identity's role assignment."""
    portal = Portal(sim)
    ado = portal.identity("identities-rg", "ado-pipeline-mi")
    ra = next(
        a
        for a in portal.assignments()
        if a["properties"]["principalId"] == ado["properties"]["principalId"]
    )
    sim.delete("role_assignment", ra["id"])


def test_azure_pipelines_pull_request_template(
    sim: Simulator, tmp_path: Path, ado_token: str
) -> None:
    run = _workspace(tmp_path, sim, {"specs": REPO / "specs"})
    predefined = _ado_predefined(run, ado_token)
    path = TEMPLATES / "azure-pipelines" / "pull-request.yml"
    assert _run_ado(run, path, predefined) == [0, 0, 0], run.outputs
    assert (run.root / "plan" / "plan.json").is_file()  # the published artifact
    (thread,) = _threads(sim)
    content = thread["comments"][0]["content"]
    assert "### Plan: 27 to create" in content and "`reconciler plan specs`" in content
    assert ado_token not in "".join(o[2] + o[3] for o in run.outputs)
    # the next push to the pull request edits the same comment
    assert _run_ado(run, path, predefined) == [0, 0, 0], run.outputs
    assert len(_threads(sim)) == 1


def test_azure_pipelines_validate_annotates_lines(
    sim: Simulator, tmp_path: Path, ado_token: str
) -> None:
    run = _workspace(tmp_path, sim, {"specs": REPO / "specs"})
    spec = run.sources / "specs" / "walkthrough.yaml"
    spec.write_text(spec.read_text().replace("  location: westeurope", "  locaton: westeurope"))
    codes = _run_ado(
        run, TEMPLATES / "azure-pipelines" / "pull-request.yml", _ado_predefined(run, ado_token)
    )
    assert codes == [1]
    _, _, out, _ = run.last()
    assert out.startswith(
        "##vso[task.logissue type=error;sourcepath=specs/walkthrough.yaml;linenumber="
    )
    assert "locaton" in out
    assert _threads(sim) == []


def test_azure_pipelines_apply_and_drift_templates(
    sim: Simulator, tmp_path: Path, ado_token: str
) -> None:
    run = _workspace(tmp_path, sim, {"specs": REPO / "specs"})
    predefined = _ado_predefined(run, ado_token)
    assert _run_ado(run, TEMPLATES / "azure-pipelines" / "apply.yml", predefined) == [0, 0]
    assert "Converged" in run.last()[2]
    assert _plan_is_empty(run, "specs")

    drift = TEMPLATES / "azure-pipelines" / "drift.yml"
    assert _run_ado(run, drift, predefined) == [0]
    summary = run.root / "a" / "drift.md"
    assert f"##vso[task.uploadsummary]{summary}" in run.last()[2]
    assert summary.read_text().startswith("### Drift: 0 differences")

    _drift_out_of_band(sim)
    assert _run_ado(run, drift, predefined) == [2]  # exit 2 fails the run
    assert f"##vso[task.uploadsummary]{summary}" in run.last()[2]
    assert summary.read_text().startswith("### Drift: 1 difference")
    assert (run.root / "drift" / "drift.json").is_file()  # published with condition: always()


def test_azure_pipelines_sharded_template(sim: Simulator, tmp_path: Path, ado_token: str) -> None:
    run = _workspace(tmp_path, sim, _shards(tmp_path))
    path = TEMPLATES / "azure-pipelines" / "sharded-apply.yml"
    assert _run_ado(run, path, _ado_predefined(run, ado_token)) == [0, 0, 0, 0], run.outputs
    owners = {
        i["tags"].get("reconciler-owner")
        for sub in ("11111111-1111-1111-1111-111111111111",)
        for i in Portal(sim).identities(sub)
    }
    assert {"team-a", "team-b"} <= owners
    assert _plan_is_empty(run, "shards/team-a") and _plan_is_empty(run, "shards/team-b")


# GitHub Actions -------------------------------------------------------------------------------


def _gh_context(run: Run, token: str, matrix: Mapping[str, Any]) -> dict[str, Any]:
    return {"github": {"token": token}, "matrix": dict(matrix)}


def _gh_fill(text: str, context: Mapping[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        head, *rest = match.group("expr").split(".")
        current: Any = context[head]
        for part in rest:
            current = current[part]
        return str(current)

    return _TEMPLATE_EXPR.sub(value, text)


def _run_github(run: Run, path: Path, token: str) -> list[int]:
    workflow = _load(path)
    artifacts = run.root / "artifacts"
    codes: list[int] = []
    summary = run.root / "step_summary.md"
    for job in workflow["jobs"].values():
        shards = (job.get("strategy") or {}).get("matrix", {}).get("shard") or [None]
        for shard in shards:
            context = _gh_context(run, token, {"shard": shard} if shard else {})
            for step in job["steps"]:
                uses = str(step.get("uses", ""))
                if uses.startswith("actions/upload-artifact@"):
                    name = _gh_fill(step["with"]["name"], context)
                    (artifacts / name).mkdir(parents=True, exist_ok=True)
                    shutil.copy(run.sources / step["with"]["path"], artifacts / name)
                    continue
                if uses.startswith("actions/download-artifact@"):
                    name = _gh_fill(step["with"]["name"], context)
                    for item in (artifacts / name).iterdir():
                        shutil.copy(item, run.sources / item.name)
                    continue
                script = step.get("run")
                if not script or not _has_reconciler_line(script):
                    continue  # checkout, setup-python, azure/login, install
                env = {
                    **{k: str(v) for k, v in (workflow.get("env") or {}).items()},
                    **{k: str(v) for k, v in (job.get("env") or {}).items()},
                    **{k: _gh_fill(str(v), context) for k, v in (step.get("env") or {}).items()},
                    "GITHUB_STEP_SUMMARY": str(summary),
                }
                code = run.bash(step.get("name", ""), _gh_fill(script, context), env, errexit=True)
                codes.append(code)
                if code != 0:
                    return codes
    return codes


@pytest.fixture
def gh_token(sim: Simulator) -> str:
    _admin(sim, "", {"platform": "github", "repository": GH_REPO, "pullRequest": GH_PR})
    return str(_admin(sim, "/tokens", {"platform": "github", "repository": GH_REPO})["token"])


def _gh_env(run: Run, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": GH_PR, "head": {"sha": "ab" * 20}}}))
    run.env.update(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_REPOSITORY": GH_REPO,
            "GITHUB_EVENT_PATH": str(event),
            "GITHUB_API_URL": f"{run.sim.arm_url}/github",
            "GITHUB_SERVER_URL": "https://github.example",
            "GITHUB_RUN_ID": "123",
            "GITHUB_SHA": "cd" * 20,
            "GITHUB_WORKSPACE": str(run.sources),
        }
    )


def test_github_pull_request_template(sim: Simulator, tmp_path: Path, gh_token: str) -> None:
    run = _workspace(tmp_path, sim, {"specs": REPO / "specs"})
    _gh_env(run, tmp_path)
    path = TEMPLATES / "github-actions" / "reconciler-pull-request.yml"
    assert _run_github(run, path, gh_token) == [0, 0, 0], run.outputs
    assert (run.root / "artifacts" / "plan" / "plan.json").is_file()
    assert _run_github(run, path, gh_token) == [0, 0, 0], run.outputs
    (comment,) = _admin(sim, "")["github"]
    assert "### Plan: 27 to create" in comment["body"]
    assert "https://github.example/contoso/identities/actions/runs/123" in comment["body"]
    assert gh_token not in "".join(o[2] + o[3] for o in run.outputs)


def test_github_validate_annotates_lines(sim: Simulator, tmp_path: Path, gh_token: str) -> None:
    run = _workspace(tmp_path, sim, {"specs": REPO / "specs"})
    _gh_env(run, tmp_path)
    spec = run.sources / "specs" / "walkthrough.yaml"
    spec.write_text(spec.read_text().replace("  location: westeurope", "  locaton: westeurope"))
    path = TEMPLATES / "github-actions" / "reconciler-pull-request.yml"
    assert _run_github(run, path, gh_token) == [1]
    out = run.last()[2]
    assert out.startswith("::error file=specs/walkthrough.yaml,line=")
    assert "locaton" in out


def test_github_apply_and_drift_templates(sim: Simulator, tmp_path: Path, gh_token: str) -> None:
    run = _workspace(tmp_path, sim, {"specs": REPO / "specs"})
    _gh_env(run, tmp_path)
    assert _run_github(run, TEMPLATES / "github-actions" / "reconciler-apply.yml", gh_token) == [
        0,
        0,
    ]
    assert "Converged" in run.last()[2]
    summary = run.root / "step_summary.md"
    assert summary.read_text().startswith("### Plan: 27 to create")
    assert _plan_is_empty(run, "specs")

    summary.unlink()
    drift = TEMPLATES / "github-actions" / "reconciler-drift.yml"
    assert _run_github(run, drift, gh_token) == [0]
    assert summary.read_text().startswith("### Drift: 0 differences")
    # the first run wrote the baseline the cache keeps; the next reads what changed
    assert (run.sources / ".reconciler" / "drift-baseline.json").is_file()
    _drift_out_of_band(sim)
    summary.unlink()
    assert _run_github(run, drift, gh_token) == [2]
    assert summary.read_text().startswith("### Drift: 1 difference")
    assert "**Read incrementally:**" in summary.read_text()
    assert (run.root / "artifacts" / "drift" / "drift.json").is_file()


def test_github_sharded_template(sim: Simulator, tmp_path: Path, gh_token: str) -> None:
    run = _workspace(tmp_path, sim, _shards(tmp_path))
    _gh_env(run, tmp_path)
    path = TEMPLATES / "github-actions" / "reconciler-sharded-apply.yml"
    assert _run_github(run, path, gh_token) == [0, 0, 0, 0], run.outputs
    owners = {i["tags"].get("reconciler-owner") for i in Portal(sim).identities()}
    assert {"team-a", "team-b"} <= owners
    assert _plan_is_empty(run, "shards/team-a") and _plan_is_empty(run, "shards/team-b")


def test_pre_commit_hook_validates_the_whole_spec_set() -> None:
    (hook,) = _load(REPO / ".pre-commit-hooks.yaml")
    assert hook["pass_filenames"] is False  # cross-file checks need every file of the set
    assert re.search(hook["files"], "specs/teams/team-a.yaml")
    command = [str(BIN / hook["entry"].split()[0]), *hook["entry"].split()[1:], *hook["args"]]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("valid: 4 files")
