"""Every Civitai route, and a 404 problem for any other path under `/v2/` (the fal routes match
any path, so without it a Civitai path with another method would answer 405)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ltxtune.api.errors import ApiError
from ltxtune.protocols.civitai import resources, routes

router = APIRouter()
router.include_router(routes.router)
router.include_router(resources.router)


@router.api_route("/v2/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False)
def not_found(request: Request, path: str) -> None:
    raise ApiError(404, f"No route {request.method} /v2/{path}")
