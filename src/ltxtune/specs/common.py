"""Facts shared by every protocol's requests: resolution buckets, frame-count rules, families, modes.

Pure data: no torch, no disk, no network.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict

Resolution = Literal["low", "medium", "high"]
AspectRatio = Literal["16:9", "1:1", "9:16"]

# The spec pages' bucket table (the t2v / i2v trainer pages, "resolution").
BUCKETS: dict[tuple[str, str], tuple[int, int]] = {
    ("low", "16:9"): (512, 288),
    ("low", "1:1"): (512, 512),
    ("low", "9:16"): (288, 512),
    ("medium", "16:9"): (768, 448),
    ("medium", "1:1"): (768, 768),
    ("medium", "9:16"): (448, 768),
    ("high", "16:9"): (960, 544),
    ("high", "1:1"): (960, 960),
    ("high", "9:16"): (544, 960),
}

# LTX-2 latents compress 32x in space and 8x in time: sides are multiples of 32, frames are 8k+1.
SPATIAL_MULTIPLE = 32
TEMPORAL_MULTIPLE = 8


# A long built-in quality negative prompt (the v2 trainer pages promise one without quoting it).
LONG_NEGATIVE_PROMPT = (
    "worst quality, low quality, blurry, out of focus, inconsistent motion, jittery, jerky motion, "
    "flickering, distorted, deformed, disfigured, bad anatomy, extra limbs, warped faces, "
    "oversaturated, overexposed, underexposed, washed out colors, grainy, noisy, compression artifacts, "
    "watermark, text, subtitles, logo, static frame, frozen video, distorted audio, off-sync audio"
)


class Family(str, Enum):
    LTX2 = "ltx2"  # Lightricks LTX-2, 19B
    LTX23 = "ltx23"  # Lightricks LTX-2.3, 22B
    TINY = "tiny"  # same architecture, 2 layers, random weights: runs anywhere


class Mode(str, Enum):
    T2V = "t2v"
    I2V = "i2v"
    V2V = "v2v"


class Bucket(BaseModel):
    """A training or preview frame size in pixels (both sides multiples of 32)."""

    model_config = ConfigDict(frozen=True)

    width: int
    height: int

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}"


def bucket_for(resolution: str, aspect_ratio: str) -> Bucket:
    width, height = BUCKETS[(resolution, aspect_ratio)]
    return Bucket(width=width, height=height)


def is_valid_frame_count(frames: int) -> bool:
    return frames % TEMPORAL_MULTIPLE == 1


def snap_frames_down(frames: int) -> int:
    """The largest 8k+1 not above `frames` (e.g. 96 -> 89, 89 -> 89, 10 -> 9)."""
    return ((frames - 1) // TEMPORAL_MULTIPLE) * TEMPORAL_MULTIPLE + 1


def bucket_for_area(side: int, width: int, height: int) -> Bucket:
    """A bucket of about side*side pixels with the clip's aspect ratio, sides multiples of 32.

    Used for an integer `resolution`: a 1920x1080 clip at 768 becomes 1024x576
    (589,824 px, the same as 768x768), a square clip becomes 768x768.
    """
    aspect = width / height
    target_area = side * side
    exact_width = (target_area * aspect) ** 0.5
    exact_height = exact_width / aspect
    snapped_width = max(SPATIAL_MULTIPLE, round(exact_width / SPATIAL_MULTIPLE) * SPATIAL_MULTIPLE)
    snapped_height = max(SPATIAL_MULTIPLE, round(exact_height / SPATIAL_MULTIPLE) * SPATIAL_MULTIPLE)
    return Bucket(width=snapped_width, height=snapped_height)
