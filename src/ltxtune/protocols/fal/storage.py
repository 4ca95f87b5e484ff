"""fal's storage API, as both fal clients call it, over the server's own file storage.

    POST /storage/upload/initiate          {"file_name", "content_type"} -> {"upload_url", "file_url"}
                                           (@fal-ai/client's `fal.storage.upload`, fal-client's
                                           `repository="fal"`); the bytes then go in one
    PUT  /storage/upload/{file id}?expires=&sig=    signed: no key needed, as the clients send none
    POST /storage/auth/token               -> {"token", "token_type", "base_url", "expires_at"}:
                                           a short-lived upload token (fal-client's default path)
    POST /files/upload                     the bytes, `Authorization: Bearer <token>`,
                                           `X-Fal-File-Name` -> {"access_url"}

Multipart, as each client does it past its size threshold (parts joined in the listed order):
    POST /storage/upload/initiate-multipart                 -> {"upload_url", "file_url"} (JS)
    PUT  /storage/upload/{id}/multipart/{n}?expires=&sig=   -> {"partNumber", "etag"}, ETag
    POST /storage/upload/{id}/multipart/complete?...        {"parts": [{"partNumber", "etag"}]}
    POST /files/upload/multipart                            -> {"access_url", "uploadId"} (Python)
    PUT  /files/{id}/{name}/multipart/{upload id}/{n}       with the upload token -> ETag
    POST /files/{id}/{name}/multipart/{upload id}/complete  {"parts": [...]}

An upload belongs to the caller's key. `file_url` / `access_url` is the signed download URL of
the stored file; given back as `training_data_url` (or any input URL), the worker reads the
stored file directly instead of fetching it over HTTP.

The clients hard-code fal's hosts: `@fal-ai/client` reaches this server through `proxyUrl`
(`proxy.py`), fal-client through its module constants `fal_client.client.REST_URL` and
`CDN_URL` (it has no setting for them).
"""

from __future__ import annotations

import base64
import hmac
import math
import tempfile
import time
from typing import Any, Callable, Iterable, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ltxtune.api.guards import accepts_body
from ltxtune.api.common import ApiContext, context, read_json
from ltxtune.api.errors import ApiError
from ltxtune.jobs.storage import FileRecord, MissingPart, UploadTooLarge, iso, is_upload

router = APIRouter()
T = TypeVar("T")
TOKEN_TTL_S = 3600
PUT_TTL_S = 3600
TOKEN_PREFIX = "ltxtune-upload."
MAX_PARTS = 10000


def _token_signature(ctx: ApiContext, owner: str, expires: int) -> str:
    # The upload-token key derives from the file-URL key: one secret per data dir.
    return ctx.services.files.upload_put_signature(f"token:{owner}", expires)


def _make_token(ctx: ApiContext, owner: str, expires: int) -> str:
    encoded = base64.urlsafe_b64encode(owner.encode()).decode().rstrip("=")
    return f"{TOKEN_PREFIX}{encoded}.{expires}.{_token_signature(ctx, owner, expires)}"


def _token_owner(ctx: ApiContext, token: str) -> str | None:
    try:
        encoded, expires, sig = token[len(TOKEN_PREFIX):].split(".")
        owner = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except ValueError:
        return None
    if not expires.isdigit() or int(expires) < time.time():
        return None
    return owner if hmac.compare_digest(_token_signature(ctx, owner, int(expires)), sig) else None


def _uploader(ctx: ApiContext, request: Request) -> str:
    """The owner an upload is stored for: the bearer of an upload token, else the key's owner."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip().startswith(TOKEN_PREFIX):
        owner = _token_owner(ctx, token.strip())
        if owner is None:
            raise ApiError(401, "The upload token is invalid or expired; ask for a new one at /storage/auth/token")
        return owner
    return ctx.caller(request).owner


def _file_url(ctx: ApiContext, request: Request, record: FileRecord) -> str:
    return ctx.services.files.url(record, ctx.base_url(request)).url


SPOOL_BYTES = 32 * 2**20  # bodies up to this size stay in memory while they arrive
CHUNK = 2**20


async def _receive(ctx: ApiContext, request: Request, write: Callable[[Iterable[bytes], int], T]) -> T:
    """Spool the request body and hand it to `write(chunks, limit)` (in a thread), refusing it
    (413) past the server's upload limit."""
    limit = ctx.config.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"The file is {int(declared)} bytes, more than this server's upload limit of {limit} bytes", error_type="file_too_large")
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"The file is larger than this server's upload limit of {limit} bytes", error_type="file_too_large")
            spool.write(chunk)
        spool.seek(0)
        try:
            return await run_in_threadpool(write, iter(lambda: spool.read(CHUNK), b""), limit)
        except UploadTooLarge as refused:
            raise ApiError(413, str(refused), error_type="file_too_large") from None


def _whole(ctx: ApiContext, record: FileRecord) -> Callable[[Iterable[bytes], int], FileRecord]:
    return lambda chunks, limit: ctx.services.files.write_upload(record, chunks, limit)


def _name_and_type(body: object) -> tuple[str, str]:
    if not isinstance(body, dict):
        raise ApiError(422, "The body must be a JSON object with `file_name` and `content_type`", error_type="invalid_request")
    name, content_type = body.get("file_name") or "upload.bin", body.get("content_type") or "application/octet-stream"
    if not isinstance(name, str) or not isinstance(content_type, str):
        raise ApiError(422, "`file_name` and `content_type` must be strings", error_type="invalid_request")
    return name, content_type


async def _initiate(request: Request, suffix: str) -> JSONResponse:
    ctx = context(request)
    owner = _uploader(ctx, request)
    name, content_type = _name_and_type(await read_json(request))
    record = await run_in_threadpool(ctx.services.files.reserve_upload, owner, name, content_type)
    expires = int(math.ceil((time.time() + PUT_TTL_S) / 60.0) * 60)
    sig = ctx.services.files.upload_put_signature(record.id, expires)
    upload_url = f"{ctx.base_url(request)}/storage/upload/{record.id}{suffix}?expires={expires}&sig={sig}"
    return JSONResponse({"upload_url": upload_url, "file_url": _file_url(ctx, request, record)})


@router.post("/storage/upload/initiate")
async def initiate(request: Request) -> JSONResponse:
    return await _initiate(request, "")


@router.post("/storage/upload/initiate-multipart")
async def initiate_multipart(request: Request) -> JSONResponse:
    """@fal-ai/client past 90 MB: `PUT {upload_url path}/{n}` per part, then `POST .../complete`."""
    return await _initiate(request, "/multipart")


async def _signed_upload(ctx: ApiContext, request: Request, file_id: str) -> FileRecord:
    if not ctx.services.files.verify_upload_put(file_id, request.query_params.get("expires"), request.query_params.get("sig")):
        raise ApiError(403, "Invalid or expired upload URL; initiate the upload again", error_type="forbidden")
    return await _upload_record(ctx, file_id)


async def _upload_record(ctx: ApiContext, file_id: str, owner: str | None = None) -> FileRecord:
    record = await run_in_threadpool(ctx.services.store.file, file_id)
    if record is None or not is_upload(record) or (owner is not None and record.owner != owner):
        raise ApiError(404, "Upload not found", error_type="not_found")
    return record


@router.put("/storage/upload/{file_id}")
@accepts_body("*/*", upload=True)  # the file itself, any type
async def put_upload(request: Request, file_id: str) -> JSONResponse:
    ctx = context(request)
    record = await _signed_upload(ctx, request, file_id)
    stored = await _receive(ctx, request, _whole(ctx, record))
    return JSONResponse({"file_url": _file_url(ctx, request, stored), "file_size": stored.size})


def _part_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_PARTS:
        raise ApiError(422, f"The part number must be 1 to {MAX_PARTS}; got {text!r}", error_type="invalid_request")
    return int(text)


async def _put_part(ctx: ApiContext, request: Request, record: FileRecord, number: str) -> JSONResponse:
    part = _part_number(number)
    etag = await _receive(ctx, request, lambda chunks, limit: ctx.services.files.write_part(record, part, chunks, limit))
    return JSONResponse({"partNumber": part, "etag": etag}, headers={"ETag": etag})


async def _complete(ctx: ApiContext, request: Request, record: FileRecord) -> FileRecord:
    body: Any = await read_json(request)
    parts = body.get("parts") if isinstance(body, dict) else None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
        raise ApiError(422, "The body must be {\"parts\": [{\"partNumber\", \"etag\"}, ...]}", error_type="invalid_request")
    numbers = [_part_number(str(p.get("partNumber"))) for p in parts]
    try:
        return await run_in_threadpool(ctx.services.files.complete_parts, record, numbers, ctx.config.max_upload_bytes)
    except MissingPart as missing:
        raise ApiError(422, f"Cannot complete the upload: {missing}", error_type="invalid_request") from None
    except UploadTooLarge as refused:
        raise ApiError(413, str(refused), error_type="file_too_large") from None


@router.put("/storage/upload/{file_id}/multipart/{number}")
@accepts_body("*/*", upload=True)  # the file itself, any type
async def put_signed_part(request: Request, file_id: str, number: str) -> JSONResponse:
    ctx = context(request)
    return await _put_part(ctx, request, await _signed_upload(ctx, request, file_id), number)


@router.post("/storage/upload/{file_id}/multipart/complete")
async def complete_signed(request: Request, file_id: str) -> JSONResponse:
    ctx = context(request)
    stored = await _complete(ctx, request, await _signed_upload(ctx, request, file_id))
    return JSONResponse({"file_url": _file_url(ctx, request, stored), "file_size": stored.size})


@router.post("/storage/auth/token")
def upload_token(request: Request) -> JSONResponse:
    ctx = context(request)
    owner = ctx.caller(request).owner
    expires = int(time.time()) + TOKEN_TTL_S
    return JSONResponse(
        {
            "token": _make_token(ctx, owner, expires),
            "token_type": "Bearer",
            "base_url": ctx.base_url(request),
            "expires_at": (iso(expires) or "").replace("Z", "+00:00"),
        }
    )


@router.post("/files/upload/multipart")
@accepts_body("*/*")  # no body: fal-client sends the file's own Content-Type with it
async def create_multipart(request: Request) -> JSONResponse:
    """fal-client past 100 MB: parts go to `{access_url}/multipart/{uploadId}/{n}` with the upload
    token, then `.../complete`. The access URL has no query (the client appends paths to it): a
    job of the same key resolves it; downloading it takes the key."""
    ctx = context(request)
    owner = _uploader(ctx, request)
    name = request.headers.get("x-fal-file-name") or "upload.bin"
    content_type = (request.headers.get("content-type") or "application/octet-stream").split(";")[0].strip()
    record = await run_in_threadpool(ctx.services.files.reserve_upload, owner, name, content_type)
    return JSONResponse({"access_url": f"{ctx.base_url(request)}/files/{record.id}/{quote(record.name)}", "uploadId": record.id})


@router.put("/files/{file_id}/{name}/multipart/{upload_id}/{number}")
@accepts_body("*/*", upload=True)  # the file itself, any type
async def put_token_part(request: Request, file_id: str, name: str, upload_id: str, number: str) -> JSONResponse:
    ctx = context(request)
    record = await _upload_record(ctx, file_id, _uploader(ctx, request))
    return await _put_part(ctx, request, record, number)


@router.post("/files/{file_id}/{name}/multipart/{upload_id}/complete")
async def complete_token(request: Request, file_id: str, name: str, upload_id: str) -> JSONResponse:
    ctx = context(request)
    record = await _upload_record(ctx, file_id, _uploader(ctx, request))
    stored = await _complete(ctx, request, record)
    return JSONResponse({"access_url": f"{ctx.base_url(request)}/files/{stored.id}/{quote(stored.name)}", "file_size": stored.size})


@router.post("/files/upload")
@accepts_body("*/*", upload=True)  # the file itself, any type
async def upload(request: Request) -> JSONResponse:
    ctx = context(request)
    owner = _uploader(ctx, request)
    name = request.headers.get("x-fal-file-name") or "upload.bin"
    content_type = (request.headers.get("content-type") or "application/octet-stream").split(";")[0].strip()
    record = await run_in_threadpool(ctx.services.files.reserve_upload, owner, name, content_type)
    stored = await _receive(ctx, request, _whole(ctx, record))
    return JSONResponse({"access_url": _file_url(ctx, request, stored), "content_type": stored.content_type, "file_name": stored.name, "file_size": stored.size})

