"""Provider adapters: the only modules that import the Azure SDK and ``requests``.

``connect`` is cheap to import: the SDK is imported only when it is called.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.providers.arm import ArmClient
    from reconciler.providers.devops import DevOpsClient
    from reconciler.providers.target import Target


class Services:
    """What a run talks to: ARM, Azure DevOps, and the Entra tenant they live in."""

    def __init__(
        self,
        arm: ArmClient,
        devops: DevOpsClient,
        target: Target,
        *,
        tenant_id: str | Callable[[], str],
    ) -> None:
        self.arm = arm
        self.devops = devops
        self.target = target
        self._tenant = tenant_id
        self._lock = threading.Lock()

    @property
    def tenant_id(self) -> str:
        """Learned lazily against real Azure (it may cost a token request)."""
        with self._lock:
            if callable(self._tenant):
                self._tenant = self._tenant()
            return self._tenant

    def close(self) -> None:
        self.arm.close()


def connect(target: Target | None, *, auth: str = "auto", workers: int = 16) -> Services:
    """Clients for ``target`` (None: the public cloud's Azure and Azure DevOps) sharing one HTTP pool
    sized to ``workers``, and at most ``workers`` requests in flight between them (a request
    waiting for a rate limit's turn is not in flight)."""
    from reconciler.providers.arm import ArmClient
    from reconciler.providers.auth import (
        AnnouncedCredential,
        DevOpsAuth,
        discover_tenant,
        make_credential,
        quiet_sdk_logging,
    )
    from reconciler.providers.devops import DevOpsClient
    from reconciler.providers.http import make_session
    from reconciler.providers.target import AZURE

    chosen = target or AZURE
    # by the target's kind: a connection file's own client, or a real credential for a cloud
    quiet_sdk_logging()
    credential = AnnouncedCredential(make_credential(chosen, auth), chosen)
    session = make_session(workers=workers, verify=chosen.ca_bundle or True)
    slots = threading.BoundedSemaphore(max(1, workers))
    arm = ArmClient(chosen, credential, session=session, slots=slots)
    devops = DevOpsClient(
        chosen, DevOpsAuth(credential, target=chosen), session=session, slots=slots
    )
    return Services(
        arm,
        devops,
        chosen,
        tenant_id=chosen.tenant_id or (lambda: discover_tenant(chosen, credential)),
    )
