"""The prepared dataset on disk: `prepared/manifest.json` (version 1) and the files it names.

    {"version": 1, "kind": "video", "mode": "t2v", "fps": 24, "frames": 89,
     "audio": true, "audio_sample_rate": 16000,
     "samples": [{"id": "0001_clip01", "source": "clips/clip01.mp4", "scene": null,
                  "span": [0.0, 3.708333], "frames": 89, "fps": 24, "width": 768, "height": 448,
                  "media": "samples/0001_clip01.mp4", "audio": "samples/0001_clip01.wav",
                  "reference": null, "captions": ["TOK a red car"], "flips": [false],
                  "content_hash": "…"}],
     "skipped": [{"source": "clips/short.mp4", "reason": "…"}],
     "warnings": ["…"]}

`scene` is the shot's [start_s, end_s] in the source when the clip was split into several shots,
else null. `span` (an addition to the contract) is the part of the source the frames were
taken from, [start_s, end_s]: shorter than frames/fps when a short clip was slowed down.
Images are single-frame samples (`frames` 1, `media` a .png). Paths are relative to the
manifest's folder.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST = "manifest.json"
VERSION = 1


@dataclass(frozen=True)
class Sample:
    id: str
    source: str
    scene: tuple[float, float] | None
    span: tuple[float, float] | None
    frames: int
    fps: int
    width: int
    height: int
    media: str
    audio: str | None
    reference: str | None
    captions: tuple[str, ...]
    flips: tuple[bool, ...]
    content_hash: str

    @classmethod
    def from_dict(cls, data: dict) -> Sample:
        return cls(
            id=data["id"],
            source=data["source"],
            scene=tuple(data["scene"]) if data.get("scene") is not None else None,
            span=tuple(data["span"]) if data.get("span") is not None else None,
            frames=data["frames"],
            fps=data["fps"],
            width=data["width"],
            height=data["height"],
            media=data["media"],
            audio=data.get("audio"),
            reference=data.get("reference"),
            captions=tuple(data["captions"]),
            flips=tuple(data["flips"]),
            content_hash=data["content_hash"],
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("scene", "span", "captions", "flips"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass(frozen=True)
class PreparedDataset:
    root: Path
    kind: str  # "video" | "image"
    mode: str
    fps: int
    frames: int
    audio: bool
    audio_sample_rate: int
    samples: tuple[Sample, ...]
    skipped: tuple[Skipped, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def path(self, relative: str) -> Path:
        return self.root / relative

    @property
    def buckets(self) -> Counter:
        """How many samples each bucket ("768x448") holds."""
        return Counter(f"{s.width}x{s.height}" for s in self.samples)

    def to_dict(self) -> dict:
        return {
            "version": VERSION,
            "kind": self.kind,
            "mode": self.mode,
            "fps": self.fps,
            "frames": self.frames,
            "audio": self.audio,
            "audio_sample_rate": self.audio_sample_rate,
            "samples": [s.to_dict() for s in self.samples],
            "skipped": [asdict(s) for s in self.skipped],
            "warnings": list(self.warnings),
        }

    def save(self) -> Path:
        target = self.root / MANIFEST
        temporary = target.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        temporary.replace(target)
        return target

    @classmethod
    def load(cls, root: Path) -> PreparedDataset:
        root = Path(root)
        data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        if data.get("version") != VERSION:
            raise ValueError(f"{root / MANIFEST}: unsupported manifest version {data.get('version')!r}")
        return cls(
            root=root,
            kind=data["kind"],
            mode=data["mode"],
            fps=data["fps"],
            frames=data["frames"],
            audio=data["audio"],
            audio_sample_rate=data["audio_sample_rate"],
            samples=tuple(Sample.from_dict(s) for s in data["samples"]),
            skipped=tuple(Skipped(**s) for s in data["skipped"]),
            warnings=tuple(data["warnings"]),
        )
