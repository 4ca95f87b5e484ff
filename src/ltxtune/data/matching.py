"""Which extracted files are training media, their captions and (v2v) references.

- Videos `.mp4 .mov .avi .mkv`, images `.png .jpg .jpeg`, captions `.txt`, extensions in any
  letter case. A caption is the `.txt` with the media's base name in the media's folder (an exact
  name first, else one differing only in letter case). Media without one train on an empty
  caption (or the trigger phrase alone).
- Files in subfolders are fine; `a/clip.mp4` and `b/clip.mp4` stay distinct samples.
- All videos or all images: a mixed archive is refused with the spec's words.
- Other files (`.webm`, `.gif`, `.pdf`, ...) are skipped with a reason; captions that match no
  media are reported as a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ltxtune.data.errors import DatasetError
from ltxtune.data.manifest import Skipped
from ltxtune.data.probe import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from ltxtune.data.references import CONVENTION, split_reference_name

CAPTION_EXTENSION = ".txt"
WANTED = frozenset((*VIDEO_EXTENSIONS, *IMAGE_EXTENSIONS, CAPTION_EXTENSION))
MIXED = "The dataset must contain ONLY videos OR ONLY images - mixed datasets are not supported."
RECOMMENDED_FILES = 10


@dataclass(frozen=True)
class MediaFile:
    source: str  # path inside the archive
    path: Path  # extracted file
    caption: Path | None = None
    reference_source: str | None = None
    reference: Path | None = None


@dataclass
class Matched:
    kind: str
    items: list[MediaFile]
    count: int  # media files found, references excluded
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def media_kind(name: str) -> str | None:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return None


def match_files(root: Path, files: list[str], ignored: list[str], *, v2v: bool, derive_references: bool) -> Matched:
    """Pair media with captions (and references for v2v); refuse mixed or empty archives."""
    skipped = [
        Skipped(
            name,
            f"unsupported file type {PurePosixPath(name).suffix or '(none)'}: use videos "
            f"({', '.join(VIDEO_EXTENSIONS)}) or images ({', '.join(IMAGE_EXTENSIONS)})",
        )
        for name in sorted(ignored)
    ]
    media = sorted(name for name in files if media_kind(name))
    captions = {name for name in files if PurePosixPath(name).suffix.lower() == CAPTION_EXTENSION}
    if not media:
        raise DatasetError(
            "The archive contains no training media: add videos "
            f"({', '.join(VIDEO_EXTENSIONS)}) or images ({', '.join(IMAGE_EXTENSIONS)}), with optional .txt captions"
        )
    videos = [name for name in media if media_kind(name) == "video"]
    images = [name for name in media if media_kind(name) == "image"]
    if videos and images:
        fewer = images if len(images) <= len(videos) else videos
        raise DatasetError(
            f"{MIXED} Found {len(videos)} videos and {len(images)} images "
            f"(e.g. {', '.join(fewer[:3])}); remove one kind."
        )
    kind = "video" if videos else "image"
    used_captions: set[str] = set()

    def caption_for(name: str) -> Path | None:
        found = _caption_name(name, captions)
        if found is None:
            return None
        used_captions.add(found)
        return root / found

    items: list[MediaFile] = []
    warnings: list[str] = []
    count = len(media)
    if v2v:
        targets, references = _pair(media, skipped)
        count = len(targets)
        missing = [name for name in targets if name not in references]
        if missing and not derive_references:
            if len(missing) == len(targets):
                raise DatasetError(
                    f"Video-to-video training needs a reference for every clip, and none of the {len(targets)} "
                    f"has one: {CONVENTION}. Or set reference_transform (canny, grayscale or blur) to derive "
                    "references from the clips."
                )
            for name in missing:
                stem = PurePosixPath(name)
                expected = str(stem.with_name(f"{stem.stem}_ref{stem.suffix}"))
                skipped.append(Skipped(name, f"no reference clip: expected {expected} beside it ({CONVENTION})"))
            targets = [name for name in targets if name in references]
        for name in targets:
            ref = references.get(name)
            items.append(MediaFile(name, root / name, caption_for(name), ref, root / ref if ref else None))
            if ref:
                caption_for(ref)  # a caption for the reference is not an orphan
    else:
        items = [MediaFile(name, root / name, caption_for(name)) for name in media]
    orphans = sorted(captions - used_captions)
    if orphans:
        more = f" and {len(orphans) - 5} more" if len(orphans) > 5 else ""
        warnings.append(f"Captions that match no media file: {', '.join(orphans[:5])}{more}")
    return Matched(kind=kind, items=items, count=count, skipped=skipped, warnings=warnings)


def _caption_name(media: str, captions: set[str]) -> str | None:
    path = PurePosixPath(media)
    exact = str(path.with_suffix(CAPTION_EXTENSION))
    if exact in captions:
        return exact
    folded = exact.casefold()
    matches = sorted(name for name in captions if name.casefold() == folded)
    return matches[0] if matches else None


def _pair(media: list[str], skipped: list[Skipped]) -> tuple[list[str], dict[str, str]]:
    """Split v2v media into targets and a target -> reference map."""
    by_stem: dict[tuple[str, str], list[str]] = {}
    for name in media:
        path = PurePosixPath(name)
        by_stem.setdefault((str(path.parent), path.stem), []).append(name)
    targets: list[str] = []
    references: dict[str, str] = {}
    reference_names = set()
    for name in media:
        path = PurePosixPath(name)
        target_stem = split_reference_name(path.stem)
        if target_stem is None:
            continue
        candidates = by_stem.get((str(path.parent), target_stem), [])
        if not candidates:
            skipped.append(
                Skipped(name, f"reference without a target: expected {path.parent / target_stem}.<ext> beside it")
            )
            reference_names.add(name)
            continue
        reference_names.add(name)
        for target in candidates:
            if target in references:
                skipped.append(
                    Skipped(name, f"a second reference for {target} (already paired with {references[target]})")
                )
            else:
                references[target] = name
    targets = [name for name in media if name not in reference_names]
    return targets, references
