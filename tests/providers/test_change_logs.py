"""The provider read methods the incremental drift reader builds on: ``ArmClient.
list_activity_log`` and ``DevOpsClient.list_audit_log``, over HTTPS against the simulator,
and the audit service host in ``Target``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import PermanentError
from reconciler.providers import Services, connect
from reconciler.providers.devops import AuditLogUnavailable
from reconciler.providers.target import (
    AZURE,
    Service,
    is_devops_host,
    load_target,
    token_may_go,
)
from reconciler.sim.seed import load_seed
from reconciler.sim.server import Simulator

from .conftest import SANDBOX

MSI_WRITE = "Microsoft.ManagedIdentity/userAssignedIdentities/write"


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def connection_body(name: str, project_id: str, tenant: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "azurerm",
        "url": "https://management.azure.com/",
        "owner": "library",
        "authorization": {
            "scheme": "WorkloadIdentityFederation",
            "parameters": {"serviceprincipalid": str(uuid.uuid4()), "tenantid": tenant},
        },
        "data": {"subscriptionId": SANDBOX},
        "serviceEndpointProjectReferences": [
            {"projectReference": {"id": project_id}, "name": name}
        ],
    }


@pytest.fixture
def visible(sim: Simulator) -> Simulator:
    sim.set_faults(activity_log_delay_s=0)
    return sim


def test_activity_log_names_the_tools_writes_and_their_caller(
    visible: Simulator, services: Services
) -> None:
    client = visible.world.clients[visible.client_id.lower()]
    services.arm.put_identity(SANDBOX, "identities-rg", "cl-one-mi", {"location": "westeurope"})
    services.arm.put_identity(SANDBOX, "sandbox-rg", "cl-two-mi", {"location": "westeurope"})
    events = services.arm.list_activity_log(
        SANDBOX, ago(600), resource_provider="Microsoft.ManagedIdentity"
    )
    assert [(e["operationName"]["value"], e["status"]["value"]) for e in events] == [
        (MSI_WRITE, "Succeeded"),
        (MSI_WRITE, "Started"),
        (MSI_WRITE, "Succeeded"),
        (MSI_WRITE, "Started"),
    ]
    assert {e["caller"] for e in events} == {client.object_id}
    assert events[0]["resourceId"].endswith(
        "/resourceGroups/sandbox-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cl-two-mi"
    )
    # only what the reader asked for
    assert set(events[0]) == {
        "caller",
        "eventTimestamp",
        "submissionTimestamp",
        "operationName",
        "status",
        "resourceId",
        "correlationId",
        "eventDataId",
    }
    # the other filters and the window's end reach the service as documented
    group = services.arm.list_activity_log(SANDBOX, ago(600), resource_group="sandbox-rg")
    assert {e["resourceId"].rsplit("/", 1)[-1] for e in group} == {"cl-two-mi"}
    one = services.arm.list_activity_log(SANDBOX, ago(600), resource_uri=events[-1]["resourceId"])
    assert len(one) == 2
    by_id = services.arm.list_activity_log(
        SANDBOX, ago(600), correlation_id=events[0]["correlationId"]
    )
    assert {e["eventDataId"] for e in by_id} == {events[0]["eventDataId"], events[1]["eventDataId"]}
    assert services.arm.list_activity_log(SANDBOX, ago(600), ago(300)) == []


def test_activity_log_follows_every_page(visible: Simulator, services: Services) -> None:
    for i in range(4):
        services.arm.put_identity(
            SANDBOX, "identities-rg", f"cl-page-{i}-mi", {"location": "westeurope"}
        )
    visible.update_faults(activity_log_page_size=3)
    visible.clear_log()
    events = services.arm.list_activity_log(SANDBOX, ago(600))
    assert len(events) == 8 and len({e["eventDataId"] for e in events}) == 8
    assert visible.count("ActivityLogs_List") == 3


def test_activity_log_refuses_what_the_service_cannot_filter(services: Services) -> None:
    with pytest.raises(ValueError, match="not resourceProvider, resourceGroupName together"):
        services.arm.list_activity_log(
            SANDBOX, ago(60), resource_provider="Microsoft.ManagedIdentity", resource_group="x"
        )
    with pytest.raises(ValueError, match="time zone"):
        services.arm.list_activity_log(SANDBOX, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="quote"):
        services.arm.list_activity_log(SANDBOX, ago(60), resource_group="it's")


def test_activity_log_errors_are_the_projects(sim: Simulator, services: Services) -> None:
    from reconciler.errors import NotFoundError

    with pytest.raises(NotFoundError):
        services.arm.list_activity_log("33333333-3333-3333-3333-333333333333", ago(60))
    # the service's refusal of a filter (the client never builds one; sent by hand here)
    # becomes the project's PermanentError with the service's code
    with pytest.raises(PermanentError) as caught:
        services.arm._get(
            f"{sim.arm_url}/subscriptions/{SANDBOX}/providers/Microsoft.Insights/eventtypes/"
            "management/values?api-version=2015-04-01&$filter=status%20eq%20'x'",
            "reading",
        )
    assert caught.value.code == "BadRequest" and caught.value.status == 400


def _project(sim: Simulator, name: str) -> str:
    return sim.world.organizations["contoso"].projects[name].id


def test_audit_log_names_the_tools_changes_and_pages(sim: Simulator, services: Services) -> None:
    client = sim.world.clients[sim.client_id.lower()]
    sim.set_auditing("contoso", True)
    platform = _project(sim, "platform")
    made = [
        services.devops.create_endpoint(
            "contoso", connection_body(f"cl-audit-{i}-sc", platform, sim.tenant_id)
        )
        for i in range(3)
    ]
    sim.clear_log()
    entries = services.devops.list_audit_log("contoso", ago(600), batch_size=2)
    created = [e for e in entries if e["actionId"] == "Library.ServiceConnectionCreated"]
    assert [e["data"]["ConnectionId"] for e in created] == [m["id"] for m in reversed(made)]
    assert {e["actorClientId"] for e in created} == {client.client_id}
    assert [e["actionId"] for e in entries][-1] == "OrganizationPolicy.PolicyValueUpdated"
    assert sim.count("AuditLog_Query") == 2  # 4 entries, 2 a page
    assert all(r["query"]["skipaggregation"] == "true" for r in sim.request_log())
    # the window's end
    assert services.devops.list_audit_log("contoso", ago(600), ago(300)) == []


def test_audit_log_off_reads_empty_and_says_nothing_more(
    sim: Simulator, services: Services
) -> None:
    services.devops.create_endpoint(
        "contoso", connection_body("cl-off-sc", _project(sim, "platform"), sim.tenant_id)
    )
    assert services.devops.list_audit_log("contoso", ago(600)) == []


def test_audit_log_unavailable_is_a_typed_error(sim: Simulator, services: Services) -> None:
    seed = load_seed(None)
    seed["devops"]["organizations"][0].update(auditing=True, auditReaders=["auditor@contoso.com"])
    sim.reset(seed)
    with pytest.raises(AuditLogUnavailable) as forbidden:
        services.devops.list_audit_log("contoso", ago(600))
    assert forbidden.value.code == "AuditLogForbidden" and forbidden.value.status == 403
    assert "View audit log" in str(forbidden.value)
    with pytest.raises(AuditLogUnavailable) as missing:
        services.devops.list_audit_log("nowhere", ago(600))
    assert missing.value.code == "AuditLogNotFound"


def test_a_target_without_an_audit_service(sim: Simulator, tmp_path: Path) -> None:
    data = json.loads(Path(sim.connection_file).read_text())
    del data["audit_url"]
    path = tmp_path / "connection.json"
    path.write_text(json.dumps(data))
    target = load_target(path)
    assert target.audit_url == ""
    handle = connect(target, workers=2)
    try:
        with pytest.raises(AuditLogUnavailable) as caught:
            handle.devops.list_audit_log("contoso", ago(600))
        assert caught.value.code == "NoAuditService"
    finally:
        handle.close()


def test_the_audit_service_host_is_an_azure_devops_host(sim: Simulator, tmp_path: Path) -> None:
    assert AZURE.audit_url == "https://auditservice.dev.azure.com"
    url = "https://auditservice.dev.azure.com/contoso/_apis/audit/auditlog"
    assert token_may_go(AZURE, Service.DEVOPS, url) and is_devops_host(url)
    assert not token_may_go(AZURE, Service.ARM, url)
    assert not is_devops_host("https://auditservice.dev.azure.com.evil.example/x")
    target = load_target(Path(sim.connection_file))
    assert target.audit_url == sim.audit_url
    assert token_may_go(target, Service.DEVOPS, f"{sim.audit_url}/contoso/_apis/audit/auditlog")
    # a connection file never points at the real service
    data = json.loads(Path(sim.connection_file).read_text())
    for bad, message in (
        ("https://auditservice.dev.azure.com", "Microsoft host"),
        ("http://127.0.0.1:1/auditservice", "https:// URL"),
    ):
        path = tmp_path / "c.json"
        path.write_text(json.dumps({**data, "audit_url": bad}))
        from reconciler.errors import ConfigError

        with pytest.raises(ConfigError, match=message):
            load_target(path)
