"""Requests, responses and error bodies shared by the simulated services."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from reconciler.sim.world import Client


@dataclass
class Request:
    method: str
    raw_path: str  # path without the query, percent-decoded per segment
    query: dict[str, str]  # keys lower-cased (ARM and ADO match query names case-insensitively)
    headers: dict[str, str]  # keys lower-cased
    body: bytes
    base_url: str  # https://host:port
    now: float = 0.0
    op: str = ""
    client: Client | None = None
    caller: str = ""  # client id, PAT user, or "" when unauthenticated
    caller_object_id: str = ""

    @classmethod
    def parse(
        cls, method: str, target: str, headers: dict[str, str], body: bytes, base_url: str
    ) -> Request:
        path, _, qs = target.partition("?")
        segments = [unquote(s) for s in path.split("/")]
        query: dict[str, str] = {}
        for k, v in parse_qsl(qs, keep_blank_values=True):
            query.setdefault(k.lower(), v)
        return cls(method.upper(), "/".join(segments), query, headers, body, base_url)

    @property
    def segments(self) -> list[str]:
        return [s for s in self.raw_path.split("/") if s]

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8-sig"))


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-able, bytes (sent as is) or None (no body)
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"
    # JSON ``null`` as a body (Azure DevOps' answer for an unknown endpoint id)
    null_body: bool = False

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if self.body is None:
            return b"null" if self.null_body else b""
        return json.dumps(self.body, separators=(",", ":")).encode()


class ApiError(Exception):
    """Raised by handlers; turned into the response it carries."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def arm_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> ApiError:
    return ApiError(
        Response(status, {"error": {"code": code, "message": message}}, dict(headers or {}))
    )


_ADO_TYPES = {
    "ArgumentException": "System.ArgumentException, mscorlib",
    "ArgumentNullException": "System.ArgumentNullException, mscorlib",
    "DuplicateServiceConnectionException": "Microsoft.TeamFoundation.DistributedTask.WebApi.DuplicateServiceConnectionException, Microsoft.TeamFoundation.DistributedTask.WebApi",
    "ServiceEndpointNotFoundException": "Microsoft.TeamFoundation.DistributedTask.WebApi.ServiceEndpointNotFoundException, Microsoft.TeamFoundation.DistributedTask.WebApi",
    "ServiceEndpointException": "Microsoft.TeamFoundation.DistributedTask.WebApi.ServiceEndpointException, Microsoft.TeamFoundation.DistributedTask.WebApi",
    "ProjectDoesNotExistWithNameException": "Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistWithNameException, Microsoft.TeamFoundation.Core.WebApi",
    "UnauthorizedRequestException": "Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, Microsoft.TeamFoundation.Framework.Server",
    "VssVersionNotSpecifiedException": "Microsoft.VisualStudio.Services.WebApi.VssVersionNotSpecifiedException, Microsoft.VisualStudio.Services.WebApi",
    "VssInvalidPreviewVersionException": "Microsoft.VisualStudio.Services.WebApi.VssInvalidPreviewVersionException, Microsoft.VisualStudio.Services.WebApi",
    "VssVersionOutOfRangeException": "Microsoft.VisualStudio.Services.WebApi.VssVersionOutOfRangeException, Microsoft.VisualStudio.Services.WebApi",
    "VssServiceException": "Microsoft.VisualStudio.Services.Common.VssServiceException, Microsoft.VisualStudio.Services.Common",
    "InvalidRequestException": "Microsoft.TeamFoundation.DistributedTask.WebApi.InvalidRequestException, Microsoft.TeamFoundation.DistributedTask.WebApi",
    "RequestBlockedException": "Microsoft.TeamFoundation.Framework.Server.RequestBlockedException, Microsoft.TeamFoundation.Framework.Server",
    "NotFoundException": "Microsoft.VisualStudio.Services.WebApi.NotFoundException, Microsoft.VisualStudio.Services.WebApi",
}


def ado_body(message: str, type_key: str, event_id: int = 3000) -> dict[str, Any]:
    return {
        "$id": "1",
        "innerException": None,
        "message": message,
        "typeName": _ADO_TYPES.get(
            type_key,
            f"Microsoft.VisualStudio.Services.WebApi.{type_key}, Microsoft.VisualStudio.Services.WebApi",
        ),
        "typeKey": type_key,
        "errorCode": 0,
        "eventId": event_id,
    }


def ado_error(
    status: int,
    message: str,
    type_key: str,
    *,
    event_id: int = 3000,
    headers: dict[str, str] | None = None,
) -> ApiError:
    return ApiError(Response(status, ado_body(message, type_key, event_id), dict(headers or {})))
