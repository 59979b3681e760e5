"""The OpenAPI 3.1 schema of the explorer's API, written from the endpoint table.

The same field declarations that validate requests describe them here, so the schema cannot drift
from what the server accepts.

>>> from deconvlab.serve.api import ENDPOINTS
>>> schema = openapi_schema(ENDPOINTS)
>>> schema["openapi"], sorted(schema["paths"]["/api/project"])
('3.1.0', ['post'])

Success bodies are described with small helpers: every property of :func:`obj` is required.

>>> obj(name=STRING, sizes=array(INTEGER))["required"]
['name', 'sizes']
"""

from __future__ import annotations

from collections.abc import Iterable

from deconvlab import __version__

STRING, INTEGER, NUMBER, BOOLEAN = ({"type": kind} for kind in ("string", "integer", "number", "boolean"))
BINARY = {"type": "string", "format": "binary"}


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


def obj(optional: dict | None = None, **required: dict) -> dict:
    """A JSON object schema with the ``required`` properties and the ``optional`` ones."""
    properties = {**required, **(optional or {})}
    return {"type": "object", "required": list(required), "properties": properties}


BUSY = "The server is busy (this request's lane is full); retry after Retry-After seconds."
RETRY_AFTER = {
    "description": "Seconds to wait (sent when busy).",
    "schema": {"type": "integer", "minimum": 1},
}
ERROR = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {
        "error": {"type": "string", "description": "Why the request was refused."},
        "status": {"type": "integer"},
    },
}


def _operation(endpoint) -> dict:
    operation: dict = {"summary": endpoint.summary, "operationId": endpoint.method.lower() + endpoint.path}
    if endpoint.query:
        operation["parameters"] = [
            {
                "name": f.name,
                "in": "query",
                "required": f.required,
                "schema": f.schema(),
                "description": f.doc,
            }
            for f in endpoint.query
        ]
    if endpoint.body is not None:
        body = {
            "type": "object",
            "additionalProperties": False,
            "required": [f.name for f in endpoint.body if f.required],
            "properties": {f.name: f.schema() for f in endpoint.body},
        }
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if endpoint.raw_body is not None:
        binary = {"schema": {"type": "string", "format": "binary"}}
        operation["requestBody"] = {
            "required": True,
            "content": {endpoint.raw_body: binary, "image/*": binary},
        }
    success = endpoint.returns if endpoint.produces == ("application/json",) else BINARY
    ok = {"description": "OK", "content": {kind: {"schema": success} for kind in endpoint.produces}}
    errors = {
        "400": "Malformed request (e.g. invalid JSON).",
        "422": "A parameter is invalid; says which.",
        **({"413": "The body is over the upload limit."} if endpoint.body or endpoint.raw_body else {}),
        **{str(code): text for code, text in endpoint.errors.items()},
    }
    if endpoint.lane is not None:
        errors["503"] = " Or: ".join(filter(None, [errors.get("503"), BUSY]))
    operation["responses"] = {"200": ok}
    for code, text in sorted(errors.items()):
        response = {"description": text, "content": {"application/json": {"schema": ERROR}}}
        if code == "503" and endpoint.lane is not None:
            response["headers"] = {"Retry-After": RETRY_AFTER}
        operation["responses"][code] = response
    return operation


def openapi_schema(endpoints: Iterable) -> dict:
    """The OpenAPI document for ``endpoints`` (``deconvlab.serve.api.Endpoint`` objects)."""
    paths: dict[str, dict] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "deconvlab explorer",
            "version": __version__,
            "description": "Units, projections, occlusion and convolution arithmetic of one model. "
            "Errors are JSON objects {error, status}.",
        },
        "paths": paths,
    }
