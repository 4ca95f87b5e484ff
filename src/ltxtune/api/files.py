"""Output files and the webhook public key.

    GET|HEAD /files/{file id}/{name}?expires=&sig=   a signed URL from a result; no key needed
    GET|HEAD /files/{file id}/{name}                 with the owner's key instead of a signature
    GET /.well-known/jwks.json                       the ED25519 key webhooks are signed with
    GET /.well-known/ltxtune-webhook-key             the same
    GET /healthz

Files are served with their content type, size and name (`Content-Disposition: attachment`) and
honour `Range` requests (206, 416). With S3 storage the answer is a redirect (307) to a
presigned S3 URL. An expired or tampered URL is 403; a file of another key is 404.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse

from ltxtune.api.common import ApiError, context

router = APIRouter()


@router.api_route("/files/{file_id}/{name}", methods=["GET", "HEAD"])
def download(request: Request, file_id: str, name: str) -> Response:
    ctx = context(request)
    record = ctx.services.store.file(file_id)
    expires, sig = request.query_params.get("expires"), request.query_params.get("sig")
    if expires is not None or sig is not None:
        if expires is not None and not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
            raise ApiError(400, "expires: must be the whole number of seconds the file URL was signed with", error_type="invalid_url")
        if expires is not None and int(expires) < time.time():
            raise ApiError(403, "This file URL has expired; fetch the job again for a fresh one", error_type="url_expired")
        if not ctx.services.files.verify(file_id, expires, sig):
            raise ApiError(403, "Invalid file URL signature", error_type="forbidden")
        if record is None:
            raise ApiError(404, "File not found", error_type="not_found")
    else:
        caller = ctx.caller(request)
        if record is None or record.owner != caller.owner:
            raise ApiError(404, "File not found", error_type="not_found")
    if record.name != name:
        raise ApiError(404, "File not found", error_type="not_found")
    presigned = ctx.services.files.presigned_url(record)
    if presigned is not None:  # the object storage serves it (S3)
        return RedirectResponse(presigned, status_code=307)
    local = ctx.services.files.local_file(record)
    if local is None:
        raise ApiError(404, "File not found", error_type="not_found")
    return FileResponse(
        local,
        media_type=record.content_type,
        filename=record.name,
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.get("/.well-known/jwks.json")
@router.get("/.well-known/ltxtune-webhook-key")
def webhook_key(request: Request) -> JSONResponse:
    return JSONResponse(context(request).services.signer.jwks())


@router.get("/healthz")
def health(request: Request) -> JSONResponse:
    ctx = context(request)
    return JSONResponse({"ok": True, "worker": ctx.worker.worker_id if ctx.worker else None})
