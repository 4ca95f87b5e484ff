"""Shared object storage: where everything a job reads or writes that another host must see
lives (uploads, outputs, the checkpoints of a run's work dir). Keys are `/`-separated paths
(`files/<job>/<role>/<name>`, `work/<job>/state/training_state.pt`).

Two backends, chosen by `--storage`:
- a directory (the default: the data dir; or a shared filesystem mounted on every host);
- `s3://bucket/prefix` on any S3-compatible server, through boto3 with its usual settings
  (`AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_S3`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
  `AWS_REGION`/`AWS_DEFAULT_REGION`, profiles).

Files move in chunks (`CHUNK` bytes; S3 uploads are multipart above it), never whole in memory.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Protocol
from urllib.parse import urlsplit

CHUNK = 8 * 1024 * 1024


class ObjectMissing(FileNotFoundError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float


class Objects(Protocol):
    def describe(self) -> str: ...
    def put_file(self, key: str, source: Path) -> int: ...  # returns the size stored
    def put_stream(self, key: str, stream: IO[bytes]) -> int: ...
    def get_file(self, key: str, target: Path) -> None: ...
    def read_chunks(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...
    def info(self, key: str) -> ObjectInfo | None: ...
    def list(self, prefix: str) -> list[ObjectInfo]: ...
    def delete(self, key: str) -> None: ...  # no error if it is not there
    def delete_prefix(self, prefix: str) -> None: ...
    def local_path(self, key: str) -> Path | None: ...  # where a directory backend keeps it
    def presigned_url(self, key: str, ttl_s: int, filename: str, content_type: str) -> str | None: ...


def _clean(key: str) -> str:
    parts = [part for part in key.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ValueError(f"invalid object key {key!r}")
    return "/".join(parts)


class DirectoryObjects:
    """Objects as files under one directory (local or a shared filesystem)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def local_path(self, key: str) -> Path:
        return self.root / _clean(key)

    def put_file(self, key: str, source: Path) -> int:
        target = self.local_path(key)
        if Path(source).resolve() == target.resolve():
            return target.stat().st_size
        with open(source, "rb") as stream:
            return self.put_stream(key, stream)

    def put_stream(self, key: str, stream: IO[bytes]) -> int:
        target = self.local_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        with open(tmp, "wb") as out:
            shutil.copyfileobj(stream, out, CHUNK)
        os.replace(tmp, target)  # readers see the old file or the whole new one
        return target.stat().st_size

    def get_file(self, key: str, target: Path) -> None:
        source = self.local_path(key)
        if not source.is_file():
            raise ObjectMissing(key)
        if source.resolve() == Path(target).resolve():
            return
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(target).with_name(f".{Path(target).name}.{os.getpid()}.part")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)

    def read_chunks(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self.local_path(key)
        if not path.is_file():
            raise ObjectMissing(key)
        with open(path, "rb") as stream:
            stream.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = stream.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def info(self, key: str) -> ObjectInfo | None:
        path = self.local_path(key)
        if not path.is_file():
            return None
        stat = path.stat()
        return ObjectInfo(_clean(key), stat.st_size, stat.st_mtime)

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self.local_path(prefix)
        if not base.is_dir():
            return []
        found = []
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                stat = path.stat()
                found.append(ObjectInfo(path.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime))
        return found

    def delete(self, key: str) -> None:
        self.local_path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.local_path(prefix), ignore_errors=True)

    def presigned_url(self, key: str, ttl_s: int, filename: str, content_type: str) -> str | None:
        return None  # served by the API at its own signed URL


class S3Objects:
    """Objects in an S3-compatible bucket, under a key prefix."""

    def __init__(self, bucket: str, prefix: str = "", client: object | None = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            try:
                import boto3
            except ImportError as error:  # pragma: no cover - the extra is not installed
                raise RuntimeError("s3:// storage needs boto3: pip install 'ltxtune[s3]'") from error
            client = boto3.client("s3")
        self.client = client
        from boto3.s3.transfer import TransferConfig

        self._transfer = TransferConfig(multipart_threshold=CHUNK, multipart_chunksize=CHUNK, max_concurrency=4)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{_clean(key)}" if self.prefix else _clean(key)

    def local_path(self, key: str) -> None:
        return None

    def put_file(self, key: str, source: Path) -> int:
        self.client.upload_file(str(source), self.bucket, self._key(key), Config=self._transfer)
        return Path(source).stat().st_size

    def put_stream(self, key: str, stream: IO[bytes]) -> int:
        counted = _Counting(stream)
        self.client.upload_fileobj(counted, self.bucket, self._key(key), Config=self._transfer)
        return counted.count

    def get_file(self, key: str, target: Path) -> None:
        if self.info(key) is None:
            raise ObjectMissing(key)
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(target).with_name(f".{Path(target).name}.{os.getpid()}.part")
        self.client.download_file(self.bucket, self._key(key), str(tmp), Config=self._transfer)
        os.replace(tmp, target)

    def read_chunks(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)["Body"]
        except self.client.exceptions.NoSuchKey:
            raise ObjectMissing(key) from None
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def info(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(_clean(key), int(head["ContentLength"]), head["LastModified"].timestamp())

    def list(self, prefix: str) -> list[ObjectInfo]:
        start = self._key(prefix) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", []):
                found.append(ObjectInfo(item["Key"][strip:], int(item["Size"]), item["LastModified"].timestamp()))
        return sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        keys = [self._key(info.key) for info in self.list(prefix)]
        for first in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[first : first + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def presigned_url(self, key: str, ttl_s: int, filename: str, content_type: str) -> str:
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self._key(key),
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
                "ResponseContentType": content_type,
            },
            ExpiresIn=int(ttl_s),
        )


class _Counting:
    """A readable stream that counts the bytes read from it."""

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data


def open_objects(target: str | Path | None, default_root: Path) -> Objects:
    """The storage named by `--storage`: `s3://bucket/prefix`, a directory, or (None) `default_root`."""
    if target is None:
        return DirectoryObjects(default_root)
    text = str(target)
    if text.startswith("s3://"):
        parts = urlsplit(text)
        if not parts.netloc:
            raise ValueError(f"--storage {text}: name a bucket, as s3://bucket/prefix")
        return S3Objects(parts.netloc, parts.path)
    if "://" in text:
        raise ValueError(f"--storage {text}: give a directory or s3://bucket/prefix")
    return DirectoryObjects(Path(text))
