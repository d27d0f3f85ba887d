"""``make demo``: the whole story on the embedded simulator, from a fresh clone.

Starts the simulator, then runs the real commands against it exactly as a user would
(``reconciler ... --target <connection file>``), in two acts.

Act 1, starting from nothing: validate, plan, apply a saved plan, plan again (no changes), an
out-of-band "portal" edit, drift (exit 2), apply heals it, drift (0).

Act 2, taking over an estate (issue 11): a hand-made connection on the Azure DevOps (legacy)
issuer and a secret-based one are staged in the simulator as a portal user built them;
``export`` writes specs for them, ``validate``, ``plan`` (adoption only) and ``apply`` adopt
them; the engineer's edit (drop ``issuer: devops``, declare the secret connection signing in
as a managed identity) plans as an in-place issuer migration and an in-place conversion, which
``apply`` runs under the simulator's sign-in probe; the demo fails unless no pipeline sign-in
failed and both connections kept their ids.
"""

from __future__ import annotations

import difflib
import secrets
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.cli import main as cli_main
from reconciler.kinds.service_connection import CONVERT, MIGRATE
from reconciler.model import implied_credential_name

if TYPE_CHECKING:
    from reconciler.sim.probe import SignInProbe
    from reconciler.sim.server import Simulator

WALKTHROUGH = "specs/walkthrough.yaml"
SUBSCRIPTION = "11111111-1111-1111-1111-111111111111"

# Act 2's hand-made estate: team A's resource group and Azure DevOps project, owner "team-a"
# (another owner than act 1's platform-team, whose objects stay out of act 2's specs).
ORGANIZATION = "contoso"
PROJECT = "team-a"
RESOURCE_GROUP = "team-a-rg"
OWNER = "team-a"
LEGACY_IDENTITY = "team-a-deploy-mi"
LEGACY_IDENTITY_CLIENT = "6f1c2a9e-4b7d-4e3a-8c5f-0d9e8b7a6c51"
LEGACY_CONNECTION = "team-a-deploy"
LEGACY_CONNECTION_ID = "2b9e4c1a-6f3d-4e8a-9b7c-5d1e0f2a3b4c"
SECRET_CONNECTION = "team-a-ci"
SECRET_CONNECTION_ID = "8d4f6a2e-1c3b-4a5d-9e7f-3b2a1c0d9e8f"
APP_REGISTRATION = "3f2e1d0c-aaaa-4bbb-8ccc-0123456789ab"  # an app registration's client id
NEW_IDENTITY = "team-a-ci-mi"  # what the engineer declares for the secret connection
PLACEHOLDER = "<a user-assigned managed identity declared in these specs>"
# act 2: how long the simulator takes to honour a new federated credential (Entra's delay)
DEMO_PROPAGATION_MS = 500


def _step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}")


def _run(*argv: str, expect: int) -> int:
    print(f"$ reconciler {shlex.join(argv)}")
    sys.stdout.flush()
    code = cli_main(list(argv))
    sys.stdout.flush()
    print(f"[exit {code}]")
    if code != expect:
        raise SystemExit(f"demo: expected exit {expect} from `reconciler {argv[0]}`, got {code}")
    return code


def _portal_edits(sim: object) -> list[str]:
    """Play a portal user: three changes made outside the tool."""
    from reconciler.sim.server import Simulator

    assert isinstance(sim, Simulator)
    world = sim.world
    done: list[str] = []
    ident = next(i for i in world.identities.values() if i.name == "ado-pipeline-mi")
    fic_name = implied_credential_name("contoso", "platform", "ado-pipeline-mi")
    fic_id = f"{ident.arm_id}/federatedIdentityCredentials/{fic_name}"
    sim.edit("federated_credential", fic_id, {"subject": "sc://contoso/platform/renamed"})
    done.append(f"federated credential {fic_name}: subject changed")
    for name, ra in list(world.role_assignments.items()):
        if ra.principal_id.lower() == ident.principal_id.lower():
            sim.delete("role_assignment", name)
            done.append("role assignment Contributor on sandbox-rg: deleted")
    endpoint = next(e for e in world.endpoints.values() if e.name == "ado-pipeline-mi")
    sim.edit("service_connection", endpoint.id, {"description": "edited in the portal"})
    done.append("service connection ado-pipeline-mi: description edited")
    return done


def _act(title: str) -> None:
    bar = "=" * 78
    text = f"\n{bar}\n{title}\n{bar}"
    print(f"\033[1m{text}\033[0m" if sys.stdout.isatty() else text)


def stage_estate(sim: Simulator, secret: str) -> None:
    """Play a portal user before the tool existed: add to the simulator's state (act 1's
    objects kept) a managed identity with a Contributor role and a federated credential on the
    Azure DevOps (legacy) issuer, the ``azurerm`` connection signing in as it on that issuer,
    and a secret-based connection (scheme ServicePrincipal) signing in as an app registration;
    each authorised for one pipeline of ``PROJECT``. Loaded as a seed (``sim.reset``)."""
    state = sim.state()
    org = next(o for o in state["devops"]["organizations"] if o["name"] == ORGANIZATION)
    scope = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
    # The legacy issuer and subject Azure DevOps generated for the connection
    # (https://learn.microsoft.com/azure/devops/pipelines/release/troubleshoot-workload-identity)
    state["identities"].append(
        {
            "subscription": SUBSCRIPTION,
            "resourceGroup": RESOURCE_GROUP,
            "name": LEGACY_IDENTITY,
            "location": "westeurope",
            "clientId": LEGACY_IDENTITY_CLIENT,
            "federatedCredentials": [
                {
                    "name": f"{ORGANIZATION}-{PROJECT}-{LEGACY_CONNECTION}",
                    "issuer": f"https://vstoken.dev.azure.com/{org['id']}",
                    "subject": f"sc://{ORGANIZATION}/{PROJECT}/{LEGACY_CONNECTION}",
                    "audiences": ["api://AzureADTokenExchange"],
                }
            ],
        }
    )
    state["roleAssignments"].append(
        {
            "identity": f"{SUBSCRIPTION}/{RESOURCE_GROUP}/{LEGACY_IDENTITY}",
            "scope": scope,
            "role": "Contributor",
        }
    )
    data = {
        "subscriptionId": SUBSCRIPTION,
        "subscriptionName": "Sandbox",
        "environment": "AzureCloud",
        "scopeLevel": "Subscription",
    }
    org.setdefault("serviceEndpoints", []).extend(
        [
            {
                "id": LEGACY_CONNECTION_ID,
                "name": LEGACY_CONNECTION,
                "issuer": "devops",
                "parameters": {
                    "serviceprincipalid": LEGACY_IDENTITY_CLIENT,
                    "tenantid": sim.tenant_id,
                    "scope": scope,
                },
                "data": {**data, "creationMode": "Manual"},
                "projects": [PROJECT],
            },
            {
                "id": SECRET_CONNECTION_ID,
                "name": SECRET_CONNECTION,
                "scheme": "ServicePrincipal",
                "parameters": {
                    "serviceprincipalid": APP_REGISTRATION,
                    "tenantid": sim.tenant_id,
                    "authenticationType": "spnKey",
                    "serviceprincipalkey": secret,
                },
                "data": {**data, "creationMode": "Automatic"},
                "projects": [PROJECT],
            },
        ]
    )
    pipelines = {p["name"]: p["id"] for p in _project(org)["pipelines"]}
    org.setdefault("pipelinePermissions", []).extend(
        [
            {"project": PROJECT, "endpoint": name, "pipelines": [pipelines[pipeline]]}
            for name, pipeline in (
                (LEGACY_CONNECTION, "team-a-deploy"),
                (SECRET_CONNECTION, "team-a-ci"),
            )
        ]
    )
    sim.reset(state)


def _project(org: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in org["projects"] if p["name"] == PROJECT)
    return found


def _issuer_kind(issuer: str) -> str:
    if issuer.startswith("https://vstoken.dev.azure.com/"):
        return "Azure DevOps issuer, legacy"
    if issuer.startswith("https://login.microsoftonline.com/"):
        return "Entra issuer"
    return "another issuer"


@dataclass(frozen=True)
class Connection:
    """What the simulator holds for one of act 2's connections: never the secret itself, only
    whether one is set. ``signs_in_as`` is the managed identity's name, or the client id of an
    app registration the simulator does not hold; ``credentials`` are that identity's federated
    credentials as (name, issuer)."""

    name: str
    id: str
    scheme: str
    issuer: str | None
    secret_set: bool
    signs_in: bool
    signs_in_as: str
    credentials: tuple[tuple[str, str], ...]

    def lines(self) -> list[str]:
        secret = "client secret set" if self.secret_set else "no secret"
        sign_in = "a pipeline signs in" if self.signs_in else "a pipeline CANNOT sign in"
        out = [
            f"{self.name}  id {self.id}",
            f"    {self.scheme} as {self.signs_in_as}, {secret}: {sign_in}",
        ]
        if self.issuer:
            out.append(f"    issuer {self.issuer} ({_issuer_kind(self.issuer)})")
        for name, issuer in self.credentials:
            out.append(f"    federated credential {name}: {_issuer_kind(issuer)}")
        return out


def estate_connections(sim: Simulator) -> dict[str, Connection]:
    """Act 2's two connections as the simulator holds them, by name."""
    from reconciler.sim.world import SECRET_PARAMETERS

    answers = {a["id"].lower(): a for a in sim.sign_ins()}
    found: dict[str, Connection] = {}
    with sim.world.lock:
        by_client = {i.client_id.lower(): i for i in sim.world.identities.values()}
        for e in sim.world.endpoints.values():
            if e.organization != ORGANIZATION or e.name not in (
                LEGACY_CONNECTION,
                SECRET_CONNECTION,
            ):
                continue
            client = str(e.parameters.get("serviceprincipalid") or "")
            identity = by_client.get(client.lower())
            found[e.name] = Connection(
                name=e.name,
                id=e.id,
                scheme=e.scheme,
                issuer=e.parameters.get("workloadIdentityFederationIssuer"),
                secret_set=any(
                    k.lower() in SECRET_PARAMETERS and v for k, v in e.parameters.items()
                ),
                signs_in=bool(answers.get(e.id.lower(), {}).get("ok")),
                signs_in_as=identity.name if identity else f"app registration {client}",
                credentials=tuple(
                    sorted((f.name, f.issuer) for f in identity.fics.values()) if identity else ()
                ),
            )
    return found


def engineer_edit(text: str) -> str:
    """The platform engineer's edit of the exported ``estate.yaml``: drop ``issuer: devops``
    (and the comment asking for it), declare ``NEW_IDENTITY`` with a Reader role on
    ``RESOURCE_GROUP``, and declare the secret connection as the export's comment suggests,
    signing in as it (the comment is then removed). ``SystemExit`` if the export no longer
    reads as expected."""
    lines = text.splitlines()

    def find(wanted: str) -> int:
        for index, line in enumerate(lines):
            if line.strip() == wanted:
                return index
        raise SystemExit(f"demo: the exported spec has no line {wanted!r}")

    # 1. migrate the legacy connection: its `issuer: devops` and the comment above it go
    del lines[find("issuer: devops")]
    entry = find(f"- name: {LEGACY_CONNECTION}")
    first = entry
    while lines[first - 1].lstrip().startswith("#"):
        first -= 1
    del lines[first:entry]

    # 2. the export's suggestion for the secret connection, uncommented
    start = find(
        "# Not exported: live objects in scope that these specs cannot declare, each with the reason."
    )
    suggestion_at = find("#     serviceConnections:")
    end = suggestion_at + 1
    while end < len(lines) and lines[end].startswith("#     "):
        end += 1
    suggestion = [
        "  " + line.removeprefix("#     ").replace(PLACEHOLDER, NEW_IDENTITY)
        for line in lines[suggestion_at + 1 : end]
    ]
    if not any(NEW_IDENTITY in line for line in suggestion):
        raise SystemExit("demo: the export's suggestion names no identity to fill in")
    while start > 0 and not lines[start - 1].strip():
        start -= 1
    del lines[start:end]
    lines += suggestion

    # 3. the managed identity the converted connection signs in as
    identity = [
        f"  - name: {NEW_IDENTITY}",
        f"    subscription: {SUBSCRIPTION}",
        f"    resourceGroup: {RESOURCE_GROUP}",
        "    location: westeurope",
        "    roleAssignments:",
        "    - role: Reader",
        f"      resourceGroup: {RESOURCE_GROUP}",
    ]
    connections = find("serviceConnections:")
    lines[connections - 1 : connections - 1] = identity
    return "\n".join(lines) + "\n"


def check_probe(probe: SignInProbe) -> str:
    """The probe's line for the screen; ``SystemExit`` naming the failures if any sign-in
    failed (or if the probe checked nothing, which would prove nothing)."""
    line = (
        f"sign-in probe: {probe.checks} sign-ins of {probe.counted} connections during the "
        f"apply, {probe.failures} failed"
    )
    if probe.failures:
        raise SystemExit(f"demo: {line}: {'; '.join(probe.reasons)}")
    if not probe.checks:
        raise SystemExit(f"demo: {line}: the probe checked nothing")
    return line


@dataclass
class Outcome:
    """What act 2 ends with, for the end-to-end test: the connections before and after, and
    the probe's counts."""

    before: dict[str, Connection]
    after: dict[str, Connection]
    probe_line: str
    checks: int
    failures: int


def act_one(sim: Simulator, workdir: Path) -> None:
    """A team starts from nothing: the walkthrough, portal drift, healed."""
    target = str(sim.connection_file)
    plan_file = str(workdir / "walkthrough.plan.json")
    _act("Act 1: a new team declares its first service connection")

    _step("Validate every example spec")
    _run("validate", "specs", expect=0)

    _step("Plan the Azure DevOps walkthrough (nothing exists yet) and save the plan")
    _run("plan", WALKTHROUGH, "--target", target, "--out", plan_file, expect=0)

    _step("Apply the saved plan: identity, role, connection, then its federated credential")
    _run("apply", plan_file, "--target", target, "--auto-approve", expect=0)

    _step("Plan again: nothing left to do")
    _run("plan", WALKTHROUGH, "--target", target, "--detailed-exitcode", expect=0)

    _step("Someone edits things in the portal")
    for line in _portal_edits(sim):
        print(f"  * {line}")

    _step("The scheduled drift job notices (exit 2)")
    _run("drift", WALKTHROUGH, "--target", target, expect=2)

    _step("Apply heals it")
    _run("apply", WALKTHROUGH, "--target", target, "--auto-approve", expect=0)

    _step("The drift job is quiet again (exit 0)")
    _run("drift", WALKTHROUGH, "--target", target, expect=0)


def act_two(sim: Simulator, workdir: Path, secret: str) -> Outcome:
    """Taking over an estate: stage (the secret-based connection holds ``secret``, never
    shown), export, adopt, edit, migrate and convert under the sign-in probe, converge;
    checked through the simulator."""
    from reconciler.sim.probe import SignInProbe

    target = str(sim.connection_file)
    folder = workdir / "estate"
    spec = folder / "estate.yaml"
    _act("Act 2: taking over an estate built by hand before the tool existed")

    _step("The estate, as a portal user built it (staged in the simulator; act 1's objects stay)")
    stage_estate(sim, secret)
    print(
        f"Two service connections in {ORGANIZATION}/{PROJECT}, each authorised for one pipeline; "
        f"{LEGACY_IDENTITY} (in {RESOURCE_GROUP}) is Contributor on {RESOURCE_GROUP}:"
    )
    before = estate_connections(sim)
    _show(before)

    _step("Export it to specs (reads only; the secret is never read or written)")
    _run(
        "export",
        "--subscription",
        SUBSCRIPTION,
        "--resource-group",
        RESOURCE_GROUP,
        "--organization",
        ORGANIZATION,
        "--project",
        PROJECT,
        "--split",
        "none",
        "--owner",
        OWNER,
        "--out",
        str(folder),
        "--target",
        target,
        expect=0,
    )
    exported = spec.read_text(encoding="utf-8")
    print(f"--- {spec}")
    print(exported, end="")
    print("---")

    _step("The exported specs validate")
    _run("validate", str(folder), expect=0)

    _step(
        "Plan: adoption only, the owner marker is stamped and nothing else moves (exit 2: changes)"
    )
    adopt_plan = str(workdir / "adopt.plan.json")
    _run(
        "plan",
        str(folder),
        "--target",
        target,
        "--out",
        adopt_plan,
        "--detailed-exitcode",
        expect=2,
    )

    _expect_changes(adopt_plan, {"update adoption": 3})

    _step("Apply the adoption: from now on the specs are the source of truth")
    _run("apply", adopt_plan, "--target", target, "--auto-approve", expect=0)

    _step("The engineer edits the spec: Entra issuer, and no more secret")
    edited = engineer_edit(exported)
    print(
        f"  * {LEGACY_CONNECTION}: 'issuer: devops' (and its comment) goes, so it moves to the "
        "Entra issuer\n"
        f"  * {NEW_IDENTITY}: a new managed identity, Reader on {RESOURCE_GROUP}\n"
        f"  * {SECRET_CONNECTION}: declared as the export's comment suggests, signing in as "
        f"{NEW_IDENTITY}"
    )
    spec.write_text(edited, encoding="utf-8")
    diff = difflib.unified_diff(
        exported.splitlines(),
        edited.splitlines(),
        "estate.yaml (exported)",
        "estate.yaml",
        n=1,
        lineterm="",
    )
    for line in diff:
        print(line)

    _step("Plan: migrate the issuer in place, convert the secret connection in place")
    move_plan = str(workdir / "migrate.plan.json")
    _run("plan", str(folder), "--target", target, "--out", move_plan, expect=0)
    _expect_changes(
        move_plan,
        {
            "create new in spec": 2,  # the identity and its role assignment
            f"update {MIGRATE} {LEGACY_CONNECTION}": 1,
            f"update {CONVERT} {SECRET_CONNECTION}": 1,
        },
    )

    # the apply takes about a second here: poll often enough to see every step
    probe = SignInProbe.of(sim, interval=0.005)
    _step(
        f"Apply, while a probe signs in as every connection every {probe.interval * 1000:.0f} ms "
        "(what Microsoft Entra checks when a pipeline presents its token)"
    )
    # as in Azure, a new federated credential is honoured only after a delay (Entra's
    # propagation: seconds to minutes there, half a second here); the apply waits for it
    # before pointing the converted connection at its identity (60 s by default, 1 s here)
    print(
        "  The simulator now honours a new federated credential 0.5 s after it is written, as "
        "Entra does after a delay;\n  apply waits --credential-propagation seconds (default 60) "
        "before pointing a connection at a new credential."
    )
    sim.set_faults(None, fic_propagation_ms=DEMO_PROPAGATION_MS)
    time.sleep(DEMO_PROPAGATION_MS / 1000 + 0.1)  # what act 1 wrote is honoured by now
    with probe:
        _run(
            "apply",
            move_plan,
            "--target",
            target,
            "--auto-approve",
            "--credential-propagation",
            "1",
            expect=0,
        )
    sim.set_faults(None)
    probe_line = check_probe(probe)
    print(f"{probe_line} (every connection that could sign in before it: act 1's and these two)")

    _step("Plan again: nothing left to do")
    _run("plan", str(folder), "--target", target, "--detailed-exitcode", expect=0)

    _step("What the simulator holds now: same ids, Entra issuer, no secret")
    after = estate_connections(sim)
    _show(after)
    _check_outcome(before, after)
    print(
        f"  App registration {APP_REGISTRATION} and its own secret are left alone (the plan's "
        "notice): retire them once no pipeline needs them."
    )
    return Outcome(before, after, probe_line, probe.checks, probe.failures)


def _show(connections: dict[str, Connection]) -> None:
    for name in (LEGACY_CONNECTION, SECRET_CONNECTION):
        for line in connections[name].lines():
            print(f"  {line}")


def _expect_changes(plan_file: str, wanted: dict[str, int]) -> None:
    """``SystemExit`` unless the saved plan holds exactly ``wanted``: counts of changes by
    "action reason" or, for a service connection update with an operation, "action operation
    name"."""
    import json
    from collections import Counter

    found: Counter[str] = Counter()
    for change in json.loads(Path(plan_file).read_text(encoding="utf-8"))["changes"]:
        if change.get("operation"):
            name = str(change["key"]).rsplit("/", 1)[-1]
            found[f"{change['action']} {change['operation']} {name}"] += 1
        else:
            found[f"{change['action']} {change['reason']}"] += 1
    if dict(found) != wanted:
        raise SystemExit(f"demo: {plan_file} holds {dict(found)}, expected {wanted}")


def _check_outcome(before: dict[str, Connection], after: dict[str, Connection]) -> None:
    for name in (LEGACY_CONNECTION, SECRET_CONNECTION):
        old, new = before[name], after.get(name)
        if new is None or new.id != old.id:
            raise SystemExit(f"demo: connection {name} lost its id {old.id}")
        if new.scheme != "WorkloadIdentityFederation" or not (new.issuer or "").startswith(
            "https://login.microsoftonline.com/"
        ):
            raise SystemExit(f"demo: {name} is not on the Entra issuer: {' '.join(new.lines())}")
        if new.secret_set or not new.signs_in:
            raise SystemExit(f"demo: connection {name}: {' '.join(new.lines())}")
        legacy = [c for c, issuer in new.credentials if "vstoken.dev.azure.com" in issuer]
        if legacy:
            raise SystemExit(f"demo: {new.signs_in_as} still has legacy credentials {legacy}")


def play(sim: Simulator, workdir: Path, *, secret: str | None = None) -> Outcome:
    """Both acts against a running simulator, writing plans and specs under ``workdir``; the
    hand-made secret-based connection holds ``secret`` (default: a random one). ``SystemExit``
    when a command's exit code or an outcome is not the expected one."""
    act_one(sim, workdir)
    outcome = act_two(sim, workdir, secret or secrets.token_urlsafe(24))
    stats = sim.stats()
    _step("Done")
    print(
        f"The simulator served {stats['total']} requests, "
        f"{stats.get('throttled_total', 0)} throttled. "
        "Try `reconciler plan specs --target <connection file>` with "
        "`reconciler sim serve` running, or `make test`."
    )
    return outcome


def main() -> int:
    from reconciler.sim.server import start

    with tempfile.TemporaryDirectory(prefix="reconciler-demo-") as tmp:
        _step("Start the local Azure + Azure DevOps simulator (HTTPS on loopback)")
        sim = start(state_dir=Path(tmp) / "sim")
        print(f"ARM          {sim.arm_url}")
        print(f"Azure DevOps {sim.devops_url}")
        print(f"connection   {sim.connection_file}")
        try:
            play(sim, Path(tmp))
        finally:
            sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
