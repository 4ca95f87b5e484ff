"""Job files in shared object storage (`ltxtune.jobs.objects`), handed out at signed URLs that
expire (or, on S3, presigned S3 URLs).

Keys in the object storage (by default a directory: the data dir itself):
    files/<job id>/<role>/<name>     delivered outputs (role: lora_file, config_file, video,
                                     debug_dataset, epoch-3/lora, epoch-3/sample-0)
    work/<job id>/...                the run's work dir (prepared dataset, training state), copied
                                     there while it runs so another host can resume it; only
                                     when the storage is not the data dir
Under the data dir, on each host:
    work/<job id>/                   the trainer's work dir, kept until the job ends
    files/uploads/<upload id>/<name> files callers uploaded (fal's storage API), one record each
    secrets/url-signing.key          HMAC key for file URLs (made once, 0600; give every host
                                     the same one)

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

from ltxtune.jobs.objects import DirectoryObjects, Objects
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
    def __init__(self, data_dir: Path, store: Store, url_ttl_s: int, objects: Objects | None = None):
        self.root = Path(data_dir)
        self.files_dir = self.root / "files"
        self.work_root = self.root / "work"
        self.store = store
        self.url_ttl_s = url_ttl_s
        self.objects: Objects = objects or DirectoryObjects(self.root)
        self._secret = read_or_create_secret(self.root / "secrets" / "url-signing.key")
        self._pushed: dict[str, dict[str, tuple[int, int]]] = {}  # job id -> file -> (size, mtime) pushed

    # -- where things go ------------------------------------------------------------------------

    def work_dir(self, job_id: str) -> Path:
        return self.work_root / job_id

    @property
    def work_is_shared(self) -> bool:
        """Whether work dirs need copying to the storage (not when the storage is the data dir)."""
        local = self.objects.local_path("work")
        return local is None or local.resolve() != self.work_root.resolve()

    def discard_work(self, job_id: str) -> None:
        shutil.rmtree(self.work_dir(job_id), ignore_errors=True)
        if self.work_is_shared:
            self.objects.delete_prefix(f"work/{job_id}")
        self._pushed.pop(job_id, None)

    def push_work(self, job_id: str) -> int:
        """Copy what changed in the job's work dir to the storage (finished files only: the trainer
        writes each by renaming a temporary). Returns the number of files copied."""
        if not self.work_is_shared:
            return 0
        work_dir = self.work_dir(job_id)
        pushed = self._pushed.setdefault(job_id, {})
        copied = 0
        for path in sorted(work_dir.rglob("*")) if work_dir.is_dir() else []:
            if not path.is_file() or path.name.startswith(".") or path.suffix in (".tmp", ".part"):
                continue
            relative = path.relative_to(work_dir).as_posix()
            stat = path.stat()
            if pushed.get(relative) == (stat.st_size, stat.st_mtime_ns):
                continue
            self.objects.put_file(f"work/{job_id}/{relative}", path)
            pushed[relative] = (stat.st_size, stat.st_mtime_ns)
            copied += 1
        return copied

    def pull_work(self, job_id: str) -> int:
        """Fill the local work dir from the storage (a run resumed on another host): returns the
        number of files fetched."""
        if not self.work_is_shared:
            return 0
        work_dir = self.work_dir(job_id)
        prefix = f"work/{job_id}/"
        fetched = 0
        pushed = self._pushed.setdefault(job_id, {})
        for info in self.objects.list(f"work/{job_id}"):
            target = work_dir / info.key[len(prefix):]
            if target.is_file() and target.stat().st_size == info.size:
                continue
            self.objects.get_file(info.key, target)
            stat = target.stat()
            pushed[info.key[len(prefix):]] = (stat.st_size, stat.st_mtime_ns)
            fetched += 1
        return fetched

    def save(self, job: Job, role: str, source: Path, name: str | None = None) -> FileRecord:
        """Store `source` in the job's files as `role` (the same role again replaces it, same id)."""
        name = safe_name(name or source.name)
        folder = f"files/{job.id}/{role}"
        key = f"{folder}/{name}"
        size = self.objects.put_file(key, source)
        for stale in self.objects.list(folder):  # a re-run may have named the file differently
            if stale.key != key:
                self.objects.delete(stale.key)
        local = self.objects.local_path(key)
        return self.store.put_file(job.id, job.owner, role, local or Path(key), name, content_type_for(name), size)

    def key(self, record: FileRecord) -> str:
        """The record's key in the object storage (records keep a local path on a directory)."""
        local = self.objects.local_path("files")
        if record.path.is_absolute() and local is not None:
            try:
                return record.path.relative_to(local.parent).as_posix()
            except ValueError:
                pass
        return record.path.as_posix()

    def local_file(self, record: FileRecord) -> Path | None:
        """Where the file is on this host's disk, if the storage is a directory and it is there."""
        path = self.objects.local_path(self.key(record))
        return path if path is not None and path.is_file() else None

    def presigned_url(self, record: FileRecord) -> str | None:
        """An S3 URL for the file valid for the URL lifetime, where the storage signs its own."""
        return self.objects.presigned_url(self.key(record), self.url_ttl_s, record.name, record.content_type)

    def delete(self, records: list[FileRecord]) -> None:
        for record in records:
            self.objects.delete(self.key(record))

    def discard_outputs(self, job_id: str) -> None:
        self.delete(self.store.delete_outputs(job_id))
        self.objects.delete_prefix(f"files/{job_id}")

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
        size = _write_bounded(chunks, tmp, record.path, 0, max_bytes)
        return self.store.put_file(record.job_id, record.owner, UPLOAD_ROLE, record.path, record.name, record.content_type, size)

    def write_part(self, record: FileRecord, number: int, chunks: Iterable[bytes], max_bytes: int) -> str:
        """Store part `number` of a multipart upload; its ETag (sha256 of the bytes). All parts
        together may hold at most `max_bytes` (UploadTooLarge)."""
        folder = self._parts_dir(record)
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = sum(p.stat().st_size for p in folder.iterdir() if p.name != str(number) and not p.name.startswith("."))
        _write_bounded(chunks, folder / f".{number}.{secrets.token_hex(4)}.part", folder / str(number), size, max_bytes, digest)
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


def _write_bounded(chunks: Iterable[bytes], tmp: Path, dest: Path, size: int, max_bytes: int, digest=None) -> int:
    """Write `chunks` to `tmp`, then move it to `dest`; UploadTooLarge once `size` (what is already
    stored) plus the new bytes passes `max_bytes`, leaving nothing behind. Returns the new total."""
    try:
        with open(tmp, "wb") as handle:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge(max_bytes)
                if digest is not None:
                    digest.update(chunk)
                handle.write(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return size
