"""Output files on local disk, handed out at signed URLs that expire.

Layout under the data dir:
    files/<job id>/<role>/<name>     delivered outputs (role: lora_file, config_file, video,
                                     debug_dataset, epoch-3/lora, epoch-3/sample-0)
    work/<job id>/                   the trainer's work dir, kept until the job ends
    files/uploads/<upload id>/<name> files callers uploaded (fal's storage API), one record each
    secrets/url-signing.key          HMAC key for file URLs (made once, 0600)

A URL is `{base}/files/{file id}/{name}?expires={unix}&sig={hmac}`: HMAC-SHA256 of
`{file id}:{expires}` under the server secret. Expiry times are rounded up to the next minute so
that polling a job returns the same URLs for a while (and clients can cache them).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import mimetypes
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import quote, urlsplit

from ltxtune.jobs.store import FileRecord, Job, Store

CONTENT_TYPES = {
    ".safetensors": "application/octet-stream",
    ".json": "application/json",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".zip": "application/zip",
    ".tar": "application/x-tar",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".txt": "text/plain",
}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def content_type_for(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def safe_name(name: str) -> str:
    cleaned = _SAFE_NAME.sub("_", Path(name).name).strip("._") or "file"
    return cleaned[:128]


def read_or_create_secret(path: Path, nbytes: int = 32) -> bytes:
    """A secret made once and kept in the data dir (0600), so it survives restarts and is shared by
    every process serving the same store."""
    return read_or_create(path, lambda: secrets.token_bytes(nbytes))


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The file's bytes, writing `make()` there first (0600) if it does not exist yet. Safe against
    processes racing to create it: the first one's file wins and everyone reads that."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(make())
    try:
        os.link(tmp, path)  # fails if another process made it first: use theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expires_at: float

    @property
    def expires_iso(self) -> str:
        return iso(self.expires_at)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FileStore:
    def __init__(self, data_dir: Path, store: Store, url_ttl_s: int):
        self.root = Path(data_dir)
        self.files_dir = self.root / "files"
        self.work_root = self.root / "work"
        self.store = store
        self.url_ttl_s = url_ttl_s
        self._secret = read_or_create_secret(self.root / "secrets" / "url-signing.key")

    # -- where things go ------------------------------------------------------------------------

    def work_dir(self, job_id: str) -> Path:
        return self.work_root / job_id

    def discard_work(self, job_id: str) -> None:
        shutil.rmtree(self.work_dir(job_id), ignore_errors=True)

    def save(self, job: Job, role: str, source: Path, name: str | None = None) -> FileRecord:
        """Copy `source` into the job's files as `role` (the same role again replaces it, same id)."""
        name = safe_name(name or source.name)
        folder = self.files_dir / job.id / role
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        tmp = folder / f".{name}.{os.getpid()}.part"
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        for stale in folder.iterdir():  # a re-run may have named the file differently
            if stale.name != name and not stale.name.startswith("."):
                stale.unlink(missing_ok=True)
        return self.store.put_file(job.id, job.owner, role, target, name, content_type_for(name), target.stat().st_size)

    def delete(self, records: list[FileRecord]) -> None:
        for record in records:
            record.path.unlink(missing_ok=True)

    def discard_outputs(self, job_id: str) -> None:
        self.delete(self.store.delete_outputs(job_id))
        shutil.rmtree(self.files_dir / job_id, ignore_errors=True)

    # -- signed URLs ----------------------------------------------------------------------------

    def _signature(self, file_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{file_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, record: FileRecord, base_url: str, now: float | None = None) -> SignedUrl:
        now = time.time() if now is None else now
        expires = int(math.ceil((now + self.url_ttl_s) / 60.0) * 60)
        path = f"/files/{record.id}/{quote(record.name)}"
        return SignedUrl(f"{base_url.rstrip('/')}{path}?expires={expires}&sig={self._signature(record.id, expires)}", expires)

    def verify(self, file_id: str, expires: str | None, sig: str | None, now: float | None = None) -> bool:
        if not expires or not sig or not expires.isdigit():
            return False
        now = time.time() if now is None else now
        if int(expires) < now:
            return False
        return hmac.compare_digest(self._signature(file_id, int(expires)), sig)

    # -- uploads --------------------------------------------------------------------------------
    # A caller's upload is a file record of its own (job id `upload:<id>`, role `upload`), kept
    # under files/uploads/<id>/. It is reserved first (so its URLs exist before its bytes, as the
    # two-step upload protocols need), then written once.

    def reserve_upload(self, owner: str, name: str, content_type: str) -> FileRecord:
        upload_id = secrets.token_hex(16)
        name = safe_name(name)
        folder = self.files_dir / UPLOADS / upload_id
        return self.store.put_file(f"{UPLOAD_JOB_PREFIX}{upload_id}", owner, UPLOAD_ROLE, folder / name, name, content_type, 0)

    def write_upload(self, record: FileRecord, chunks: Iterable[bytes], max_bytes: int) -> FileRecord:
        """Store an upload's bytes (replacing earlier ones); UploadTooLarge past `max_bytes`."""
        if not is_upload(record):
            raise ValueError(f"file {record.id} is not an upload")
        record.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.path.parent / f".{record.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
        size = 0
        try:
            with open(tmp, "wb") as handle:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise UploadTooLarge(max_bytes)
                    handle.write(chunk)
            os.replace(tmp, record.path)
        finally:
            tmp.unlink(missing_ok=True)
        return self.store.put_file(record.job_id, record.owner, UPLOAD_ROLE, record.path, record.name, record.content_type, size)

    def write_part(self, record: FileRecord, number: int, chunks: Iterable[bytes], max_bytes: int) -> str:
        """Store part `number` of a multipart upload; its ETag (sha256 of the bytes). All parts
        together may hold at most `max_bytes` (UploadTooLarge)."""
        folder = self._parts_dir(record)
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = sum(p.stat().st_size for p in folder.iterdir() if p.name != str(number) and not p.name.startswith("."))
        tmp = folder / f".{number}.{secrets.token_hex(4)}.part"
        try:
            with open(tmp, "wb") as handle:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise UploadTooLarge(max_bytes)
                    digest.update(chunk)
                    handle.write(chunk)
            os.replace(tmp, folder / str(number))
        finally:
            tmp.unlink(missing_ok=True)
        return digest.hexdigest()

    def complete_parts(self, record: FileRecord, numbers: list[int], max_bytes: int) -> FileRecord:
        """Join the parts, in the order given, into the upload; MissingPart for one never sent."""
        folder = self._parts_dir(record)
        paths = [folder / str(number) for number in numbers]
        for number, path in zip(numbers, paths):
            if not path.is_file():
                raise MissingPart(number)

        def chunks() -> Iterable[bytes]:
            for path in paths:
                with open(path, "rb") as handle:
                    while chunk := handle.read(1 << 20):
                        yield chunk

        stored = self.write_upload(record, chunks(), max_bytes)
        shutil.rmtree(folder, ignore_errors=True)
        return stored

    def _parts_dir(self, record: FileRecord) -> Path:
        return record.path.parent / ".parts"

    def upload_put_signature(self, file_id: str, expires: int) -> str:
        """Signs the URL an upload's bytes are PUT to (distinct from its download signature)."""
        return self._signature(f"put:{file_id}", expires)

    def verify_upload_put(self, file_id: str, expires: str | None, sig: str | None, now: float | None = None) -> bool:
        if not expires or not sig or not expires.isdigit() or int(expires) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self.upload_put_signature(file_id, int(expires)), sig)

    def upload_at(self, url: str, owner: str) -> FileRecord | None:
        """The stored upload a URL of this server names (`/files/<id>/<name>` on any host, signed
        or not: only `owner`'s own uploads resolve), if its bytes are here; else None."""
        parts = urlsplit(url.strip())
        match = _FILE_PATH.fullmatch(parts.path)
        if parts.scheme.lower() not in ("http", "https") or match is None:
            return None
        record = self.store.file(match["id"])
        if record is None or not is_upload(record) or record.owner != owner or not record.path.is_file():
            return None
        return record


UPLOADS = "uploads"
UPLOAD_ROLE = "upload"
UPLOAD_JOB_PREFIX = "upload:"
_FILE_PATH = re.compile(r"/files/(?P<id>[0-9a-f]{32})/[^/]+")


def is_upload(record: FileRecord) -> bool:
    return record.role == UPLOAD_ROLE and record.job_id.startswith(UPLOAD_JOB_PREFIX)


class MissingPart(Exception):
    def __init__(self, number: int):
        super().__init__(f"part {number} was never uploaded")
        self.number = number


class UploadTooLarge(Exception):
    def __init__(self, max_bytes: int):
        super().__init__(f"the upload is larger than this server's limit of {max_bytes} bytes")
        self.max_bytes = max_bytes
