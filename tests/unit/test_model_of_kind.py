"""``of_kind``: one kind's resources in address order, whatever order the mapping holds."""

from __future__ import annotations

import random

from reconciler.model import Address, DesiredState, Kind, LiveResource, LiveState, Resource


def test_of_kind_is_address_order_of_that_kind_only() -> None:
    addresses = [Address(kind, f"k{n:03d}") for kind in Kind for n in range(30)]
    random.Random(3).shuffle(addresses)
    desired = DesiredState("o", {a: Resource(a, {}) for a in addresses})
    live = LiveState(resources={a: LiveResource(a, {}) for a in addresses})
    for kind in Kind:
        expected = sorted(a for a in addresses if a.kind is kind)
        assert [r.address for r in desired.of_kind(kind)] == expected
        assert [r.address for r in live.of_kind(kind)] == expected


def test_address_equality_and_hash() -> None:
    a = Address(Kind.IDENTITY, "s/rg/mi")
    assert a == Address(Kind.IDENTITY, "s/rg/mi")
    assert hash(a) == hash(Address(Kind.IDENTITY, "s/rg/mi"))
    assert a != Address(Kind.FEDERATED_CREDENTIAL, "s/rg/mi")
    assert a != Address(Kind.IDENTITY, "s/rg/other")
    assert a != "identity.s/rg/mi"
    assert {a: 1}.get(Address(Kind.IDENTITY, "s/rg/mi")) == 1
    assert len({a, Address(Kind.FEDERATED_CREDENTIAL, "s/rg/mi")}) == 2
    assert sorted([Address(Kind.IDENTITY, "b"), Address(Kind.IDENTITY, "a")])[0].key == "a"
