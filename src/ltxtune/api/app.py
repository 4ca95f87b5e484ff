"""`create_app(config)`: the HTTP API over one job store: every protocol's routes (from the
registry), files and the webhook key, with the outbox dispatcher and, when `config.workers > 0`,
an embedded worker.

Every error leaves in the shape of the protocol whose route it came from, never with a stack trace.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ltxtune.api import files, ops
from ltxtune.api.budget import BodyRefused
from ltxtune.api.common import ApiContext
from ltxtune.api.errors import ApiError, InvalidJson
from ltxtune.api.guards import RequestGuard
from ltxtune.api.waits import ClientGone
from ltxtune.jobs.config import ServiceConfig
from ltxtune.jobs.service import Services
from ltxtune.jobs.worker import Worker
from ltxtune.protocols.registry import PROTOCOLS, open_services, protocol_for_path

log = logging.getLogger(__name__)


def create_app(config: ServiceConfig, *, services: Services | None = None) -> FastAPI:
    services = services or open_services(config)
    worker = Worker(services) if config.workers > 0 else None
    ctx = ApiContext(config=config, services=services, worker=worker, dispatcher=services.dispatcher())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.dispatcher.start()
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await run_in_threadpool(worker.stop)
            await run_in_threadpool(ctx.dispatcher.stop)

    app = FastAPI(title="ltxtune", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.ltxtune = ctx
    app.include_router(files.router)
    app.include_router(ops.router)
    # Protocols that claim a path prefix first: the default protocol's routes match any path.
    for protocol in sorted(PROTOCOLS, key=lambda p: p is protocol_for_path("")):
        app.include_router(protocol.router())

    def render(request: Request, error: ApiError) -> JSONResponse:
        return protocol_for_path(request.url.path).error_response(error)

    # Outermost last: CORS answers preflights and labels every answer, refusals included; a protocol's
    # middleware (the fal proxy) maps its paths before the guards judge the route.
    add_guards(app, config, render)
    add_client_middleware(app, config)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, error: ApiError) -> JSONResponse:
        return render(request, error)

    @app.exception_handler(InvalidJson)
    async def on_invalid_json(request: Request, error: InvalidJson) -> JSONResponse:
        return render(request, protocol_for_path(request.url.path).invalid_json(error.reason))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return render(request, ApiError(error.status_code, str(error.detail), headers=dict(error.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        protocol = protocol_for_path(request.url.path)
        return render(request, protocol.invalid_parameters(error.errors()))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return render(request, ApiError(500, "Internal server error", error_type="internal_server_error"))

    return app


# Response headers a browser client may read besides the protocols' own.
EXPOSED_HEADERS = ["Retry-After", "Location"]


def add_client_middleware(app: FastAPI, config: ServiceConfig) -> None:
    """What clients other than plain HTTP ones need: each protocol's middleware (e.g. a proxy
    convention), and outermost, when `config.cors_origins` names any, CORS for browsers (off by
    default: a browser page of another origin can then not call the API at all)."""
    for protocol in PROTOCOLS:
        for middleware in protocol.middleware():
            app.add_middleware(middleware)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS + [name for protocol in PROTOCOLS for name in protocol.exposed_headers],
            max_age=600,
        )


def add_guards(app: FastAPI, config: ServiceConfig, render) -> None:
    """The request budget and the host, origin and content-type checks (`ltxtune.api.guards`)."""

    def render_at(path: str, error: ApiError) -> JSONResponse:
        return protocol_for_path(path).error_response(error)

    app.add_middleware(RequestGuard, config=config, render=render_at, routes=lambda: app.router.routes)

    @app.exception_handler(ClientGone)
    async def on_client_gone(request: Request, gone: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it: the client closed the connection

    @app.exception_handler(BodyRefused)
    async def on_body_refused(request: Request, refused: BodyRefused) -> JSONResponse:
        if refused.status == 413:
            return render(request, ApiError(413, refused.issue.msg, error_type="request_too_large"))
        body = protocol_for_path(request.url.path).invalid_body([refused.issue])
        status = body.get("status", 422) if isinstance(body.get("status"), int) else 422
        return render(request, ApiError(status, refused.issue.msg, body=body))
