from __future__ import annotations

import pytest

from reconciler.kinds import REGISTRY
from reconciler.kinds.executors import concurrency_key
from reconciler.model import Address, Kind, credential_key, identity_key
from reconciler.plan import Action, Change, Reason

MI = identity_key("S", "RG", "Mi")


def test_every_kind_is_registered_under_its_own_name() -> None:
    assert set(REGISTRY) == set(Kind)
    for kind, spec in REGISTRY.items():
        assert spec.kind is kind
        assert set(spec.immutable_fields) <= set(spec.declared_fields)
        assert set(spec.optional_fields) <= set(spec.declared_fields)


def test_credential_writes_under_one_identity_share_a_key() -> None:
    address = Address(Kind.FEDERATED_CREDENTIAL, credential_key(MI, "a"))
    create = Change(address, Action.CREATE, Reason.NEW, after={"identity": MI, "name": "a"})
    delete = Change(address, Action.DELETE, Reason.NOT_IN_SPEC, before={"identity": MI})
    assert concurrency_key(create) == concurrency_key(delete) == f"identity:{MI.lower()}"
    other = Change(Address(Kind.IDENTITY, MI), Action.CREATE, Reason.NEW, after={})
    assert concurrency_key(other) is None


@pytest.mark.parametrize(
    ("kind", "action", "destructive"),
    [
        (Kind.IDENTITY, Action.DELETE, True),
        (Kind.IDENTITY, Action.DELETE_THEN_CREATE, True),
        (Kind.IDENTITY, Action.UPDATE, False),
        (Kind.SERVICE_CONNECTION, Action.DELETE, True),
        (Kind.SERVICE_CONNECTION, Action.UPDATE, False),
        (Kind.FEDERATED_CREDENTIAL, Action.DELETE, False),
        (Kind.ROLE_ASSIGNMENT, Action.DELETE, False),
    ],
)
def test_destructive_means_losing_an_identity_or_a_connection(
    kind: Kind, action: Action, destructive: bool
) -> None:
    assert REGISTRY[kind].is_destructive(action) is destructive


def test_natural_keys_match_the_model_helpers() -> None:
    identity = {"subscription": "S", "resourceGroup": "RG", "name": "Mi"}
    assert REGISTRY[Kind.IDENTITY].natural_key(identity) == MI
    fic = {"identity": MI, "name": "Cred"}
    assert REGISTRY[Kind.FEDERATED_CREDENTIAL].natural_key(fic) == credential_key(MI, "Cred")
    orphan = {"identity": None, "principalId": "P", "scope": "/X/", "roleDefinitionId": "G"}
    assert REGISTRY[Kind.ROLE_ASSIGNMENT].natural_key(orphan) == "orphan:p//x/g"


def test_implied_credential_depends_on_its_connection() -> None:
    attrs = {"identity": MI, "name": "c", "serviceConnection": "org/p/c"}
    deps = REGISTRY[Kind.FEDERATED_CREDENTIAL].dependencies(attrs)
    assert Address(Kind.SERVICE_CONNECTION, "org/p/c") in deps
    assert Address(Kind.IDENTITY, MI) in deps


def test_canonical_forms_fold_what_the_services_ignore() -> None:
    sc = REGISTRY[Kind.SERVICE_CONNECTION]
    a = sc.canonical({"scope": "/Subscriptions/X/", "sharedWith": ["B", "a"], "description": ""})
    b = sc.canonical({"scope": "/subscriptions/x", "sharedWith": ["a", "b"], "description": None})
    assert a == b
    ident = REGISTRY[Kind.IDENTITY]
    assert ident.canonical({"location": "West Europe"}) == ident.canonical(
        {"location": "westeurope", "tags": {}}
    )
