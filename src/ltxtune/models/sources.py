"""Where a family's components load from: a diffusers directory, or an original single file + Gemma 3.

`resolve(family)` turns the family's environment variable into a `ModelSource` (None for the tiny
family built in code). A diffusers-format directory holds every component; an original single file
(`ltx-2.3-22b-dev.safetensors`) holds all but the text encoder, which comes from
`LTXTUNE_GEMMA_MODEL`: a directory (a Hugging Face Gemma 3 model folder with its tokenizer, or a
diffusers pipeline folder with `text_encoder/` and `tokenizer/`), or a repo id already in the local
Hugging Face cache (default `google/gemma-3-12b-it`). Nothing is ever downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .families import ModelFamily, ModelNotAvailable, _cached_snapshot, _looks_like_path, get_family

GEMMA_ENV = "LTXTUNE_GEMMA_MODEL"
DEFAULT_GEMMA_REPO = "google/gemma-3-12b-it"


@dataclass(frozen=True)
class ModelSource:
    family: ModelFamily
    path: Path  # a diffusers-format directory or an original .safetensors file
    single_file: bool

    @property
    def origin(self) -> str:
        return f"{self.family.env_var}={self.path}"

    def pipeline_dir(self, log=None) -> Path:
        """A diffusers-format directory with every component but (for a single file) Gemma and its tokenizer;
        a single file is converted on first use (progress lines go to `log`)."""
        if not self.single_file:
            return self.path
        from .single_file import converted_pipeline

        return converted_pipeline(self.path, log)

    def text_location(self, part: str) -> tuple[Path, str | None]:
        """(directory, subfolder) of `text_encoder` or `tokenizer`."""
        if not self.single_file:
            return self.path, part
        gemma = resolve_gemma(self)
        return (gemma, part) if (gemma / part).is_dir() else (gemma, None)

    def content_id(self) -> str:
        """Changes whenever the weights change: the file's sha256 (plus Gemma's), or a directory's file listing."""
        if not self.single_file:
            return "dir:" + directory_fingerprint(self.path)
        from .single_file import file_sha256

        return f"sha256:{file_sha256(self.path)};gemma:{directory_fingerprint(resolve_gemma(self))}"


def resolve(family: str | ModelFamily) -> ModelSource | None:
    """The family's source, or None for the tiny family built in code; raises ModelNotAvailable."""
    family = get_family(family)
    path = family.resolve_source()
    if path is None:
        return None
    return ModelSource(family=family, path=path, single_file=path.is_file())


def resolve_gemma(source: ModelSource | None = None) -> Path:
    """The Gemma 3 directory for single-file sources; raises ModelNotAvailable saying what to set."""
    configured = os.environ.get(GEMMA_ENV, "").strip()
    needed_by = f" ({source.origin} is a single-file checkpoint without a text encoder)" if source else ""
    hint = (
        f"Set {GEMMA_ENV} to a Gemma 3 12B directory (config.json, the weights and the tokenizer files, e.g. "
        f"`hf download {DEFAULT_GEMMA_REPO} --local-dir /models/gemma-3-12b-it`) or to a Hugging Face repo id "
        "already in the local cache. ltxtune never downloads weights itself."
    )
    value = configured or DEFAULT_GEMMA_REPO
    origin = f"{GEMMA_ENV}={configured!r}" if configured else f"{GEMMA_ENV} is not set and the default {value!r}"
    if configured and _looks_like_path(value):
        path = Path(value).expanduser()
        if _is_gemma_dir(path):
            return path
        what = "does not exist" if not path.exists() else "is not a Gemma 3 model directory (no config.json)"
        raise ModelNotAvailable(f"Gemma 3 text encoder not found{needed_by}: {origin} {what}. {hint}")
    cached = _cached_snapshot(value)
    if cached is not None and _is_gemma_dir(cached):
        return cached
    raise ModelNotAvailable(
        f"Gemma 3 text encoder not found{needed_by}: {origin} is not in the local Hugging Face cache. {hint}"
    )


def _is_gemma_dir(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "text_encoder" / "config.json").is_file()


def directory_fingerprint(path: Path) -> str:
    """sha256 over every file's relative path, size and mtime: cheap, and changes when any file does."""
    path = Path(path)
    return _fingerprint(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _fingerprint(path: Path, mtime_ns: int) -> str:  # cached per process: cache keys ask once per sample
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file() and not p.name.startswith(".")):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}\x1f{stat.st_size}\x1f{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]
