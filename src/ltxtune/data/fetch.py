"""Fetch the training archive: `http(s)://`, `data:` URIs, and local files from the command line.

- Remote fetches are streamed to disk under a size cap, with connect/read timeouts and an overall
  deadline. Every TCP connection, redirects included, goes through `ltxtune.netguard`: the host
  is resolved once, non-public addresses are refused unless the operator allows private URLs, and
  the checked address is the one dialled, so a training URL cannot reach the server's own network
  (DNS rebinding included). Environment proxies are not used, for the same reason.
- `data:` URIs (what fal-client's `encode_file` sends) are decoded to a file under the same cap.
- Local paths and `file://` URLs are read in place, only when `allow_local_files` (command line).
- Whatever was fetched must be a zip archive; every failure here is a `DatasetError` with
  of kind SOURCE, worded "<field> not reachable: <why>".
"""

from __future__ import annotations

import base64
import binascii
import time
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from ltxtune.data.errors import DatasetError, human_size, source_error
from ltxtune.errors import ErrorKind
from ltxtune.events import ShouldStop, Stopped, never_stop
from ltxtune.netguard import GuardedTransport, RefusedUrl, is_public_address, precheck

__all__ = ["FetchLimits", "ensure_zip", "fetch_file", "fetch_source", "is_public_address"]

GiB = 1024**3
ARCHIVE_NAME = "source.zip"


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 16 * GiB
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 60.0
    total_timeout_s: float = 2 * 3600.0
    max_redirects: int = 5


def fetch_source(
    url: str,
    dest_dir: Path,
    *,
    field: str = "the dataset URL",
    allow_local_files: bool = False,
    allow_private_urls: bool = False,
    limits: FetchLimits = FetchLimits(),
    should_stop: ShouldStop = never_stop,
) -> Path:
    """The zip archive `url` points to: a file under `dest_dir`, or the local file itself.
    `should_stop` is asked between downloaded chunks (Stopped when it says so)."""
    path = fetch_file(url, dest_dir / ARCHIVE_NAME, field=field, allow_local_files=allow_local_files,
                      allow_private_urls=allow_private_urls, limits=limits, should_stop=should_stop)
    ensure_zip(path, field)
    return path


def fetch_file(
    url: str,
    dest: Path,
    *,
    field: str,
    allow_local_files: bool = False,
    allow_private_urls: bool = False,
    limits: FetchLimits = FetchLimits(),
    should_stop: ShouldStop = never_stop,
) -> Path:
    """Any file `url` points to (a validation image, a reference video): `dest`, or the local file itself."""
    url = url.strip()
    try:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
    except ValueError as error:
        raise source_error(field, f"the URL is malformed ({error})") from None
    if scheme in ("http", "https"):
        return _download(url, dest, field, allow_private_urls, limits, should_stop)
    if scheme == "data":
        return _decode_data_uri(url, dest, field, limits)
    if scheme == "file" or scheme == "" or (len(scheme) == 1 and url[1:3] in (":\\", ":/")):
        if not allow_local_files:
            raise DatasetError(
                f"{field} must be an http(s):// or data: URL; local files are accepted only from the command line",
                kind=ErrorKind.SOURCE,
            )
        return _local_file(url, field)
    raise DatasetError(f"{field}: unsupported URL scheme {scheme!r}; use http(s):// or data:", kind=ErrorKind.SOURCE)


def ensure_zip(path: Path, field: str) -> None:
    size = path.stat().st_size
    if size == 0:
        raise DatasetError(f"{field} is not a zip archive: the file is empty (0 bytes)", kind=ErrorKind.SOURCE)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            head = handle.read(16)
        raise DatasetError(
            f"{field} is not a zip archive ({human_size(size)} starting with {head!r}); upload a .zip of your clips",
            kind=ErrorKind.SOURCE,
        )


def _local_file(url: str, field: str) -> Path:
    if url.lower().startswith("file:"):
        parts = urllib.parse.urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise source_error(field, f"file:// URLs must name a local path, not host {parts.netloc!r}")
        path = Path(urllib.parse.unquote(parts.path))
    else:
        path = Path(url).expanduser()
    if not path.exists():
        raise source_error(field, f"no such file: {path}")
    if not path.is_file():
        raise source_error(field, f"{path} is not a file (zip your clips and pass the .zip)")
    return path


def _decode_data_uri(url: str, dest: Path, field: str, limits: FetchLimits) -> Path:
    header, comma, payload = url.partition(",")
    if not comma:
        raise source_error(field, "malformed data: URI (no comma)")
    is_base64 = header.lower().endswith(";base64")
    estimated = len(payload) * 3 // 4 if is_base64 else len(payload)
    if estimated > limits.max_bytes:
        raise source_error(
            field, f"the data: URI holds {human_size(estimated)}, more than the {human_size(limits.max_bytes)} limit"
        )
    try:
        if is_base64:
            data = base64.b64decode("".join(payload.split()), validate=True)
        else:
            data = urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as error:
        raise source_error(field, f"malformed base64 in data: URI ({error})") from error
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return dest


def _download(url: str, dest: Path, field: str, allow_private: bool, limits: FetchLimits, should_stop: ShouldStop) -> Path:
    try:
        precheck(url, allow_private=allow_private)
    except RefusedUrl as error:
        raise source_error(field, str(error)) from None
    timeout = httpx.Timeout(limits.read_timeout_s, connect=limits.connect_timeout_s)
    client = httpx.Client(
        transport=GuardedTransport(allow_private),
        timeout=timeout,
        follow_redirects=True,
        max_redirects=limits.max_redirects,
        trust_env=False,
        headers={"User-Agent": "ltxtune", "Accept-Encoding": "identity"},
    )
    deadline = time.monotonic() + limits.total_timeout_s
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with client, client.stream("GET", url) as response:
            if response.status_code >= 400:
                raise source_error(field, f"HTTP {response.status_code} {response.reason_phrase}".strip())
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise source_error(
                    field,
                    f"the archive is {human_size(int(declared))}, more than the {human_size(limits.max_bytes)} limit",
                )
            received = 0
            with open(dest, "wb") as out:
                for chunk in response.iter_bytes():  # as it arrives, so a stop is seen soon; decoded: a gzip body counts at full size
                    received += len(chunk)
                    if received > limits.max_bytes:
                        raise source_error(
                            field, f"the archive is larger than the {human_size(limits.max_bytes)} limit"
                        )
                    if time.monotonic() > deadline:
                        raise source_error(field, f"the download took longer than {limits.total_timeout_s:.0f} s")
                    if should_stop():
                        raise Stopped("stopped while downloading the dataset")
                    out.write(chunk)
    except (DatasetError, Stopped):
        dest.unlink(missing_ok=True)
        raise
    except RefusedUrl as error:
        dest.unlink(missing_ok=True)
        raise source_error(field, str(error)) from None
    except httpx.TooManyRedirects:
        dest.unlink(missing_ok=True)
        raise source_error(field, f"more than {limits.max_redirects} redirects") from None
    except httpx.TimeoutException as error:
        dest.unlink(missing_ok=True)
        raise source_error(field, f"timed out ({type(error).__name__})") from None
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as error:
        dest.unlink(missing_ok=True)
        raise source_error(field, str(error) or type(error).__name__) from None
    return dest
