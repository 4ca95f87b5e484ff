"""`create_app(config)`: the HTTP API (fal queue and Civitai routes, files, webhook key) over one
job store, with the outbox dispatcher and, when `config.workers > 0`, an embedded worker.

Every error leaves in the shape of the flavour of its route (fal `{"detail"}`, Civitai problem
details under `/v2/`), never with a stack trace.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ltxtune.api import civitai, fal, files
from ltxtune.api.common import ApiContext, ApiError, error_response, is_civitai, problem
from ltxtune.jobs.config import ServiceConfig
from ltxtune.jobs.service import Services
from ltxtune.jobs.worker import Worker

log = logging.getLogger(__name__)


def create_app(config: ServiceConfig, *, services: Services | None = None) -> FastAPI:
    services = services or Services.open(config)
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
    app.include_router(civitai.router)
    app.include_router(fal.router)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(request, error)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(request, ApiError(error.status_code, str(error.detail), headers=dict(error.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        items = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in error.errors()]
        if is_civitai(request):
            errors: dict[str, list[str]] = {}
            for item in items:
                errors.setdefault(".".join(str(p) for p in item["loc"]), []).append(item["msg"])
            return JSONResponse(problem(400, "invalid request", errors), status_code=400, media_type="application/problem+json")
        return JSONResponse({"detail": items}, status_code=422)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, ApiError(500, "Internal server error", error_type="internal_server_error"))

    return app
