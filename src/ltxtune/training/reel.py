"""MP4 writing for previews, and the preview reel: every preview in one labelled mp4.

`Mp4Writer` writes H.264 (yuv420p, BT.709) video frame by frame with an optional AAC stereo track
fed in chunks; previews (`ltxtune.training.sampling`) and the reel share it, so they are encoded alike.

`make_reel` concatenates previews into one file (fal's `video` output). Every segment is scaled to
fit a common size (aspect kept, black bars), retimed to a common frame rate (the latest frame on
screen at each output time, so a segment keeps its duration), and gets its label burned into a
banner across the top. Audio stays in sync: each segment contributes exactly as many samples as its
frames last, taken from its own track (resampled to the common rate) or silence when it has none.
Frames and audio are streamed segment by segment, so memory does not grow with the reel's length.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

CRF = "18"
PRESET = "medium"
AUDIO_BITRATE = 192_000
AAC_FRAME = 1024


class ReelError(RuntimeError):
    """A preview could not be read or the reel could not be written; the message names the file."""


class Mp4Writer:
    """H.264 video (frames added one at a time) and, if `audio_rate` is set, an AAC stereo track.

    Audio chunks are float arrays of shape (2, n) (or (n,) for mono) in [-1, 1], appended in order; the
    caller keeps them in step with the video (`write_audio` needs no timestamps). Use as a context manager
    or call `close()`; the file is complete only after closing. `threads=1` keeps x264 (nearly) repeatable: with
    its default slice threads the same frames often encoded differently from one call to the next.
    """

    def __init__(
        self, path: Path, width: int, height: int, fps: Fraction | int, *, audio_rate: int | None = None,
        threads: int = 0,
    ):
        if width % 2 or height % 2:
            raise ValueError(f"H.264 yuv420p needs even sides, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height = width, height
        self.fps = Fraction(fps)
        self.frames = 0
        self.audio_samples = 0
        self._container = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
        self._video = self._container.add_stream("libx264", rate=self.fps)
        self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
        self._video.options = {"crf": CRF, "preset": PRESET}
        self._video.codec_context.thread_count = threads  # 0: x264 decides
        codec = self._video.codec_context
        codec.colorspace = codec.color_primaries = codec.color_trc = 1  # BT.709, matching the conversion in add()
        self._time_base = 1 / self.fps
        self._audio = None
        self._resampler = None
        self.audio_rate = audio_rate
        if audio_rate:
            self._audio = self._container.add_stream("aac", rate=audio_rate)
            self._audio.layout = "stereo"
            self._audio.bit_rate = AUDIO_BITRATE
            frame_size = self._audio.codec_context.frame_size or AAC_FRAME
            self._resampler = av.AudioResampler(
                format=self._audio.format.name, layout="stereo", rate=audio_rate, frame_size=frame_size
            )

    def add(self, rgb: np.ndarray) -> None:
        """One RGB uint8 frame of shape (height, width, 3)."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected a uint8 frame of {(self.height, self.width, 3)}, got {rgb.dtype} {rgb.shape}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709")
        frame.pts = self.frames
        frame.time_base = self._time_base
        self._container.mux(self._video.encode(frame))
        self.frames += 1

    def write_audio(self, samples: np.ndarray) -> None:
        """Append audio at `audio_rate`: shape (2, n), (1, n) or (n,), float in [-1, 1]."""
        if self._audio is None:
            raise ValueError("this writer has no audio track")
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
        frame.sample_rate = self.audio_rate
        frame.pts = self.audio_samples
        frame.time_base = Fraction(1, self.audio_rate)
        for chunk in self._resampler.resample(frame):
            self._container.mux(self._audio.encode(chunk))
        self.audio_samples += samples.shape[1]

    def close(self) -> None:
        if self._container is None:
            return
        try:
            self._container.mux(self._video.encode())
            if self._audio is not None:
                for chunk in self._resampler.resample(None):
                    self._container.mux(self._audio.encode(chunk))
                self._container.mux(self._audio.encode())
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_mp4(
    path: Path, frames: np.ndarray, fps: int | Fraction, *, audio: np.ndarray | None = None, audio_rate: int | None = None
) -> Path:
    """Frames (F, H, W, 3) uint8 and optional audio (2, n) at `audio_rate` as one mp4, written atomically
    (single-threaded x264: a preview is short, and the same render gives the same file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    _, height, width, _ = frames.shape
    try:
        rate = audio_rate if audio is not None else None
        with Mp4Writer(tmp, width, height, fps, audio_rate=rate, threads=1) as writer:
            for rgb in frames:
                writer.add(rgb)
            if audio is not None:
                writer.write_audio(audio)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def preview_label(step: int, index: int, prompt: str, *, words: int = 8) -> str:
    """The reel label of one preview: `step 500 · prompt 1: the first words of the prompt…` (index is 0-based)."""
    parts = prompt.split()
    text = " ".join(parts[:words]) + ("…" if len(parts) > words else "")
    return f"step {step} · prompt {index + 1}: {text}"


@dataclass(frozen=True)
class _Source:
    path: Path
    width: int
    height: int
    fps: Fraction
    audio_rate: int  # 0: no audio track


def _probe(path: Path) -> _Source:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ReelError(f"{path.name}: has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate or rate <= 0:
                raise ReelError(f"{path.name}: has no frame rate")
            audio = container.streams.audio[0].codec_context.sample_rate if container.streams.audio else 0
            width, height = stream.codec_context.width, stream.codec_context.height
    except av.FFmpegError as error:
        raise ReelError(f"{path.name}: cannot be read ({error})") from error
    return _Source(path=path, width=width, height=height, fps=Fraction(rate).limit_denominator(1001), audio_rate=audio)


def _even(value: int) -> int:
    return value + value % 2


def _font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    size = max(8, round(height / 22))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _banner(label: str, width: int, height: int) -> tuple[int, np.ndarray]:
    """(banner height, text coverage 0..1 of shape (banner height, width)) for `label`."""
    font = _font(height)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    if not isinstance(font, ImageFont.FreeTypeFont):
        label = label.encode("latin-1", "replace").decode("latin-1").replace("?", "-")
    pad = max(2, round(height / 80))
    text = _fit_text(probe, label, font, width - 2 * pad)
    left, top, right, bottom = probe.textbbox((0, 0), "Ag" + text, font=font)
    banner_h = min(height, bottom - min(top, 0) + 2 * pad)
    mask = Image.new("L", (width, banner_h), 0)
    ImageDraw.Draw(mask).text((pad, pad - min(top, 0)), text, fill=255, font=font)
    return banner_h, np.asarray(mask, dtype=np.float32)[..., None] / 255.0


def _label(rgb: np.ndarray, banner_h: int, coverage: np.ndarray) -> np.ndarray:
    """Darken the top `banner_h` rows and draw the text in white over them."""
    out = rgb.copy()
    region = out[:banner_h].astype(np.float32) * 0.3
    out[:banner_h] = np.clip(region * (1 - coverage) + 255.0 * coverage + 0.5, 0, 255).astype(np.uint8)
    return out


def _fit(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    image = ImageOps.pad(Image.fromarray(rgb), (width, height), method=Image.Resampling.LANCZOS, color=(0, 0, 0))
    return np.asarray(image)


def _retimed_frames(source: _Source, fps: Fraction) -> Iterator[np.ndarray]:
    """The segment's frames at `fps`: output frame j shows the source frame on screen at j / fps.

    Source frame i covers [i / source_fps, (i + 1) / source_fps), so the segment keeps its duration.
    """
    emitted = 0
    try:
        with av.open(str(source.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                end = Fraction(index + 1) / source.fps
                rgb = None
                while Fraction(emitted) / fps < end:
                    if rgb is None:
                        rgb = frame.to_ndarray(format="rgb24")
                    yield rgb
                    emitted += 1
    except av.FFmpegError as error:
        raise ReelError(f"{source.path.name}: decoding failed ({error})") from error


def _audio_chunks(source: _Source, rate: int) -> Iterator[np.ndarray]:
    """The segment's audio as (2, n) float32 chunks at `rate` (nothing if it has no track)."""
    if not source.audio_rate:
        return
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
    try:
        with av.open(str(source.path)) as container:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    yield out.to_ndarray()
            for out in resampler.resample(None):
                yield out.to_ndarray()
    except av.FFmpegError as error:
        raise ReelError(f"{source.path.name}: audio decoding failed ({error})") from error


def make_reel(entries: Sequence[tuple[str, Path]], dest: Path) -> Path:
    """Concatenate `(label, mp4)` entries into one labelled mp4 at `dest` (written atomically); returns `dest`.

    Common size: the largest width and height among the entries (rounded up to even); common frame rate:
    the highest; audio: a stereo track at the highest sample rate present if any entry has audio.
    """
    if not entries:
        raise ValueError("make_reel needs at least one preview")
    sources = [_probe(Path(path)) for _, path in entries]
    width = _even(max(s.width for s in sources))
    height = _even(max(s.height for s in sources))
    fps = max(s.fps for s in sources)
    audio_rate = max(s.audio_rate for s in sources) or None
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp.mp4")
    try:
        with Mp4Writer(tmp, width, height, fps, audio_rate=audio_rate) as writer:
            for (label, _), source in zip(entries, sources):
                banner_h, coverage = _banner(label, width, height)
                for rgb in _retimed_frames(source, fps):
                    writer.add(_label(_fit(rgb, width, height), banner_h, coverage))
                if audio_rate:
                    _write_segment_audio(writer, source, fps, audio_rate)
        os.replace(tmp, dest)
    except av.FFmpegError as error:
        raise ReelError(f"{dest.name}: encoding failed ({error})") from error
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _write_segment_audio(writer: Mp4Writer, source: _Source, fps: Fraction, rate: int) -> None:
    """Bring the audio track up to the end of the video written so far: the segment's audio, trimmed or
    padded with silence (cumulative rounding, so there is no drift over many segments)."""
    target = round(Fraction(writer.frames) / fps * rate)
    for chunk in _audio_chunks(source, rate):
        room = target - writer.audio_samples
        if room <= 0:
            break
        writer.write_audio(chunk[:, :room])
    missing = target - writer.audio_samples
    if missing > 0:
        writer.write_audio(np.zeros((2, missing), dtype=np.float32))
