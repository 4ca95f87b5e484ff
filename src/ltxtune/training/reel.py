"""Preview files and the preview reel: every preview in one labelled mp4 (fal's `video` output).

`write_preview` streams a rendered preview's frames to two encoders at once: the preview mp4 and
its reel segment (the same frames with the label burned into a banner across the top, kept in
`.reel/` next to the preview). `make_reel` then joins the segments by remuxing (no decoding or
re-encoding of video) and lays the previews' audio under them, each segment contributing exactly as
many samples as its frames last (resampled to the common rate, or silence when it has none).

An entry without a matching segment (another size or frame rate, a changed label, a file that is
not a preview) gets one made from its file: scaled to fit the common size (aspect kept, black
bars), retimed to the common frame rate (the frame on screen at each output time, by timestamp,
so a segment keeps its duration), labelled and encoded; those are removed after joining.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from ltxtune.media.concat import Segment, concat_segments
from ltxtune.media.decode import frames_at_times
from ltxtune.media.encode import PREVIEW, H264Writer
from ltxtune.media.errors import MediaError, why
from ltxtune.media.geometry import with_top_rows, yuv_from_rgb
from ltxtune.media.probe import MediaInfo, probe_video

SEGMENTS_DIR = ".reel"
LABEL_KEY = "title"  # container metadata holding a segment's label


class ReelError(RuntimeError):
    """A preview could not be read or the reel could not be written; the message names the file."""


def preview_label(step: int, index: int, prompt: str, *, words: int = 8) -> str:
    """The reel label of one preview: `step 500 · prompt 1: the first words of the prompt…` (index is 0-based)."""
    parts = prompt.split()
    text = " ".join(parts[:words]) + ("…" if len(parts) > words else "")
    return f"step {step} · prompt {index + 1}: {text}"


def segment_path(preview: Path) -> Path:
    return Path(preview).parent / SEGMENTS_DIR / Path(preview).name


def write_preview(
    path: Path, frames: Iterable[np.ndarray], fps: int | Fraction, *, label: str | None = None,
    audio: np.ndarray | None = None, audio_rate: int | None = None,
) -> Path:
    """Write RGB uint8 frames (streamed) and optional (2, n) audio as the preview mp4 `path` and, with a
    `label`, its labelled reel segment; both written atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    segment = segment_path(path)
    segment_tmp = segment.with_name(f".{segment.name}.tmp.mp4")
    rate = audio_rate if audio is not None else None
    writer = labelled = None
    banner = None
    try:
        for rgb in frames:
            if writer is None:
                height, width = rgb.shape[:2]
                writer = H264Writer(tmp, width, height, fps, settings=PREVIEW, audio_rate=rate, faststart=True)
                if label is not None:
                    segment.parent.mkdir(parents=True, exist_ok=True)
                    labelled = H264Writer(segment_tmp, width, height, fps, settings=PREVIEW, metadata={LABEL_KEY: label})
                    banner = _banner(label, width, height)
            if rgb.shape != (writer.height, writer.width, 3) or rgb.dtype != np.uint8:
                raise ValueError(f"expected uint8 frames of {(writer.height, writer.width, 3)}, got {rgb.dtype} {rgb.shape}")
            picture = yuv_from_rgb(rgb)  # converted once: the labelled copy differs only in the banner rows
            writer.add_frame(picture)
            if labelled is not None:
                rows = min(height, banner[0] + banner[0] % 2)  # type: ignore[index]
                strip = yuv_from_rgb(_label(rgb[:rows], *banner))  # type: ignore[misc]
                labelled.add_frame(with_top_rows(picture, strip))
        if writer is None:
            raise ValueError("a preview needs at least one frame")
        if audio is not None:
            writer.write_audio(audio)
        for each, done, final in ((writer, tmp, path), (labelled, segment_tmp, segment)):
            if each is not None:
                each.close()
                done.replace(final)
    except av.FFmpegError as error:
        raise ReelError(f"{path.name}: encoding failed ({why(error)})") from error
    finally:
        for each in (writer, labelled):
            if each is not None:
                each.close()
        tmp.unlink(missing_ok=True)
        segment_tmp.unlink(missing_ok=True)
    return path


def _probe(path: Path) -> MediaInfo:
    try:
        return probe_video(path)
    except MediaError as error:
        raise ReelError(f"{path.name}: {error}") from error


def _rate(info: MediaInfo) -> Fraction:
    return Fraction(info.fps).limit_denominator(1001)


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


def _segment_matches(segment: Path, label: str, width: int, height: int, fps: Fraction) -> bool:
    if not segment.exists():
        return False
    try:
        with av.open(str(segment)) as container:
            stream = container.streams.video[0]
            return (
                container.metadata.get(LABEL_KEY) == label
                and (stream.codec_context.width, stream.codec_context.height) == (width, height)
                and Fraction(stream.average_rate) == fps
            )
    except (av.FFmpegError, IndexError):
        return False


def _render_segment(path: Path, info: MediaInfo, label: str, dest: Path, width: int, height: int, fps: Fraction) -> None:
    """Decode `path`, retime it to `fps`, fit it to width x height and label it, as a segment at `dest`."""
    count = info.frames_at(float(fps))
    times = [j / fps for j in range(count)]
    banner = _banner(label, width, height)
    with H264Writer(dest, width, height, fps, settings=PREVIEW, metadata={LABEL_KEY: label}) as writer:
        last, labelled = None, None
        for frame in frames_at_times(path, info, [float(t) for t in times]):
            if frame is not last:
                last, labelled = frame, _label(_fit(frame.to_ndarray(format="rgb24"), width, height), *banner)
            writer.add(labelled)  # type: ignore[arg-type]


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
    fps = max(_rate(s) for s in sources)
    audio_rate = max(s.audio_rate for s in sources) or None
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    made = dest.with_name(f".{dest.name}.segments")
    segments = []
    try:
        for index, ((label, path), source) in enumerate(zip(entries, sources)):
            path = Path(path)
            segment = segment_path(path)
            if not _segment_matches(segment, label, width, height, fps):
                made.mkdir(exist_ok=True)
                segment = made / f"{index:04d}.mp4"
                try:
                    _render_segment(path, source, label, segment, width, height, fps)
                except MediaError as error:
                    raise ReelError(f"{path.name}: {error}") from error
                except av.FFmpegError as error:
                    raise ReelError(f"{path.name}: decoding failed ({why(error)})") from error
            segments.append(Segment(segment, path if source.has_audio else None))
        concat_segments(segments, dest, audio_rate=audio_rate)
    except MediaError as error:
        raise ReelError(str(error)) from error
    finally:
        shutil.rmtree(made, ignore_errors=True)
    return dest
