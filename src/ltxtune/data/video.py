"""Frames: sampled at the target frame rate, resized to fill the bucket, centre-cropped, written.

Timing rule. A sample covers a window of the source, `start` seconds after the clip's first
frame, `span` seconds long, and has `frames` output frames at the target `fps`. Output frame i
shows the source frame on screen at `start + i * span / frames` (the latest frame whose
timestamp is not after that time; `ltxtune.media.decode.frames_at_times`). A clip with enough
frames uses `span = frames / fps`: the first `frames` frames at the target rate from the start of
the clip or scene (a 60 fps source drops frames, a 15 fps source repeats them). With
`auto_scale_input`, a shorter clip or scene uses its whole length as `span`, so it is slowed down
to fill the frame count.

Frames stay in the decoder's YUV through scaling, cropping and encoding
(`ltxtune.media.geometry.fit_yuv`); only a derived reference (canny, grayscale, blur) converts the
small fitted frame to RGB. Decoding streams: only the frame on screen and the current output
frame are held, so memory is bounded whatever the source's resolution or length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import av
import numpy as np

from ltxtune.media.decode import frames_at_times, read_rgb_frames
from ltxtune.media.encode import FITTED, H264Writer
from ltxtune.media.errors import MediaError, why
from ltxtune.media.geometry import fit_yuv, to_rgb
from ltxtune.media.probe import MediaInfo


class FitError(Exception):
    """A clip failed while decoding or encoding; the message is the reason shown to the user."""


def sample_times(start: float, span: float, frames: int) -> list[float]:
    return [start + i * span / frames for i in range(frames)]


def fitted_yuv_frames(
    path: Path, info: MediaInfo, times: Sequence[float], width: int, height: int
) -> Iterator[av.VideoFrame]:
    """yuv420p frames of the bucket size, one per time; a repeated source frame is scaled once."""
    last_source = None
    last_fitted: av.VideoFrame | None = None
    try:
        for frame in frames_at_times(path, info, times):
            if frame is not last_source:
                last_source, last_fitted = frame, fit_yuv(frame, info.rotation, width, height)
            yield last_fitted  # type: ignore[misc]
    except MediaError as error:
        raise FitError(str(error)) from error


def fitted_frames(path: Path, info: MediaInfo, times: Sequence[float], width: int, height: int) -> Iterator[np.ndarray]:
    """The same frames as RGB uint8 (height, width, 3), for consumers that need pixels."""
    last_fitted = None
    last_rgb: np.ndarray | None = None
    for fitted in fitted_yuv_frames(path, info, times, width, height):
        if fitted is not last_fitted:
            last_fitted, last_rgb = fitted, to_rgb(fitted)
        yield last_rgb  # type: ignore[misc]


def write_fitted(
    frames: Iterator[av.VideoFrame],
    dest: Path,
    fps: int,
    *,
    audio: np.ndarray | None = None,
    audio_rate: int = 0,
    derived: tuple[Path, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> int:
    """Write `frames` (yuv420p, from `fitted_yuv_frames`) to `dest` (and, with `derived`, a second clip
    of transformed frames, the transform taking and giving RGB)."""
    writer = second = None
    count = 0
    last_frame = None
    derived_rgb: np.ndarray | None = None
    try:
        for frame in frames:
            if writer is None:
                writer = H264Writer(dest, frame.width, frame.height, fps, settings=FITTED,
                                    audio_rate=audio_rate if audio is not None else None)
                if audio is not None:
                    writer.write_audio(audio)
                if derived is not None:
                    second = H264Writer(derived[0], frame.width, frame.height, fps, settings=FITTED)
            writer.add_frame(frame)
            if second is not None:
                if frame is not last_frame:
                    last_frame, derived_rgb = frame, derived[1](to_rgb(frame))  # type: ignore[index]
                second.add(derived_rgb)  # type: ignore[arg-type]
            count += 1
    except av.FFmpegError as error:
        raise FitError(f"encoding failed ({why(error)})") from error
    finally:
        for each in (writer, second):
            if each is not None:
                each.close()
    return count


def read_video(path: Path) -> np.ndarray:
    """A fitted clip's frames as RGB uint8, shape (frames, height, width, 3) (for the trainer)."""
    return read_rgb_frames(path)
