"""Optional: confirm the simulator's undocumented pull-request comment assumptions against a
real Azure Repos pull request (see reconciler/sim/README.md, "Pull-request comment stand-ins").

Runs only with RECONCILER_LIVE=1 and RECONCILER_LIVE_ADO_PR=1 inside (or with the variables of)
an Azure Pipelines pull-request build: SYSTEM_COLLECTIONURI, SYSTEM_TEAMPROJECT,
BUILD_REPOSITORY_ID, SYSTEM_PULLREQUEST_PULLREQUESTID and SYSTEM_ACCESSTOKEN. It posts two
throwaway threads on that pull request.
"""

from __future__ import annotations

import os

import pytest

from reconciler.comment import azure_devops_pull_request
from reconciler.errors import PermanentError

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (os.environ.get("RECONCILER_LIVE") == "1" and os.environ.get("RECONCILER_LIVE_ADO_PR")),
        reason="live Azure DevOps test: set RECONCILER_LIVE=1, RECONCILER_LIVE_ADO_PR=1 and the "
        "pull-request build's variables (no Azure DevOps here)",
    ),
]


def test_azure_devops_comment_size_limit_is_150000() -> None:
    from reconciler.providers.pullrequests import AzureDevOpsComments

    pr = azure_devops_pull_request(os.environ)
    client = AzureDevOpsComments(pr, f"Bearer {os.environ['SYSTEM_ACCESSTOKEN']}")
    try:
        posted = client.create("x" * 150_000)
        assert len(posted.body) == 150_000
        with pytest.raises(PermanentError, match=r"\(400\)"):
            client.create("x" * 150_001)
    finally:
        client.close()
