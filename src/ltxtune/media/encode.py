"""The one H.264 writer: yuv420p, BT.709, optional AAC stereo; frames streamed in one at a time.

Settings are named for what they write:
- `FITTED`: a prepared training clip (visually lossless CRF 10; `veryfast` gives the same quality
  as slower presets at this CRF, 2-3x faster, files ~30% larger).
- `PREVIEW`: previews and the reel (CRF 18; `superfast` costs a small fraction of rendering; at
  CRF 18 its files are larger than `medium`'s, not worse to look at).
x264 is deterministic for a given thread count (checked: the same frames give the same bytes run
after run), so writers use several threads and a re-render on the same machine gives the same file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ltxtune.media.errors import MediaError, why
from ltxtune.media.geometry import yuv_from_rgb

AUDIO_BITRATE = 192_000
AAC_FRAME = 1024


@dataclass(frozen=True)
class EncodeSettings:
    crf: str
    preset: str
    threads: int | None = None  # None: the cores this process may use (at most 8); 0: x264 decides


FITTED = EncodeSettings(crf="10", preset="veryfast", threads=0)
PREVIEW = EncodeSettings(crf="18", preset="superfast")


def encoder_threads() -> int:
    """x264 threads for this process: the cores it may run on, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


class AacTrack:
    """An AAC stereo track of an output container, fed float chunks in order (no timestamps needed)."""

    def __init__(self, container, rate: int):
        self.container = container
        self.rate = rate
        self.samples = 0
        self.stream = container.add_stream("aac", rate=rate)
        self.stream.layout = "stereo"
        self.stream.bit_rate = AUDIO_BITRATE
        frame_size = self.stream.codec_context.frame_size or AAC_FRAME
        self._resampler = av.AudioResampler(format=self.stream.format.name, layout="stereo", rate=rate, frame_size=frame_size)

    def write(self, samples: np.ndarray) -> None:
        """Shape (2, n), (1, n) or (n,), float in [-1, 1]."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 1:
            samples = samples[None]
        if samples.shape[0] == 1:
            samples = np.repeat(samples, 2, axis=0)
        if samples.ndim != 2 or samples.shape[0] != 2:
            raise ValueError(f"expected (2, n) audio, got shape {samples.shape}")
        if samples.shape[1] == 0:
            return
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(np.clip(samples, -1.0, 1.0)), format="fltp", layout="stereo")
        frame.sample_rate = self.rate
        frame.pts = self.samples
        frame.time_base = Fraction(1, self.rate)
        for chunk in self._resampler.resample(frame):
            self.container.mux(self.stream.encode(chunk))
        self.samples += samples.shape[1]

    def flush(self) -> None:
        for chunk in self._resampler.resample(None):
            self.container.mux(self.stream.encode(chunk))
        self.container.mux(self.stream.encode())


class H264Writer:
    """H.264 video (frames added one at a time) and, if `audio_rate` is set, an AAC stereo track.

    `add(rgb)` takes RGB uint8 (height, width, 3); `add_frame(frame)` a yuv420p BT.709 VideoFrame
    of the writer's size (no conversion). Audio chunks are float arrays of shape (2, n) (or (n,)
    for mono) in [-1, 1], appended in order; the caller keeps them in step with the video. Use as a
    context manager or call `close()`; the file is complete only after closing.
    """

    def __init__(
        self, path: Path, width: int, height: int, fps: Fraction | int, *, settings: EncodeSettings = PREVIEW,
        audio_rate: int | None = None, faststart: bool = False, metadata: dict[str, str] | None = None,
    ):
        if width % 2 or height % 2:
            raise ValueError(f"H.264 yuv420p needs even sides, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height = width, height
        self.fps = Fraction(fps)
        self.frames = 0
        self.audio_rate = audio_rate
        options = {"movflags": "+faststart"} if faststart else {}
        self._container = av.open(str(self.path), "w", format="mp4", options=options)
        self._video = self._container.add_stream("libx264", rate=self.fps)
        self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
        self._video.options = {"crf": settings.crf, "preset": settings.preset}
        codec = self._video.codec_context
        codec.thread_count = encoder_threads() if settings.threads is None else settings.threads
        codec.colorspace = codec.color_primaries = codec.color_trc = 1  # BT.709, matching the conversion in add()
        self._time_base = 1 / self.fps
        self._audio = AacTrack(self._container, audio_rate) if audio_rate else None
        self._container.metadata.update(metadata or {})

    def add(self, rgb: np.ndarray) -> None:
        """One RGB uint8 frame of shape (height, width, 3)."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected a uint8 frame of {(self.height, self.width, 3)}, got {rgb.dtype} {rgb.shape}")
        self.add_frame(yuv_from_rgb(rgb))

    def add_frame(self, frame: av.VideoFrame) -> None:
        """One yuv420p frame of the writer's size, BT.709 (as `ltxtune.media.geometry.fit_yuv` gives)."""
        if (frame.width, frame.height) != (self.width, self.height) or frame.format.name != "yuv420p":
            raise ValueError(
                f"expected a yuv420p frame of {self.width}x{self.height}, got {frame.format.name} {frame.width}x{frame.height}"
            )
        frame.pts = self.frames
        frame.time_base = self._time_base
        self._container.mux(self._video.encode(frame))
        self.frames += 1

    def write_audio(self, samples: np.ndarray) -> None:
        """Append audio at `audio_rate`: shape (2, n), (1, n) or (n,), float in [-1, 1]."""
        if self._audio is None:
            raise ValueError("this writer has no audio track")
        self._audio.write(samples)

    @property
    def audio_samples(self) -> int:
        return self._audio.samples if self._audio is not None else 0

    def close(self) -> None:
        if self._container is None:
            return
        try:
            self._container.mux(self._video.encode())
            if self._audio is not None:
                self._audio.flush()
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_clip(
    path: Path, frames, fps: int | Fraction, *, audio: np.ndarray | None = None, audio_rate: int | None = None,
    settings: EncodeSettings = PREVIEW,
) -> Path:
    """Frames (an iterable of (H, W, 3) uint8, streamed) and optional audio (2, n) at `audio_rate` as one
    mp4, written atomically (a temporary file renamed into place); MediaError if encoding fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    writer: H264Writer | None = None
    try:
        for rgb in frames:
            if writer is None:
                height, width = rgb.shape[:2]
                writer = H264Writer(tmp, width, height, fps, settings=settings, faststart=True,
                                    audio_rate=audio_rate if audio is not None else None)
            writer.add(rgb)
        if writer is None:
            raise ValueError("no frames to write")
        if audio is not None:
            writer.write_audio(audio)
        writer.close()
        os.replace(tmp, path)
    except av.FFmpegError as error:
        raise MediaError(f"{path.name}: encoding failed ({why(error)})") from error
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return path
