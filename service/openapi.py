"""The OpenAPI document at ``/docs.json``: BentoML's, made valid and true to what the API answers.

BentoML 1.4.40 writes an OpenAPI 3.0.2 document that a client generator rejects: its file uploads are
``"type": "file"`` (no such type in OpenAPI), pydantic's optional fields are ``{"type": "null"}`` (JSON
Schema, valid only from OpenAPI 3.1), and every endpoint lists 400/404/500 with BentoML's own error
shapes, while this API answers the statuses of :data:`service.errors.ERROR_STATUSES` with
``{"error": ...}``. This module asks BentoML for the same document as OpenAPI 3.1, fixes those parts
and serves it from an ASGI middleware in front of BentoML's own route.
"""

from __future__ import annotations

import json
from typing import Any

from _bentoml_sdk.service.openapi import generate_spec
from starlette.responses import Response

from .admission import ASGIApp, Receive, Scope, Send
from .errors import ERROR_STATUSES, RETRY_AFTER_S

OPENAPI_VERSION = "3.1.0"
PATH = "/docs.json"
ERROR_SCHEMA = {
    "type": "object",
    "title": "Error",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what was wrong"},
        "image": {"type": "integer", "description": "with several images: the index of the one at fault"},
    },
}


def document(service: Any) -> dict[str, Any]:
    """The corrected OpenAPI document of a BentoML service (a plain JSON-able dict)."""
    spec: dict[str, Any] = json.loads(json.dumps(generate_spec(service, openapi_version=OPENAPI_VERSION).asdict()))
    _files_as_binary_strings(spec)
    schemas = spec["components"]["schemas"]
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):  # BentoML's error shapes, unused
        schemas.pop(name, None)
    schemas["Error"] = ERROR_SCHEMA
    for api in service.apis.values():
        operation = spec["paths"][api.route]["post"]
        operation["responses"] = {"200": operation["responses"]["200"], **_error_responses()}
        _at_least_one_file(operation)
    return spec


def _error_responses() -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, description in sorted(ERROR_STATUSES.items()):
        response: dict[str, Any] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        if status == 503:
            response["headers"] = {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer", "const": RETRY_AFTER_S}}
            }
        responses[str(status)] = response
    return responses


def _files_as_binary_strings(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "file":
            node["type"] = "string"
            node["format"] = "binary"
        for value in node.values():
            _files_as_binary_strings(value)
    elif isinstance(node, list):
        for value in node:
            _files_as_binary_strings(value)


def _at_least_one_file(operation: dict[str, Any]) -> None:
    """A list-of-files field takes one file at least (an empty one is answered 400): say so, so that a
    client generator or fuzzer reading the document does not take an empty form for a valid request."""
    for content in operation.get("requestBody", {}).get("content", {}).values():
        for field in content.get("schema", {}).get("properties", {}).values():
            if field.get("type") == "array" and field.get("items", {}).get("format") == "binary":
                field["minItems"] = 1


class OpenAPIDocument:
    """ASGI middleware: ``GET /docs.json`` answers :func:`document` (built once, on first request)."""

    def __init__(self, app: ASGIApp, service: Any) -> None:
        self.app = app
        self.service = service
        self._body: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if self._body is None:
            self._body = json.dumps(document(self.service)).encode()
        await Response(self._body, media_type="application/json")(scope, receive, send)
