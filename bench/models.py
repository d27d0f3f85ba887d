"""The two references every measurement is set against, computed from the spec and the seed.

Floor (plan): the fewest requests the APIs allow for the spec, divided by the concurrency,
times the latency; under the throttle model also no less than the time the documented rate
limits need for those requests. Floor (apply): the same for the reads before and after (apply
re-plans to prove it converged) plus the slowest of the documented rate limits the writes fall
under. Every bucket starts full, so these are lower bounds. ``migrate`` and ``roundtrip``
(an estate taken over: issuer migration and conversion; adoption after ``export``) are applies
of a live estate: their reads before and after are a warm plan's.

Per-resource refresh: one GET per declared resource, two per role assignment (the assignment
and its role definition), ten at a time, as Terraform's azurerm provider refreshes.

The minimum reads for a plan, and why none of them can go:
- identities: one paged list per subscription holding declared identities (a list is the
  only way to find owned identities the specs no longer name);
- federated credentials: one list per declared identity that exists (no API lists them
  across identities);
- role assignments: one paged list per subscription the assignments or identities touch;
- role definitions: one list per subscription of a declared scope (names resolve against the
  roles assignable there);
- reach: two Azure Resource Graph queries (the owner's identities and role assignments in
  every readable subscription), whatever the number of subscriptions; prune cannot prove it
  found every owned object without them (README "Safety");
- Azure DevOps: the organisation id and the project list once per organisation, the
  connections once per project (no organisation-wide list; prune must see every project), the
  pipelines once per project whose connections name pipelines, and pipeline permissions once
  per existing connection that declares them (there is no bulk read).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.world import BenchWorld
from reconciler.sim.faults import Faults
from reconciler.sim.throttle import (
    ADO_LIMIT_TSTU,
    ADO_WINDOW_S,
    ARM_GLOBAL_FACTOR,
    ARM_LIMITS,
    MSI_RATES,
)

AUTH_OPS = frozenset({"Token", "OpenIdConfiguration", "InstanceDiscovery"})
_PAGES = Faults()


@dataclass
class Request:
    """One request as the rate limits see it."""

    op: str
    cls: str  # ARM operation class (reads, writes, deletes) or "ado"
    sub: str | None = None
    msi: str | None = None  # Managed Identity operation (list, get, write, delete)
    resource: str | None = None  # the Managed Identity "resource" (identity or list scope)


@dataclass
class Reference:
    requests: int
    seconds: float
    rate_seconds: float = 0.0
    latency_seconds: float = 0.0
    by_op: dict[str, int] = field(default_factory=dict)
    binding: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rate_seconds": round(self.rate_seconds, 3),
            "latency_seconds": round(self.latency_seconds, 3),
            "binding": self.binding,
            "by_op": dict(sorted(self.by_op.items())),
        }


def _pages(count: int, size: int) -> int:
    return max(1, math.ceil(count / size))


def plan_reads(world: BenchWorld, live: bool) -> list[Request]:
    """The minimum reads of one plan; ``live``: the declared objects exist (warm, drift)."""
    reqs: list[Request] = [Request("Resources", "graph"), Request("Resources", "graph")]
    subs = sorted({i.subscription for i in world.identities})
    for sub in subs:
        here = sum(1 for i in world.identities if i.subscription == sub) if live else 0
        for _ in range(_pages(here, _PAGES.identity_page_size)):
            reqs.append(
                Request("UserAssignedIdentities_ListBySubscription", "reads", sub, "list", sub)
            )
    if live:
        for ident in world.identities:
            reqs.append(
                Request(
                    "FederatedIdentityCredentials_List",
                    "reads",
                    ident.subscription,
                    "list",
                    ident.arm_id.lower(),
                )
            )
    scope_subs = sorted(
        {a.scope.split("/")[2] for i in world.identities for a in i.assignments} | set(subs)
    )
    for sub in scope_subs:
        here = (
            sum(len(i.assignments) for i in world.identities if i.subscription == sub)
            if live
            else 0
        )
        for _ in range(_pages(here, _PAGES.role_assignment_page_size)):
            reqs.append(Request("RoleAssignments_ListForSubscription", "reads", sub))
        reqs.append(Request("RoleDefinitions_List", "reads", sub))
        # whether the resource groups (and the subscription) the specs name exist: one list
        reqs.append(Request("ResourceGroups_List", "reads", sub))
    reqs.append(Request("ConnectionData", "ado"))
    reqs.append(Request("Projects_List", "ado"))
    reqs.extend(Request("ServiceEndpoints_List", "ado") for _ in world.project_names)
    named = {
        i.connection.project
        for i in world.connections
        if i.connection is not None and i.connection.permissions != "all"
    }
    reqs.extend(Request("Pipelines_List", "ado") for _ in named)
    if live:
        reqs.extend(Request("PipelinePermissions_Get", "ado") for _ in world.connections)
    return reqs


def apply_writes(world: BenchWorld) -> list[Request]:
    """The writes of an apply from nothing: one per declared resource, plus the pipeline
    permissions of each connection."""
    reqs: list[Request] = []
    for ident in world.identities:
        key = ident.arm_id.lower()
        sub = ident.subscription
        reqs.append(Request("UserAssignedIdentities_CreateOrUpdate", "writes", sub, "write", key))
        n_fic = len(ident.credentials) + (1 if ident.connection else 0)
        for _ in range(n_fic):
            reqs.append(
                Request("FederatedIdentityCredentials_CreateOrUpdate", "writes", sub, "write", key)
            )
        for a in ident.assignments:
            reqs.append(Request("RoleAssignments_Create", "writes", a.scope.split("/")[2]))
        if ident.connection is not None:
            reqs.append(Request("ServiceEndpoints_Create", "ado"))
            reqs.append(Request("PipelinePermissions_Update", "ado"))
    return reqs


def migrate_writes(world: BenchWorld) -> list[Request]:
    """The fewest writes of the ``migrate`` seed's apply (issue 11 §2, §3), in place.

    Issuer migration, per connection: the Entra credential (PUT), the switch (``PUT
    .../endpoints/{id}?operation=ConvertAuthenticationScheme``), the read back that checks the
    issuer and subject the service reports, the legacy credential's DELETE. Conversion of a
    secret-based connection: the identity's inventory tag (PUT: a connection of the owner now
    signs in as it), the switch, the credential for the pair it then presents (PUT), the
    connection pointed at the identity (PUT) and the read back."""
    reqs: list[Request] = []
    for ident in world.connections:
        key = ident.arm_id.lower()
        sub = ident.subscription
        fic_put = Request(
            "FederatedIdentityCredentials_CreateOrUpdate", "writes", sub, "write", key
        )
        switch = Request("ServiceEndpoints_Update", "ado")
        read_back = Request("ServiceEndpoints_Get", "ado")
        if world.converted(ident):
            reqs.append(
                Request("UserAssignedIdentities_CreateOrUpdate", "writes", sub, "write", key)
            )
            reqs += [switch, fic_put, Request("ServiceEndpoints_Update", "ado"), read_back]
        else:
            fic_delete = Request(
                "FederatedIdentityCredentials_Delete", "deletes", sub, "delete", key
            )
            reqs += [fic_put, switch, read_back, fic_delete]
    return reqs


def adoption_writes(world: BenchWorld) -> list[Request]:
    """The fewest writes of adopting the ``unmarked`` seed (the ``roundtrip`` scenario): the
    owner marker stamped on every identity (PUT, with the inventory tag where a connection
    signs in as it), role assignment (PUT, description) and connection (PUT, description)."""
    reqs: list[Request] = []
    for ident in world.identities:
        key = ident.arm_id.lower()
        sub = ident.subscription
        reqs.append(Request("UserAssignedIdentities_CreateOrUpdate", "writes", sub, "write", key))
        for a in ident.assignments:
            reqs.append(Request("RoleAssignments_Create", "writes", a.scope.split("/")[2]))
        if ident.connection is not None:
            reqs.append(Request("ServiceEndpoints_Update", "ado"))
    return reqs


def refresh_requests(world: BenchWorld) -> list[Request]:
    out: list[Request] = []
    for r in world.refresh_reads():
        if r["cls"] == "ado":
            out.append(Request("ado-get", "ado"))
        else:
            out.append(Request("arm-get", "reads", r["sub"], r.get("msi"), r.get("res")))
    return out


def rate_seconds(reqs: list[Request], scale: float) -> tuple[float, str]:
    """The time the documented limits need for ``reqs``, every bucket full at the start: the
    largest (count - capacity) / rate over the buckets they draw on, and which one it is."""
    counts: Counter[tuple[str, ...]] = Counter()
    ado = 0
    for r in reqs:
        if r.cls == "ado":
            ado += 1
        if r.cls in ARM_LIMITS and r.sub:
            counts[("arm", r.sub, r.cls)] += 1
            counts[("arm-global", r.sub, r.cls)] += 1
        if r.msi:
            counts[("msi-tenant", r.msi)] += 1
            counts[("msi-subscription", r.msi, r.sub or "")] += 1
            counts[("msi-resource", r.msi, r.resource or "")] += 1
    worst, which = 0.0, ""
    for key, n in counts.items():
        if key[0] in ("arm", "arm-global"):
            capacity, rate = ARM_LIMITS[key[2]]
            if key[0] == "arm-global":
                capacity, rate = capacity * ARM_GLOBAL_FACTOR, rate * ARM_GLOBAL_FACTOR
        else:
            level = {"msi-tenant": 0, "msi-subscription": 1, "msi-resource": 2}[key[0]]
            rate = MSI_RATES[key[1]][level]
            capacity = max(1.0, rate)
        seconds = max(0.0, (n - capacity * scale) / (rate * scale))
        if seconds > worst:
            worst, which = seconds, f"{key[0]} {key[1]} ({n} requests at {rate * scale:g}/s)"
    # Azure DevOps: no delay while a sliding window's usage stays under the limit; past it,
    # the window frees the limit's worth of TSTU per window length at best
    limit = ADO_LIMIT_TSTU * scale
    seconds = max(0.0, (ado * _PAGES.ado_request_cost - limit) / (limit / ADO_WINDOW_S))
    if seconds > worst:
        worst, which = seconds, f"ado ({ado} requests, {ado * _PAGES.ado_request_cost:g} TSTU)"
    return worst, which


def _reference(
    phases: list[list[Request]],
    *,
    concurrency: int,
    latency_s: float,
    throttle_scale: float | None,
) -> Reference:
    every = [r for phase in phases for r in phase]
    latency = len(every) / concurrency * latency_s
    rate = 0.0
    binding = ""
    if throttle_scale is not None:
        parts = [rate_seconds(phase, throttle_scale) for phase in phases]
        rate = sum(p[0] for p in parts)
        binding = max(parts)[1]
    return Reference(
        requests=len(every),
        seconds=max(latency, rate + latency_s * len(phases)),
        rate_seconds=rate,
        latency_seconds=latency,
        by_op=dict(Counter(r.op for r in every)),
        binding=binding,
    )


def floor(
    world: BenchWorld,
    scenario: str,
    *,
    concurrency: int,
    latency_s: float,
    throttle_scale: float | None,
) -> Reference:
    if scenario == "apply":
        phases = [plan_reads(world, live=False), apply_writes(world), plan_reads(world, True)]
    elif scenario == "migrate":
        phases = [plan_reads(world, True), migrate_writes(world), plan_reads(world, True)]
    elif scenario == "roundtrip":
        phases = [plan_reads(world, True), adoption_writes(world), plan_reads(world, True)]
    else:
        phases = [plan_reads(world, live=scenario != "cold")]
    return _reference(
        phases, concurrency=concurrency, latency_s=latency_s, throttle_scale=throttle_scale
    )


REFRESH_WORKERS = 10


def refresh(
    world: BenchWorld, scenario: str, *, latency_s: float, throttle_scale: float | None
) -> Reference | None:
    """None where nothing is in state to refresh yet (cold plan, apply from nothing) and for
    the applies of an estate taken over (``migrate``, ``roundtrip``: no state file holds it)."""
    if scenario in ("cold", "apply", "migrate", "roundtrip"):
        return None
    return _reference(
        [refresh_requests(world)],
        concurrency=REFRESH_WORKERS,
        latency_s=latency_s,
        throttle_scale=throttle_scale,
    )
