"""Each service failure becomes the right ``errors.py`` type, without leaking headers.

ARM's translation is fed real azure-core exceptions built on fake responses; Azure DevOps'
is fed ``requests`` responses. The simulator tests repeat the important ones over HTTPS.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from reconciler.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from reconciler.providers.arm import CONCURRENT_FIC_WRITES, translate_error
from reconciler.providers.devops import _check, is_delete_refused


class _FakeArmResponse:
    """The parts of an azure-core HttpResponse that HttpResponseError reads."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.reason = "Reason"
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self._text = json.dumps(body) if body is not None else ""
        self.request = None

    def text(self, encoding: str | None = None) -> str:
        return self._text

    def body(self) -> bytes:
        return self._text.encode()


def _arm(status: int, code: str, message: str = "msg", **headers: str) -> Exception:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
    )

    cls = {401: ClientAuthenticationError, 404: ResourceNotFoundError, 409: ResourceExistsError}
    response = _FakeArmResponse(status, {"error": {"code": code, "message": message}}, headers)
    return cls.get(status, HttpResponseError)(response=response)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "InvalidAuthenticationToken", AuthError),
        (404, "ResourceNotFound", NotFoundError),
        (429, "SubscriptionRequestsThrottled", TransientError),
        (500, "InternalServerError", TransientError),
        (503, "ServiceUnavailable", TransientError),
        (409, CONCURRENT_FIC_WRITES, TransientError),
        (409, "RoleAssignmentExists", ConflictError),
        (409, "InvalidResourceLocation", ConflictError),
        (400, "PrincipalNotFound", PermanentError),
        (403, "AuthorizationFailed", PermanentError),
    ],
)
def test_arm_status_and_code_mapping(status: int, code: str, expected: type[Exception]) -> None:
    error = translate_error(_arm(status, code, "Azure says no"), "doing it")
    assert type(error) is expected
    assert error.code == code
    assert error.status == status
    assert "Azure says no" in str(error)


def test_arm_retry_after_headers_become_the_delay() -> None:
    error = translate_error(_arm(429, "Throttled", **{"Retry-After": "12"}), "x")
    assert isinstance(error, TransientError) and error.delay == 12.0
    error = translate_error(_arm(503, "Busy", **{"x-ms-retry-after-ms": "2500"}), "x")
    assert isinstance(error, TransientError) and error.delay == 2.5
    error = translate_error(_arm(500, "Oops"), "x")
    assert isinstance(error, TransientError) and error.delay == 1.0


def test_arm_credential_and_connection_failures() -> None:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        ServiceRequestError,
        ServiceResponseError,
    )

    error = translate_error(ClientAuthenticationError("AADSTS7000215: Invalid client secret"), "x")
    assert isinstance(error, AuthError)
    assert "cannot get an Entra token" in str(error) and "AADSTS7000215" in str(error)
    error = translate_error(ServiceRequestError("connection refused"), "listing identities")
    assert isinstance(error, TransientError) and error.code == "ServiceUnreachable"
    assert error.attempts == 2
    error = translate_error(ServiceResponseError("connection reset"), "listing identities")
    assert isinstance(error, TransientError) and error.code == "ConnectionError"
    assert error.attempts is None


def _devops(
    status: int, body: Any = None, content_type: str = "application/json", **headers: str
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update({"Content-Type": content_type, **headers})
    if isinstance(body, str):
        response._content = body.encode()
    else:
        response._content = json.dumps(body).encode() if body is not None else b""
    response.reason = "Reason"
    return response


def _ado_error(type_key: str, message: str) -> dict[str, Any]:
    return {
        "$id": "1",
        "innerException": None,
        "message": message,
        "typeName": f"Microsoft.VisualStudio.Services.{type_key}, Microsoft.VisualStudio.Services",
        "typeKey": type_key,
        "errorCode": 0,
        "eventId": 3000,
    }


def test_devops_sign_in_page_is_an_auth_error_not_a_parse_crash() -> None:
    page = "<!DOCTYPE html><html><head><title>Azure DevOps Services | Sign In</title></html>"
    with pytest.raises(AuthError) as err:
        _check(_devops(203, page, "text/html; charset=utf-8"), "listing projects of contoso")
    assert "sign-in page (HTTP 203)" in str(err.value)
    # an HTML body with a 200 is the same thing
    with pytest.raises(AuthError):
        _check(_devops(200, page, "text/html"), "x")


def test_devops_401_carries_the_service_message() -> None:
    body = _ado_error("UnauthorizedRequestException", "TF400813: The user '' is not authorized")
    with pytest.raises(AuthError, match="TF400813") as err:
        _check(_devops(401, body), "x")
    assert err.value.code == "UnauthorizedRequestException"


@pytest.mark.parametrize("status", [409, 500])
def test_devops_duplicate_name_is_a_conflict_whatever_the_status(status: int) -> None:
    body = _ado_error("DuplicateServiceConnectionException", "Service connection ... exists")
    with pytest.raises(ConflictError) as err:
        _check(_devops(status, body), "x")
    assert err.value.code == "DuplicateServiceConnectionException"


def test_devops_throttling_and_server_errors_are_transient() -> None:
    body = _ado_error("RequestBlockedException", "TF400733: The request has been canceled")
    with pytest.raises(TransientError) as err:
        _check(_devops(429, body, **{"Retry-After": "9"}), "x")
    assert err.value.delay == 9.0 and "TF400733" in str(err.value)
    with pytest.raises(TransientError):
        _check(_devops(502, "bad gateway", "text/plain"), "x")


def test_devops_other_errors_are_permanent_with_type_and_message() -> None:
    message = (
        "Cannot delete this service connection while federated credentials for app a exist in "
        "Entra tenant t. Please make sure federated credentials have been removed prior to "
        "deleting the service connection."
    )
    with pytest.raises(PermanentError) as err:
        _check(_devops(400, _ado_error("InvalidOperationException", message)), "x")
    assert err.value.code == "InvalidOperationException"
    assert is_delete_refused(err.value)
    with pytest.raises(NotFoundError):
        _check(_devops(404, _ado_error("ProjectDoesNotExistWithNameException", "no")), "x")
    _check(_devops(204), "x")  # success passes
