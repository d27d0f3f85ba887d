"""The apply schedule at scale: the heap takes exactly what a full rescan would, and fast."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from reconciler.apply import (
    ConcurrencyKey,
    Status,
    _Schedule,
)
from reconciler.kinds.executors import concurrency_key as default_concurrency_key
from reconciler.kinds.executors import lane as service_lane
from reconciler.model import Address, Kind
from reconciler.plan import Action, Change, Reason


class _Rescan(_Schedule):
    """The reference: rescan every pending change on each take (what the heap replaces)."""

    def take(self, limit: int) -> list[int]:
        ready = sorted(
            (i for i in self.pending if not self.waiting_on[i]),
            key=lambda i: (self.changes[i].wave, i),
        )
        taken: list[int] = []
        for i in ready:
            if len(taken) >= limit:
                break
            key = self.keys[i]
            if key is not None:
                if key in self.busy_keys:
                    continue
                self.busy_keys.add(key)
            self.pending.discard(i)
            self.running.add(i)
            taken.append(i)
        return taken


def _random_plan(rng: random.Random, n: int) -> list[Change]:
    """Identities, then credentials (keyed by their identity) depending on them."""
    changes: list[Change] = []
    identities = [f"s/rg/mi-{k}" for k in range(max(1, n // 5))]
    for key in identities:
        changes.append(
            Change(Address(Kind.IDENTITY, key), Action.CREATE, Reason.NEW, wave=rng.randint(0, 1))
        )
    while len(changes) < n:
        key = rng.choice(identities)
        name = f"c{len(changes)}"
        deps = (Address(Kind.IDENTITY, key),) if rng.random() < 0.8 else ()
        changes.append(
            Change(
                Address(Kind.FEDERATED_CREDENTIAL, f"{key}/{name}"),
                Action.CREATE,
                Reason.NEW,
                after={"identity": key, "name": name},
                depends_on=deps,
                wave=rng.randint(1, 2),
            )
        )
    return changes


def _drive(schedule: _Schedule, rng: random.Random, workers: int) -> list[tuple[str, list[int]]]:
    """Finish running changes in a random order with random outcomes; log every step."""
    log: list[tuple[str, list[int]]] = []
    running: list[int] = []
    while True:
        taken = schedule.take(workers - len(running))
        log.append(("take", taken))
        running += taken
        if not running:
            return log
        i = running.pop(rng.randrange(len(running)))
        status = rng.choices(
            [Status.APPLIED, Status.FAILED, Status.NOT_STARTED], weights=[8, 1, 1]
        )[0]
        log.append((status.value, [i, *schedule.finish(i, status)]))


def _same(changes: Sequence[Change], key_of: ConcurrencyKey, seed: int, workers: int) -> None:
    a = _drive(_Schedule(changes, key_of), random.Random(seed), workers)
    b = _drive(_Rescan(changes, key_of), random.Random(seed), workers)
    assert a == b


def test_heap_takes_what_a_full_rescan_takes() -> None:
    for seed in range(40):
        rng = random.Random(seed)
        changes = _random_plan(rng, rng.randint(1, 120))
        _same(changes, default_concurrency_key, seed, workers=rng.choice([1, 3, 16]))


def test_seven_thousand_changes_all_get_scheduled() -> None:
    # the scheduler's cost is measured by `make bench` (apply of 1,000 identities)
    changes = _random_plan(random.Random(1), 7400)
    schedule = _Schedule(changes, default_concurrency_key)
    running: list[int] = []
    done = 0
    while True:
        running += schedule.take(16 - len(running))
        if not running:
            break
        schedule.finish(running.pop(0), Status.APPLIED)
        done += 1
    assert done == 7400


# -- lanes: the changes of several subscriptions take turns -----------------------------------


def _identity(sub: str, name: str, wave: int = 0) -> Change:
    return Change(
        Address(Kind.IDENTITY, f"{sub}/rg/{name}"),
        Action.CREATE,
        Reason.NEW,
        after={"subscription": sub, "resourceGroup": "rg", "name": name},
        wave=wave,
    )


def test_lanes_take_turns_in_plan_order_within_each() -> None:
    changes = [_identity("a", f"a{n}") for n in range(4)]
    changes += [_identity("b", f"b{n}") for n in range(2)] + [_identity("c", "c0")]
    schedule = _Schedule(changes, default_concurrency_key, service_lane)
    taken = schedule.take(7)
    assert [changes[i].after["name"] for i in taken] == ["a0", "b0", "c0", "a1", "b1", "a2", "a3"]  # type: ignore[index]


def test_a_lane_whose_changes_run_long_gets_no_more_workers() -> None:
    changes = [_identity("a", f"a{n}") for n in range(6)] + [
        _identity("b", f"b{n}") for n in range(6)
    ]
    schedule = _Schedule(changes, default_concurrency_key, service_lane)
    assert schedule.take(4) == [0, 6, 1, 7]
    # b's changes finish quickly while a's are still waiting for their turn
    schedule.finish(6, Status.APPLIED)
    schedule.finish(7, Status.APPLIED)
    assert schedule.take(2) == [8, 9]
    schedule.finish(0, Status.APPLIED)
    assert schedule.take(1) == [2]


def test_within_a_lane_a_lower_wave_goes_first() -> None:
    changes = [_identity("a", "a0", wave=1), _identity("a", "a1")]
    assert _Schedule(changes, default_concurrency_key, service_lane).take(2) == [1, 0]


def test_without_lanes_the_order_is_plan_order() -> None:
    changes = [_identity("a", "a0"), _identity("a", "a1"), _identity("b", "b0")]
    assert _Schedule(changes, default_concurrency_key).take(3) == [0, 1, 2]


def test_service_lane_of_each_kind() -> None:
    assert service_lane(_identity("Sub-1", "x")) == "managed-identity:sub-1"
    credential = Change(
        Address(Kind.FEDERATED_CREDENTIAL, "sub-2/rg/mi/c"),
        Action.CREATE,
        Reason.NEW,
        after={"identity": "sub-2/rg/mi", "name": "c"},
    )
    assert service_lane(credential) == "managed-identity:sub-2"
    assignment = Change(Address(Kind.ROLE_ASSIGNMENT, "k"), Action.CREATE, Reason.NEW)
    assert service_lane(assignment) == "authorization"
    connection = Change(Address(Kind.SERVICE_CONNECTION, "o/p/c"), Action.CREATE, Reason.NEW)
    assert service_lane(connection) == "devops"


def test_lanes_keep_dependencies_and_keys() -> None:
    for seed in range(30):
        rng = random.Random(seed)
        changes = _random_plan(rng, rng.randint(5, 150))
        # spread the identities over three subscriptions
        changes = [
            replace(
                c, after={**(c.after or {}), "subscription": f"s{sum(map(ord, c.address.key)) % 3}"}
            )
            if c.address.kind is Kind.IDENTITY
            else c
            for c in changes
        ]
        schedule = _Schedule(changes, default_concurrency_key, service_lane)
        applied: set[int] = set()
        running: list[int] = []
        while True:
            taken = schedule.take(rng.choice([1, 4, 16]) - len(running))
            for i in taken:
                assert all(
                    j in applied
                    for j, c in enumerate(changes)
                    if c.address in changes[i].depends_on
                )
            keys = [default_concurrency_key(changes[i]) for i in running + taken]
            assert len([k for k in keys if k]) == len({k for k in keys if k})
            running += taken
            if not running:
                break
            i = running.pop(rng.randrange(len(running)))
            schedule.finish(i, Status.APPLIED)
            applied.add(i)
        assert applied == set(range(len(changes)))
