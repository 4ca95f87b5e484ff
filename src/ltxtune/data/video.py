"""Frames: sampled at the target frame rate, resized to fill the bucket, centre-cropped, written.

Timing rule. A sample covers a window of the source, `start` seconds after the clip's first
frame, `span` seconds long, and has `frames` output frames at the target `fps`. Output frame i
shows the source frame on screen at `start + i * span / frames` (the latest frame whose
timestamp is not after that time). A clip with enough frames uses `span = frames / fps`: the
first `frames` frames at the target rate from the start of the clip or scene (a 60 fps source
drops frames, a 15 fps source repeats them). With `auto_scale_input`, a shorter clip or scene
uses its whole length as `span`, so it is slowed down to fill the frame count.

Decoding streams: only the frame on screen and the current output frame are held, so memory is
bounded whatever the source's resolution or length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation

from ltxtune.data.probe import MediaInfo, video_stream, why

CRF = "10"  # visually lossless H.264
PRESET = "veryfast"  # same quality as slower presets at this CRF, 2-3x faster; files ~30% larger
AUDIO_BITRATE = 192_000
# Area averaging to shrink, bicubic to enlarge; accurate rounding and full chroma keep flat
# colours exact (plain swscale darkens by about one level when it scales).
_PRECISE = Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
SHRINK = Interpolation.AREA | _PRECISE
ENLARGE = Interpolation.BICUBIC | _PRECISE


class FitError(Exception):
    """A clip failed while decoding or encoding; the message is the reason shown to the user."""


def sample_times(start: float, span: float, frames: int) -> list[float]:
    return [start + i * span / frames for i in range(frames)]


def fill_size(width: int, height: int, bucket_w: int, bucket_h: int) -> tuple[int, int]:
    """The smallest size keeping width:height that covers the bucket."""
    scale = max(bucket_w / width, bucket_h / height)
    return max(bucket_w, round(width * scale)), max(bucket_h, round(height * scale))


def crop_centre(image: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    y0, x0 = (h - height) // 2, (w - width) // 2
    return image[y0 : y0 + height, x0 : x0 + width]


def fit_frame(frame: av.VideoFrame, rotation: int, width: int, height: int) -> np.ndarray:
    """The frame as displayed (rotation applied), resized to fill width x height and centre-cropped."""
    turns = (rotation // 90) % 4
    display_w, display_h = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
    fill_w, fill_h = fill_size(display_w, display_h, width, height)
    coded_w, coded_h = (fill_h, fill_w) if turns % 2 else (fill_w, fill_h)
    downscale = coded_w * coded_h <= frame.width * frame.height
    rgb = frame.reformat(
        width=coded_w, height=coded_h, format="rgb24", interpolation=SHRINK if downscale else ENLARGE
    ).to_ndarray()
    if turns:
        rgb = np.rot90(rgb, turns)
    return np.ascontiguousarray(crop_centre(rgb, width, height))


def frames_at_times(path: Path, info: MediaInfo, times: Sequence[float]) -> Iterator[av.VideoFrame]:
    """For each time (seconds after the first frame, ascending) the source frame on screen then.

    Consecutive times that fall on the same source frame yield the same object, so callers can
    skip re-converting it. Raises FitError if decoding fails or stops well before the last time.
    """
    if not times:
        return
    tolerance = min(0.001, 0.25 / max(info.fps, 1.0))  # timestamps rounded to ms (mkv)
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise FitError(f"cannot be opened ({why(error)})") from error
    with container:
        stream = video_stream(container)
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
        raise FitError(f"no frames could be decoded{detail}")
    last_needed = times[-1]
    if shown_at + 2.0 / info.fps < last_needed:
        raise FitError(
            f"decoding stopped at {shown_at:.2f} s but frames up to {last_needed:.2f} s are needed "
            f"(the file looks truncated or corrupt{detail})"
        )
    while index < len(times):
        yield shown
        index += 1


def fitted_frames(path: Path, info: MediaInfo, times: Sequence[float], width: int, height: int) -> Iterator[np.ndarray]:
    """RGB frames of the bucket size, one per time; a repeated source frame is converted once."""
    last_source = None
    last_rgb: np.ndarray | None = None
    for frame in frames_at_times(path, info, times):
        if frame is not last_source:
            last_source, last_rgb = frame, fit_frame(frame, info.rotation, width, height)
        yield last_rgb  # type: ignore[misc]


class ClipWriter:
    """Writes an H.264 yuv420p mp4 (BT.709, visually lossless CRF) with optional AAC audio."""

    def __init__(
        self, path: Path, width: int, height: int, fps: int, *, audio: np.ndarray | None = None, audio_rate: int = 0
    ):
        self.path = path
        self.count = 0
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.options = {"crf": CRF, "preset": PRESET}
        self.stream.codec_context.colorspace = 1  # BT.709, matching the conversion below
        self.stream.codec_context.color_primaries = 1
        self.stream.codec_context.color_trc = 1
        self.time_base = Fraction(1, fps)
        if audio is not None:
            self._write_audio(audio, audio_rate)

    def _write_audio(self, samples: np.ndarray, rate: int) -> None:
        stream = self.container.add_stream("aac", rate=rate)
        stream.layout = "stereo"
        stream.bit_rate = AUDIO_BITRATE
        resampler = av.AudioResampler(
            format=stream.format.name, layout="stereo", rate=rate, frame_size=stream.codec_context.frame_size or 1024
        )
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32), format="fltp", layout="stereo"
        )
        frame.sample_rate = rate
        frame.pts = 0
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            self.container.mux(stream.encode(chunk))
        self.container.mux(stream.encode())

    def add(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", dst_colorspace="ITU709")
        frame.pts = self.count
        frame.time_base = self.time_base
        self.container.mux(self.stream.encode(frame))
        self.count += 1

    def close(self) -> None:
        if self.container is not None:
            try:
                self.container.mux(self.stream.encode())
            finally:
                self.container.close()
                self.container = None

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_fitted(
    frames: Iterator[np.ndarray],
    dest: Path,
    fps: int,
    *,
    audio: np.ndarray | None = None,
    audio_rate: int = 0,
    derived: tuple[Path, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> int:
    """Write `frames` to `dest` (and, with `derived`, a second clip of transformed frames)."""
    writer = second = None
    count = 0
    try:
        for rgb in frames:
            if writer is None:
                height, width = rgb.shape[:2]
                writer = ClipWriter(dest, width, height, fps, audio=audio, audio_rate=audio_rate)
                if derived is not None:
                    second = ClipWriter(derived[0], width, height, fps)
            writer.add(rgb)
            if second is not None:
                second.add(derived[1](rgb))  # type: ignore[index]
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
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
