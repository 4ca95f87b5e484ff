"""Media made at test time with PyAV and Pillow, for any test that needs a tiny dataset.

    make_video(tmp / "clip.mp4", 128, 72, frames=17, fps=24)          # moving shapes + 440 Hz tone
    make_video(tmp / "cut.mkv", frames=60, cut_at=30)                   # hard cut: new colours, 880 Hz
    make_video(tmp / "phone.mp4", 128, 72, rotation=-90)                # displays as 72x128 portrait
    make_image(tmp / "a.png", 96, 64)
    make_zip(tmp / "data.zip", {"clips/a.mp4": path, "clips/a.txt": b"a caption"})

Every frame carries its index in two flat grey patches side by side in the centre (its two
base-8 digits, `index_levels(i)`); `frame_indices` reads them back after fitting, so a test can
check which source frames were kept (the patches scale with the frame, so read them from a
fitted clip whose bucket keeps the source's scale within about 2x). Before `cut_at` the background is blue and the tone is
`tone_hz`; from `cut_at` on the background is orange and the tone is `cut_tone_hz` (a hard cut
for scene detection, and an audio event to check sync). A red block marks the coded frame's
top-left corner, so rotation can be checked.
"""

from __future__ import annotations

import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

VIDEO_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".avi": "mpeg4"}
AUDIO_CODECS = {".mp4": "aac", ".mov": "aac", ".mkv": "libopus", ".avi": "pcm_s16le"}
BLUE = (40, 90, 170)
ORANGE = (220, 120, 30)
RED = (230, 20, 20)


def index_levels(index: int) -> tuple[int, int]:
    """The grey levels of the two centre patches of frame `index` (its two base-8 digits; up to 63)."""
    return 24 + 28 * ((index // 8) % 8), 24 + 28 * (index % 8)


def levels_index(high: float, low: float) -> int:
    return int(round((high - 24) / 28)) * 8 + int(round((low - 24) / 28))


def _patches(width: int, height: int) -> tuple[int, int, int, int]:
    """(top, left, side) of the left patch; the right patch starts at left + side."""
    side = max(4, min(width, height) // 5)
    return (height - side) // 2, width // 2 - side, side, width // 2


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A camera-like background (soft blobs and fine grain), int16 offsets around 0, twice as wide."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 40, (max(2, height // 16), max(2, width // 8), 1)).astype(np.float32)
    import cv2

    soft = cv2.resize(coarse, (2 * width, height), interpolation=cv2.INTER_CUBIC)[:, :, None]
    grain = rng.normal(0, 6, (height, 2 * width, 1))
    return np.clip(soft + grain, -90, 90).astype(np.int16)


def frame_rgb(
    index: int, width: int, height: int, *, frames: int, cut_at: int | None = None, background: np.ndarray | None = None
) -> np.ndarray:
    after_cut = cut_at is not None and index >= cut_at
    img = np.empty((height, width, 3), np.uint8)
    img[:] = ORANGE if after_cut else BLUE
    if background is not None:  # panned 4 px per frame
        shift = (4 * index) % width
        img[:] = np.clip(img.astype(np.int16) + background[:, shift : shift + width], 0, 255).astype(np.uint8)
    # a white square moving left to right along the bottom
    side = max(4, min(width, height) // 6)
    x = int((width - side) * index / max(1, frames - 1))
    img[height - side - 2 : height - 2, x : x + side] = 255
    # the red corner marker
    marker = max(4, min(width, height) // 5)
    img[:marker, :marker] = RED
    # the index patches in the centre
    top, left, patch, right = _patches(width, height)
    high, low = index_levels(index)
    img[top : top + patch, left : left + patch] = high
    img[top : top + patch, right : right + patch] = low
    return img


def tone(
    start: int, count: int, rate: int, *, hz: float, cut_s: float | None, cut_hz: float, channels: int
) -> np.ndarray:
    """`count` samples from sample `start` of the test tone, shape (channels, count), float32."""
    t = (start + np.arange(count)) / rate
    freq = np.full(count, hz) if cut_s is None else np.where(t >= cut_s, cut_hz, hz)
    wave = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.repeat(wave[None, :].astype(np.float32), channels, axis=0)


def make_video(
    path: Path,
    width: int = 128,
    height: int = 72,
    frames: int = 17,
    fps: float = 24,
    *,
    audio: bool = True,
    audio_rate: int = 48000,
    audio_channels: int = 2,
    audio_seconds: float | None = None,
    tone_hz: float = 440.0,
    cut_at: int | None = None,
    cut_tone_hz: float = 880.0,
    rotation: int | None = None,
    codec: str | None = None,
    audio_codec: str | None = None,
    faststart: bool = False,
    textured: bool = False,
    crf: int = 4,
) -> Path:
    """A clip of `frames` frames at `fps` (container by extension: .mp4 .mov .mkv .avi).

    `rotation` stores a display matrix (counter-clockwise degrees, as PyAV's
    `VideoFrame.rotation` reads it back; a phone held upright records -90). `audio_seconds`
    makes the audio track shorter or longer than the video. `faststart` puts an mp4's index first
    (so a truncated copy still opens). `textured` pans a camera-like texture behind the shapes
    (realistic bitrates, for benchmarks); `crf` sets the x264 quality (4: near-lossless).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    rate = Fraction(fps).limit_denominator(1001)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        video = container.add_stream(codec or VIDEO_CODECS[suffix], rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        # near-lossless, so the centre patch keeps its level through the codec
        video.options = (
            {"crf": str(crf), "preset": "veryfast"} if video.codec_context.name == "libx264" else {"qscale": "1"}
        )
        if video.codec_context.name == "mpeg4":
            video.codec_context.qmin, video.codec_context.qmax = 1, 2
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            acodec = audio_codec or AUDIO_CODECS[suffix]
            arate = 48000 if acodec == "libopus" else audio_rate
            sound = container.add_stream(acodec, rate=arate)
            sound.layout = "stereo" if audio_channels == 2 else "mono"
        background = texture(width, height) if textured else None
        for index in range(frames):
            image = frame_rgb(index, width, height, frames=frames, cut_at=cut_at, background=background)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            frame.time_base = 1 / rate
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is not None:
            seconds = frames / float(rate) if audio_seconds is None else audio_seconds
            cut_s = None if cut_at is None else cut_at / float(rate)
            _write_tone(container, sound, seconds, hz=tone_hz, cut_s=cut_s, cut_hz=cut_tone_hz, channels=audio_channels)
    return path


def _write_tone(
    container, stream, seconds: float, *, hz: float, cut_s: float | None, cut_hz: float, channels: int
) -> None:
    rate = stream.rate
    layout = "stereo" if channels == 2 else "mono"
    resampler = av.AudioResampler(
        format=stream.format.name, layout=layout, rate=rate, frame_size=stream.codec_context.frame_size or None
    )
    total = int(round(seconds * rate))
    chunk = 1024
    for start in range(0, total, chunk):
        count = min(chunk, total - start)
        samples = tone(start, count, rate, hz=hz, cut_s=cut_s, cut_hz=cut_hz, channels=channels)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        for out in resampler.resample(frame):
            container.mux(stream.encode(out))
    for out in resampler.resample(None):
        container.mux(stream.encode(out))
    container.mux(stream.encode())


def make_image(path: Path, width: int = 96, height: int = 64, *, index: int = 0, mode: str = "RGB") -> Path:
    """A still (by extension: .png .jpg .jpeg), drawn like frame `index` of a clip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(frame_rgb(index, width, height, frames=1))
    image.convert(mode).save(path)
    return path


def make_zip(dest: Path, files: dict[str, Path | bytes | str]) -> Path:
    """A zip whose entries are `name -> file path, bytes or text` (names used verbatim)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            if isinstance(content, Path):
                archive.write(content, name)
            else:
                archive.writestr(name, content.encode() if isinstance(content, str) else content)
    return dest


def read_frames(path: Path) -> np.ndarray:
    """Every frame of a fitted clip as RGB, shape (frames, height, width, 3)."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def read_index(frame: np.ndarray) -> int:
    """Which source frame a fitted frame shows (read from its centre patches)."""
    height, width = frame.shape[:2]
    top, left, side, right = _patches(width, height)
    # the patches are scaled with the frame; read the middle of where they are expected
    quarter = max(1, side // 4)
    cy = height // 2
    high = frame[
        cy - quarter : cy + quarter, width // 2 - side // 2 - quarter : width // 2 - side // 2 + quarter
    ].mean()
    low = frame[cy - quarter : cy + quarter, width // 2 + side // 2 - quarter : width // 2 + side // 2 + quarter].mean()
    return levels_index(float(high), float(low))


def frame_indices(path: Path) -> list[int]:
    """Which source frame each frame of a fitted clip shows."""
    return [read_index(frame) for frame in read_frames(path)]


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency of a mono signal."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])
