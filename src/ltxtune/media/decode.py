"""Decoding: the source frame on screen at given times, every frame of a clip, a clip's audio.

`frames_at_times` is the one "frame at time t" routine. It goes by presentation timestamps, never
by frame index, so a variable-frame-rate source (phone recordings, screen captures, edited clips)
shows at time t the frame that a player shows then: the latest frame whose timestamp is not
after t. Decoding streams; only the frame on screen is held.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np

from ltxtune.media.errors import MediaError, why
from ltxtune.media.probe import MediaInfo, video_stream


def frames_at_times(path: Path, info: MediaInfo, times: Sequence[float]) -> Iterator[av.VideoFrame]:
    """For each time (seconds after the first frame, ascending) the source frame on screen then.

    Consecutive times that fall on the same source frame yield the same object, so callers can
    skip re-converting it. Raises MediaError if decoding fails or stops well before the last time.
    """
    if not times:
        return
    tolerance = min(0.001, 0.25 / max(info.fps, 1.0))  # timestamps rounded to ms (mkv)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise MediaError(f"cannot be opened ({why(error)})") from error
    with container:
        stream = video_stream(container)
        if stream is None:
            raise MediaError("has no video stream")
        stream.thread_type = "AUTO"
        if times[0] > 1.0:
            container.seek(int((info.start + times[0] - 0.5) / stream.time_base), stream=stream, backward=True)
        index = 0
        failure: av.FFmpegError | None = None
        shown: av.VideoFrame | None = None
        shown_at = 0.0
        try:
            for frame in container.decode(stream):
                at = (float(frame.time) - info.start) if frame.time is not None else shown_at + 1 / info.fps
                if shown is not None:
                    while index < len(times) and times[index] < at - tolerance:
                        yield shown
                        index += 1
                    if index == len(times):
                        return
                shown, shown_at = frame, at
        except av.FFmpegError as error:
            failure = error
    detail = f": {why(failure)}" if failure is not None else ""
    if shown is None:
        raise MediaError(f"no frames could be decoded{detail}")
    last_needed = times[-1]
    if shown_at + 2.0 / info.fps < last_needed:
        raise MediaError(
            f"decoding stopped at {shown_at:.2f} s but frames up to {last_needed:.2f} s are needed "
            f"(the file looks truncated or corrupt{detail})"
        )
    while index < len(times):
        yield shown
        index += 1


def read_rgb_frames(path: Path) -> np.ndarray:
    """Every frame of a clip as RGB uint8, shape (frames, height, width, 3)."""
    try:
        with av.open(str(path)) as container:
            return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    except av.FFmpegError as error:
        raise MediaError(f"{Path(path).name}: cannot be decoded ({why(error)})") from error


def audio_chunks(path: Path, rate: int) -> Iterator[np.ndarray]:
    """The first audio track as (2, n) float32 chunks resampled to `rate` (nothing if there is none)."""
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    yield out.to_ndarray()
            for out in resampler.resample(None):
                yield out.to_ndarray()
    except av.FFmpegError as error:
        raise MediaError(f"{Path(path).name}: audio decoding failed ({why(error)})") from error
