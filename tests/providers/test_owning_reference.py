"""Apply never removes the reference of the project a shared connection was created in (its
owning project, which its Azure DevOps issuer subject names), whatever the plan asks: a stale
or hand-edited plan naming another of its projects as ``project`` fails the share step with
``OwningProject`` and the references stay (``executors/service_connection.py: _share``)."""

from __future__ import annotations

import pytest

from reconciler.errors import PermanentError
from reconciler.kinds.executors import perform
from reconciler.model import Kind, connection_key
from reconciler.plan import Action
from reconciler.providers import Services
from reconciler.sim.server import Simulator
from tests.sim.estates import LEGACY_ID, estate

from .conftest import SANDBOX, TENANT, DesiredBuilder
from .test_operations import _change, _connection_after, _ctx, _live


def test_share_never_removes_the_owning_project(sim: Simulator, services: Services) -> None:
    seed = estate(TENANT)
    contoso = seed["devops"]["organizations"][0]
    endpoint = next(e for e in contoso["serviceEndpoints"] if e["id"] == LEGACY_ID)
    endpoint["projects"] = ["platform", "team-a"]
    sim.reset(seed)
    builder = DesiredBuilder()
    mi = builder.identity("legacy-mi")
    builder.connection("contoso", "team-a", "legacy-sc", mi, permissions="all")
    ctx = _ctx(services, _live(services, builder))
    before = services.devops.get_endpoint("contoso", "team-a", LEGACY_ID)
    # a plan made as if team-a owned it: sharedWith [] would drop platform, the owning project
    after = _connection_after(
        "legacy-sc",
        f"{SANDBOX}/identities-rg/legacy-mi",
        project="team-a",
        sharedWith=[],
        pipelinePermissions=None,
        issuerKind="devops",
    )
    key = connection_key("contoso", "team-a", "legacy-sc")
    change = _change(
        Kind.SERVICE_CONNECTION,
        key,
        Action.UPDATE,
        before={**after, "sharedWith": ["platform"], "id": LEGACY_ID},
        after=after,
    )
    with pytest.raises(PermanentError) as raised:
        perform(change, ctx)
    assert raised.value.code == "OwningProject", raised.value
    assert "created in project platform" in str(raised.value)
    assert not [e for e in sim.request_log() if e["op"] == "ServiceEndpoints_Delete"]
    now = services.devops.get_endpoint("contoso", "platform", LEGACY_ID)
    names = sorted(r["projectReference"]["name"] for r in now["serviceEndpointProjectReferences"])
    assert names == ["platform", "team-a"]
    assert before["id"] == now["id"]
