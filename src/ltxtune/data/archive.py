"""Safe zip extraction.

Refused outright (the whole archive, status 422), before anything is written:
- entries that would land outside the target: absolute paths, drive letters, `..` components;
- symbolic links, and entries that are neither files nor folders;
- encrypted entries, and compression methods Python cannot read;
- zip bombs: more entries than `max_files`, more than `max_total_bytes` uncompressed, or an entry
  (above 1 MiB) or the whole archive expanding more than `max_ratio` times;
- the same path twice.
Ignored silently: `__MACOSX/` folders, AppleDouble `._*` files, `.DS_Store`, `Thumbs.db`,
`desktop.ini` and other hidden files. Only entries whose extension `wanted` lists are written
(media and captions); the others are returned as `ignored` so the caller can report them.

Files are written with exclusive creation below a folder this module creates, byte counts are
enforced while streaming (a lying header cannot exceed its declared size), and every target path
is checked to resolve inside the destination, so nothing outside it is ever written.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ltxtune.data.errors import DatasetError, human_size
from ltxtune.errors import ErrorKind

GiB = 1024**3
MiB = 1024**2
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}
SUPPORTED_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


@dataclass(frozen=True)
class ArchiveLimits:
    max_files: int = 10_000
    max_total_bytes: int = 32 * GiB
    max_ratio: float = 200.0
    ratio_min_bytes: int = 1 * MiB  # small entries (captions) may compress far better than media


@dataclass
class Extracted:
    root: Path
    files: list[str] = field(default_factory=list)  # archive paths written under root
    ignored: list[str] = field(default_factory=list)  # archive paths not written (not wanted)


def is_junk(name: str) -> bool:
    parts = PurePosixPath(name).parts
    if any(part == "__MACOSX" for part in parts):
        return True
    base = parts[-1] if parts else ""
    return base.lower() in JUNK_NAMES or base.startswith("._") or base.startswith(".")


def clean_name(raw: str) -> str:
    """The entry's relative POSIX path, or a DatasetError if it would escape the target."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\x00" in name:
        raise DatasetError(f"Refused archive: entry {raw!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise DatasetError(f"Refused archive: entry {raw!r} points outside the archive ('..')")
    return "/".join(parts)


MAX_NAME_BYTES = 255  # one path component, as most file systems allow
MAX_PATH_CHARS = 1024


def _short(name: str, keep: int = 80) -> str:
    return name if len(name) <= keep else f"{name[:keep]}... ({len(name)} characters)"


def check_name_lengths(raw: str, name: str) -> None:
    if len(name) > MAX_PATH_CHARS:
        raise DatasetError(f"Refused archive: entry {_short(raw)!r} has a path longer than {MAX_PATH_CHARS} characters")
    for part in name.split("/"):
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise DatasetError(f"Refused archive: entry {_short(raw)!r} has a name longer than {MAX_NAME_BYTES} bytes")


def check_no_file_folder_clash(names: list[str]) -> None:
    """Refuse an archive holding a file `a` and also entries under a folder `a/`."""
    files = set(names)
    for name in names:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in files:
                raise DatasetError(f"Refused archive: {_short(folder)!r} is both a file and a folder")


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.create_system == 3 and stat.S_ISLNK(mode)


def _is_special(info: zipfile.ZipInfo) -> bool:
    kind = stat.S_IFMT(info.external_attr >> 16)
    return info.create_system == 3 and kind not in (0, stat.S_IFREG, stat.S_IFDIR)


def check_entries(infos: list[zipfile.ZipInfo], limits: ArchiveLimits) -> list[tuple[zipfile.ZipInfo, str]]:
    """Every non-junk file entry with its clean name; raises on anything hostile."""
    if len(infos) > limits.max_files:
        raise DatasetError(f"Refused archive: {len(infos)} entries, more than the {limits.max_files} allowed")
    entries: list[tuple[zipfile.ZipInfo, str]] = []
    seen: set[str] = set()
    total = compressed = 0
    for info in infos:
        name = clean_name(info.filename)
        check_name_lengths(info.filename, name)
        if _is_symlink(info):
            raise DatasetError(f"Refused archive: entry {info.filename!r} is a symbolic link")
        if _is_special(info):
            raise DatasetError(f"Refused archive: entry {info.filename!r} is not a regular file")
        if info.is_dir() or not name or is_junk(name):
            continue
        if info.flag_bits & 0x1:
            raise DatasetError(
                f"Refused archive: entry {info.filename!r} is encrypted; upload an archive without a password"
            )
        if info.compress_type not in SUPPORTED_METHODS:
            raise DatasetError(
                f"Refused archive: entry {info.filename!r} uses an unsupported compression method "
                f"({info.compress_type}); use deflate or store"
            )
        if name in seen:
            raise DatasetError(f"Refused archive: {name!r} appears twice")
        seen.add(name)
        total += info.file_size
        compressed += info.compress_size
        if info.file_size > limits.ratio_min_bytes and info.file_size > limits.max_ratio * max(1, info.compress_size):
            raise DatasetError(
                f"Refused archive: entry {info.filename!r} expands {info.file_size / max(1, info.compress_size):.0f} "
                f"times (limit {limits.max_ratio:.0f}); this looks like a zip bomb"
            )
        entries.append((info, name))
    check_no_file_folder_clash([name for _, name in entries])
    if total > limits.max_total_bytes:
        raise DatasetError(
            f"Refused archive: {human_size(total)} uncompressed, more than the {human_size(limits.max_total_bytes)} allowed"
        )
    if total > limits.ratio_min_bytes and total > limits.max_ratio * max(1, compressed):
        raise DatasetError(
            f"Refused archive: it expands {total / max(1, compressed):.0f} times (limit {limits.max_ratio:.0f}); "
            "this looks like a zip bomb"
        )
    return entries


def extract_archive(
    zip_path: Path,
    dest: Path,
    *,
    wanted: frozenset[str] | set[str] | None = None,
    limits: ArchiveLimits | None = None,
) -> Extracted:
    """Extract the entries whose lower-case extension is in `wanted` (all if None) into `dest`,
    which is created empty (an existing `dest` is removed first)."""
    limits = limits or ArchiveLimits()
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DatasetError(f"Refused archive: not a readable zip ({error})", kind=ErrorKind.SOURCE) from error
    with archive:
        entries = check_entries(archive.infolist(), limits)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        root = dest.resolve()
        result = Extracted(root=dest)
        for info, name in entries:
            if wanted is not None and PurePosixPath(name).suffix.lower() not in wanted:
                result.ignored.append(name)
                continue
            target = (root / name).resolve()
            if not target.is_relative_to(root) or target == root:
                raise DatasetError(f"Refused archive: entry {info.filename!r} points outside the archive")
            _write_entry(archive, info, target)
            result.files.append(name)
    return result


def _write_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    written = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, open(target, "xb") as out:
            while chunk := source.read(1 << 20):
                written += len(chunk)
                if written > info.file_size:
                    raise DatasetError(f"Refused archive: entry {info.filename!r} is larger than its header says")
                out.write(chunk)
    except OSError as error:  # its message would name a server path: keep only the reason
        reason = error.strerror or type(error).__name__
        raise DatasetError(f"Refused archive: entry {_short(info.filename)!r} cannot be extracted ({reason})") from error
    except (zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError) as error:
        raise DatasetError(f"Refused archive: entry {_short(info.filename)!r} cannot be extracted ({error})") from error
    except Exception as error:  # zlib.error, lzma.LZMAError: damaged compressed data
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"Refused archive: entry {info.filename!r} is damaged ({error})") from error
