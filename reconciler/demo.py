"""``make demo``: the whole story on the embedded simulator, from a fresh clone.

Starts the simulator, then runs the real commands against it exactly as a user would
(``reconciler ... --target <connection file>``): validate, plan, apply a saved plan, plan
again (no changes), an out-of-band "portal" edit, drift (exit 2), apply heals it, drift (0).
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

from reconciler.cli import main as cli_main
from reconciler.model import implied_credential_name

WALKTHROUGH = "specs/walkthrough.yaml"
SUBSCRIPTION = "11111111-1111-1111-1111-111111111111"


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


def main() -> int:
    from reconciler.sim.server import start

    with tempfile.TemporaryDirectory(prefix="reconciler-demo-") as tmp:
        _step("Start the local Azure + Azure DevOps simulator (HTTPS on loopback)")
        sim = start(state_dir=Path(tmp) / "sim")
        target = str(sim.connection_file)
        print(f"ARM          {sim.arm_url}")
        print(f"Azure DevOps {sim.devops_url}")
        print(f"connection   {target}")
        plan_file = str(Path(tmp) / "walkthrough.plan.json")
        try:
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

            stats = sim.stats()
            _step("Done")
            print(
                f"The simulator served {stats['total']} requests, "
                f"{stats.get('throttled_total', 0)} throttled. "
                "Try `reconciler plan specs --target <connection file>` with "
                "`reconciler sim serve` running, or `make test`."
            )
        finally:
            sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
