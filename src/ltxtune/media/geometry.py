"""A decoded frame filled to a size and centre-cropped, staying in YUV.

The frame is scaled once by swscale straight to yuv420p BT.709 at the size that covers the
bucket (aspect kept), then rotated and cropped on the small planes. Nothing goes through RGB:
that is where preparing a dataset used to spend most of its time. `to_rgb` converts a fitted
frame for the few consumers that need pixels (reference transforms, preview conditioning).
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import Interpolation

# Area averaging to shrink, bicubic to enlarge; accurate rounding and full chroma keep flat
# colours exact (plain swscale darkens by about one level when it scales).
_PRECISE = Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
SHRINK = Interpolation.AREA | _PRECISE
ENLARGE = Interpolation.BICUBIC | _PRECISE


def fill_size(width: int, height: int, bucket_w: int, bucket_h: int) -> tuple[int, int]:
    """The smallest size keeping width:height that covers the bucket."""
    scale = max(bucket_w / width, bucket_h / height)
    return max(bucket_w, round(width * scale)), max(bucket_h, round(height * scale))


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Y, U, V of a yuv420p frame as (rows, columns) views of its buffers."""
    planes = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        planes.append(rows[:, : plane.width])
    return planes


def _yuv420(planes: list[np.ndarray], width: int, height: int) -> av.VideoFrame:
    stacked = np.concatenate([plane.ravel() for plane in planes]).reshape(height * 3 // 2, width)
    return av.VideoFrame.from_ndarray(stacked, format="yuv420p")


def fit_yuv(frame: av.VideoFrame, rotation: int, width: int, height: int) -> av.VideoFrame:
    """The frame as displayed (rotation applied), resized to fill width x height and centre-cropped,
    as a yuv420p BT.709 limited-range frame (`width` and `height` even).

    swscale scales the whole frame to the size that covers the bucket and converts it to BT.709 in one
    pass (as ffmpeg's scale filter does); the centre is then cut from the small planes. Chroma is
    subsampled 2x2, so on an odd luma offset the chroma cut is half a pixel to the left, as ffmpeg's
    crop filter does.
    """
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs even sides, got {width}x{height}")
    turns = (rotation // 90) % 4
    display_w, display_h = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
    fill_w, fill_h = fill_size(display_w, display_h, width, height)
    coded_w, coded_h = (fill_h, fill_w) if turns % 2 else (fill_w, fill_h)
    downscale = coded_w * coded_h <= frame.width * frame.height
    scaled = frame.reformat(
        width=coded_w, height=coded_h, format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG",
        interpolation=SHRINK if downscale else ENLARGE,
    )
    x0, y0 = (fill_w - width) // 2, (fill_h - height) // 2
    region = []
    for index, plane in enumerate(_planes(scaled)):
        upright = np.rot90(plane, turns) if turns else plane
        if index == 0:
            region.append(upright[y0 : y0 + height, x0 : x0 + width])
        else:
            region.append(upright[y0 // 2 : y0 // 2 + height // 2, x0 // 2 : x0 // 2 + width // 2])
    out = _yuv420(region, width, height)
    out.colorspace, out.color_range = scaled.colorspace, scaled.color_range
    return out


def with_top_rows(frame: av.VideoFrame, top: av.VideoFrame) -> av.VideoFrame:
    """A copy of yuv420p `frame` whose first rows are `top` (a yuv420p strip as wide, even height)."""
    if top.width != frame.width or top.height % 2 or top.height > frame.height:
        raise ValueError(f"a {top.width}x{top.height} strip does not fit the top of a {frame.width}x{frame.height} frame")
    planes = []
    for index, (plane, strip) in enumerate(zip(_planes(frame), _planes(top))):
        rows = plane.copy()
        rows[: strip.shape[0]] = strip
        planes.append(rows)
    out = _yuv420(planes, frame.width, frame.height)
    out.colorspace, out.color_range = frame.colorspace, frame.color_range
    return out


def yuv_from_rgb(rgb: np.ndarray) -> av.VideoFrame:
    """RGB uint8 (height, width, 3) as a yuv420p BT.709 limited-range frame."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A yuv420p BT.709 frame as RGB uint8 (height, width, 3)."""
    return frame.reformat(format="rgb24", src_colorspace="ITU709", interpolation=_PRECISE).to_ndarray()
