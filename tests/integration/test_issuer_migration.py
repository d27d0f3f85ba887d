"""Issuer migration in place (issue 11 §2), end to end over HTTPS against the simulator: a
connection on the Azure DevOps issuer whose spec asks for Entra plans as one update, "migrate
issuer in place", and apply moves it with no moment in which the pipeline cannot sign in
(checked with the simulator's own sign-in check around every write, and after an apply stopped
before each write), keeping its id and pipeline permissions; ``issuer: devops`` keeps it,
with the deadline reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.apply import Status
from reconciler.federation import devops_issuer, devops_subject, entra_federation
from reconciler.kinds.service_connection import LEGACY_DEADLINE, MIGRATE, MIGRATE_OPERATION
from reconciler.retry import RetryPolicy
from reconciler.sim.server import Simulator
from tests.sim.estates import LEGACY_ID, ORG_ID, estate

from .conftest import SANDBOX, Portal, run, target
from .stepping import Watch, apply_watched

ADDRESS = "service_connection.contoso/platform/legacy-sc"
LEGACY = (devops_issuer(ORG_ID), devops_subject("contoso", "platform", "legacy-sc"))
RG_SCOPE = f"/subscriptions/{SANDBOX}/resourceGroups/sandbox-rg"


def _spec(
    tmp_path: Path, issuer: str | None = None, extra_credentials: int = 0, name: str = "spec"
) -> Path:
    extra = "".join(
        f"      - name: github-{n}\n"
        f"        issuer: https://token.actions.githubusercontent.com\n"
        f"        subject: repo:contoso/app-{n}:ref:refs/heads/main\n"
        for n in range(extra_credentials)
    )
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        f"""version: 1
owner: platform-team
defaults:
  subscription: {SANDBOX}
  resourceGroup: identities-rg
  location: westeurope
identities:
  - name: legacy-mi
    roleAssignments:
      - role: Reader
        scope: {RG_SCOPE}
"""
        + (f"    federatedCredentials:\n{extra}" if extra else "")
        + """serviceConnections:
  - name: legacy-sc
    organization: contoso
    project: platform
    identity: legacy-mi
    subscriptionName: Sandbox
"""
        + (f"    issuer: {issuer}\n" if issuer else ""),
        encoding="utf-8",
    )
    return spec


@pytest.fixture
def world(sim: Simulator) -> Simulator:
    """The conversion estate, legacy-mi holding a role (a pipeline signs in only then)."""
    seed = estate(sim.tenant_id)
    seed["roleAssignments"].append(
        {
            "identity": f"{SANDBOX}/identities-rg/legacy-mi",
            "scope": RG_SCOPE,
            "role": "Reader",
        }
    )
    sim.reset(seed)
    sim.clear_log()
    return sim


def _adopted(sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Path:
    """Take the estate over while keeping the Azure DevOps issuer; returns the spec that then
    asks for Entra (the default)."""
    kept = _spec(tmp_path, "devops", name="kept")
    code, out, err = run(capsys, "apply", str(kept), *target(sim), "--auto-approve")
    assert code == 0, out + err
    return _spec(tmp_path)


def _connection(portal: Portal) -> dict[str, Any]:
    (found,) = [c for c in portal.connections("contoso", "platform") if c["id"] == LEGACY_ID]
    return found


def _pairs(portal: Portal) -> set[tuple[str, str]]:
    ident = portal.identity("identities-rg", "legacy-mi")
    return {
        (c["properties"]["issuer"], c["properties"]["subject"])
        for c in portal.credentials(ident["id"])
    }


def _entra(sim: Simulator) -> tuple[str, str]:
    return entra_federation(sim.tenant_id, ORG_ID, LEGACY_ID)


def _assert_migrated(sim: Simulator, portal: Portal) -> None:
    conn = _connection(portal)
    params = conn["authorization"]["parameters"]
    assert conn["authorization"]["scheme"] == "WorkloadIdentityFederation"
    assert (
        params["workloadIdentityFederationIssuer"],
        params["workloadIdentityFederationSubject"],
    ) == _entra(sim)
    assert params["workloadIdentityFederationIssuerType"] == "EntraID"
    pairs = _pairs(portal)
    assert _entra(sim) in pairs
    assert LEGACY not in pairs, "the legacy credential is deleted at the end"
    # the pipeline permissions the estate had are kept (the connection is the same object)
    perms = portal.permissions("contoso", "platform", LEGACY_ID)
    assert sorted(p["id"] for p in perms["pipelines"] if p["authorized"]) == [1, 2]
    assert sim.sign_in("contoso", LEGACY_ID)["ok"]


def test_plan_shows_one_in_place_migration_with_the_new_issuer_and_subject(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = _adopted(world, capsys, tmp_path)
    code, out, err = run(capsys, "plan", str(spec), *target(world), "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    (change,) = document["changes"]
    assert change["address"] == ADDRESS
    assert change["action"] == "update"
    assert change["operation"] == MIGRATE
    fields = {f["path"]: (f["before"], f["after"]) for f in change["fields"]}
    issuer, subject = _entra(world)
    assert fields == {"issuer": (LEGACY[0], issuer), "subject": (LEGACY[1], subject)}
    (notice,) = [n for n in document["notices"] if n["address"] == ADDRESS]
    assert LEGACY_DEADLINE in notice["message"] and "migrates it in place" in notice["message"]

    code, text, _ = run(capsys, "plan", str(spec), *target(world))
    assert code == 0
    assert MIGRATE_OPERATION in text and subject in text and issuer in text
    code, markdown, _ = run(capsys, "plan", str(spec), *target(world), "--format", "markdown")
    assert code == 0
    assert MIGRATE_OPERATION in markdown and subject in markdown


def test_apply_migrates_in_place_and_a_second_plan_is_empty(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = _adopted(world, capsys, tmp_path)
    watch = Watch(world, [("contoso", LEGACY_ID)])
    plan, result = apply_watched(world, spec, watch)
    assert [c.address.key for c in plan.changes] == ["contoso/platform/legacy-sc"]
    assert result.ok, [o.error for o in result.outcomes]
    # (a) the Entra credential, (b) the switch, (d) the legacy credential's delete, and no
    # other write: nothing else differs, so no ordinary update and no pipeline permissions
    assert watch.writes == [
        "put_credential",
        "convert_authentication_scheme",
        "delete_credential",
    ]
    # the connection is read once to start and once to verify the switch (c), no more
    assert watch.reads.count("get_endpoint") == 2, watch.reads
    assert watch.failures == []
    _assert_migrated(world, portal)
    code, out, err = run(capsys, "plan", str(spec), *target(world), "--detailed-exitcode")
    assert code == 0, out + err
    # the switch went through the one undocumented call, in the chosen form
    (convert,) = _conversions(world)
    assert convert["status"] == 200
    assert convert["method"] == "PUT" and convert["query"]["api-version"] == "7.1"
    assert f"/contoso/platform/_apis/serviceendpoint/endpoints/{LEGACY_ID}" in convert["path"]


def _conversions(sim: Simulator) -> list[dict[str, Any]]:
    return [
        r
        for r in sim.request_log(op="ServiceEndpoints_Update")
        if r["query"].get("operation") == "ConvertAuthenticationScheme"
    ]


@pytest.mark.parametrize("stop_before", [0, 1, 2])
def test_an_apply_stopped_before_any_write_never_breaks_sign_in_and_the_next_apply_finishes(
    world: Simulator,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    stop_before: int,
) -> None:
    spec = _adopted(world, capsys, tmp_path)
    watch = Watch(world, [("contoso", LEGACY_ID)], stop_before=stop_before)
    _, result = apply_watched(world, spec, watch)
    assert watch.stopped and not result.ok
    assert watch.failures == []
    assert world.sign_in("contoso", LEGACY_ID)["ok"], "stopped, the pipeline still signs in"
    # the connection is the same object whatever step it stopped at
    assert _connection(portal)["id"] == LEGACY_ID

    again = Watch(world, [("contoso", LEGACY_ID)])
    _, result = apply_watched(world, spec, again)
    assert result.ok, [o.error for o in result.outcomes]
    assert again.failures == []
    _assert_migrated(world, portal)
    code, out, err = run(capsys, "plan", str(spec), *target(world), "--detailed-exitcode")
    assert code == 0, out + err


class _LateCredential(Watch):
    """The Entra credential reaches Entra only after the first switch request (propagation):
    the service answers 202 ``converting_scheme`` once, then the retry goes through."""

    held: tuple[Any, ...] | None = None

    def around(self, name: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        if name == "put_credential" and self.held is None:
            self.held = (call, args, kwargs)
            self.writes.append(name)
            return None
        if name == "convert_authentication_scheme" and self.held is not None:
            answer = super().around(name, call, *args, **kwargs)
            put, put_args, put_kwargs = self.held
            put(*put_args, **put_kwargs)  # it has propagated now
            return answer
        return super().around(name, call, *args, **kwargs)


def test_converting_scheme_202_is_retried_until_the_credential_is_honoured(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = _adopted(world, capsys, tmp_path)
    watch = _LateCredential(world, [("contoso", LEGACY_ID)])
    _, result = apply_watched(world, spec, watch)
    assert result.ok, [o.error for o in result.outcomes]
    assert [r["status"] for r in _conversions(world)] == [202, 200]
    assert watch.failures == []
    _assert_migrated(world, portal)


class _NeverHonoured(Watch):
    """The Entra credential never reaches Entra (it is not written)."""

    def around(self, name: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        if name == "put_credential":
            self.writes.append(name)
            return None
        return super().around(name, call, *args, **kwargs)


def test_converting_scheme_that_never_completes_fails_naming_the_step(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = _adopted(world, capsys, tmp_path)
    watch = _NeverHonoured(world, [("contoso", LEGACY_ID)])
    _, result = apply_watched(
        world, spec, watch, policy=RetryPolicy(attempts=3, base_delay=0.1, budget=5.0)
    )
    (outcome,) = result.outcomes
    assert outcome.status is Status.FAILED
    assert "switch to the Entra issuer failed" in outcome.error
    assert "converting_scheme" in outcome.error
    # nothing was switched or deleted: the connection is where it was and still signs in
    conn = _connection(portal)
    assert conn["authorization"]["parameters"]["workloadIdentityFederationIssuer"] == LEGACY[0]
    assert LEGACY in _pairs(portal)
    assert watch.failures == []


def test_issuer_devops_keeps_the_legacy_issuer_and_drift_reports_the_deadline(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kept = _spec(tmp_path, "devops")
    code, out, err = run(capsys, "apply", str(kept), *target(world), "--auto-approve")
    assert code == 0, out + err
    code, out, err = run(capsys, "drift", str(kept), *target(world), "--format", "json")
    assert code == 0, out + err  # in sync: a notice is no drift
    document = json.loads(out)
    assert document["changes"] == []
    (notice,) = [n for n in document["notices"] if n["address"] == ADDRESS]
    assert notice["level"] == "warning"
    assert LEGACY_DEADLINE in notice["message"] and "issuer: devops" in notice["message"]
    code, text, _ = run(capsys, "drift", str(kept), *target(world))
    assert code == 0 and LEGACY_DEADLINE in text
    params = _connection(portal)["authorization"]["parameters"]
    assert params["workloadIdentityFederationIssuer"] == LEGACY[0]


def test_no_free_credential_slot_fails_the_plan_naming_the_identity(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # 19 declared credentials and the legacy one: 20, Azure's limit
    full = _spec(tmp_path, "devops", extra_credentials=19)
    code, out, err = run(capsys, "apply", str(full), *target(world), "--auto-approve")
    assert code == 0, out + err
    assert len(_pairs(portal)) == 20
    migrate = _spec(tmp_path, None, 19, name="migrate")
    code, out, err = run(capsys, "plan", str(migrate), *target(world))
    assert code == 1
    assert "identity legacy-mi has no free federated credential slot" in err
    assert "contoso/platform/legacy-sc" in err


def test_a_credential_the_specs_drop_is_deleted_first_to_make_room(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    full = _spec(tmp_path, "devops", extra_credentials=19)
    code, out, err = run(capsys, "apply", str(full), *target(world), "--auto-approve")
    assert code == 0, out + err
    # the new specs drop one credential: its delete frees the slot the migration needs
    migrate = _spec(tmp_path, None, 18, name="migrate")
    code, out, err = run(capsys, "plan", str(migrate), *target(world), "--format", "json")
    assert code == 0, err
    changes = {c["address"]: c for c in json.loads(out)["changes"]}
    (dropped,) = [a for a, c in changes.items() if c["action"] == "delete"]
    assert dropped in changes[ADDRESS]["depends_on"]
    watch = Watch(world, [("contoso", LEGACY_ID)])
    _, result = apply_watched(world, migrate, watch)
    assert result.ok, [o.error for o in result.outcomes]
    assert watch.failures == []
    assert watch.writes.index("delete_credential") < watch.writes.index("put_credential")
    _assert_migrated(world, portal)
    assert len(_pairs(portal)) == 19


def test_an_update_writes_only_what_differs(
    world: Simulator, portal: Portal, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # adoption declaring the pipeline permissions the connection already has: the owner marker
    # is written (one connection PUT), the permissions are neither read nor written again
    kept = _spec(tmp_path, "devops", name="kept")
    kept.write_text(
        kept.read_text(encoding="utf-8") + "    pipelinePermissions: [infra-deploy, app-ci]\n",
        encoding="utf-8",
    )
    watch = Watch(world, [("contoso", LEGACY_ID)])
    plan, result = apply_watched(world, kept, watch)
    assert result.ok, [o.error for o in result.outcomes]
    assert "contoso/platform/legacy-sc" in [c.address.key for c in plan.changes]
    assert watch.writes.count("update_endpoint") == 1, watch.writes
    assert "update_pipeline_permissions" not in watch.writes
    assert "get_pipeline_permissions" not in watch.reads

    # only the permissions differ: they are written, the connection is not PUT
    narrowed = tmp_path / "narrowed.yaml"
    narrowed.write_text(
        kept.read_text(encoding="utf-8").replace("[infra-deploy, app-ci]", "[app-ci]"),
        encoding="utf-8",
    )
    watch = Watch(world, [("contoso", LEGACY_ID)])
    plan, result = apply_watched(world, narrowed, watch)
    assert result.ok, [o.error for o in result.outcomes]
    assert watch.writes == ["update_pipeline_permissions"]
    assert watch.failures == []
    authorised = [
        p["id"]
        for p in portal.permissions("contoso", "platform", LEGACY_ID)["pipelines"]
        if p["authorized"]
    ]
    assert authorised == [2]
    code, out, err = run(capsys, "plan", str(narrowed), *target(world), "--detailed-exitcode")
    assert code == 0, out + err
    # the hand-named credential was explained when the connection was taken over; a plan of
    # the owned estate does not repeat it
    assert "already exists as" not in out + err
