"""``create_app(config) -> Starlette``: the explorer's ASGI app, built entirely per instance.

Routes: ``/`` (the page), ``/static/...`` (its CSS and JS; paths cannot leave the folder),
``/openapi.json`` and the JSON API of ``deconvlab.serve.api``. Errors are JSON ``{error, status}``:
4xx for bad requests, never a traceback. The request body is limited to the upload limit.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deconvlab.serve.api import ENDPOINTS, make_route
from deconvlab.serve.config import ServeConfig
from deconvlab.serve.explorer import Explorer
from deconvlab.serve.openapi import openapi_schema
from deconvlab.serve.params import ApiError

STATIC_DIR = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
log = logging.getLogger(__name__)


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with a JSON 413, from Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send, f"is {int(declared)} bytes (Content-Length)")
        received, started = 0, False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send, f"is over {self.limit} bytes")

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: str) -> None:
        message = f"the request body {size}; the limit is {self.limit} bytes"
        await error_response(413, message)(scope, receive, send)


class _TooLarge(Exception):
    """Raised inside the app when the streamed body passes the limit."""


class SecurityHeaders:
    """Add a strict Content-Security-Policy and friends to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                extra = [
                    (k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in names
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return error_response(error.status, error.message, error.headers)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    return error_response(error.status_code, str(error.detail))


async def _gone(request: Request, error: ClientDisconnect) -> JSONResponse:
    """The client left while its body was read: nobody will see an answer, and it is not our error."""
    return error_response(400, "the client disconnected before sending the whole request")


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, f"internal error ({type(error).__name__}); see the server log")


def create_app(config: ServeConfig | None = None) -> Starlette:
    """A new explorer app; its model loads in the background when the app starts (lifespan)."""
    config = config or ServeConfig()
    explorer = Explorer(config)
    schema = openapi_schema(ENDPOINTS)

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(schema)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        explorer.start()
        yield

    routes = [
        Route("/", index),
        Route("/openapi.json", openapi),
        *(make_route(endpoint, explorer) for endpoint in ENDPOINTS),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts)),
            Middleware(BodyLimit, limit=config.max_upload_bytes),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            ClientDisconnect: _gone,
            Exception: _unexpected,
        },
    )
    app.state.explorer = explorer
    return app
