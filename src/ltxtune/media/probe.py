"""What a media file is: size as displayed (after rotation), frame rate, frame count, duration,
audio presence. Probing opens the container and decodes the first frame (which proves the file
is decodable and carries the rotation), and demuxes without decoding only when the container
does not state its frame count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image, ImageOps

from ltxtune.media.errors import MediaError, why

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class MediaInfo:
    kind: str  # "video" | "image"
    width: int  # as displayed: after rotation / EXIF orientation
    height: int
    rotation: int = 0  # counter-clockwise degrees to display the coded frame (0, 90, 180, 270)
    fps: float = 0.0  # native frame rate (videos)
    frames: int = 1  # native frame count
    duration: float = 0.0  # seconds, first frame to end of last frame
    start: float = 0.0  # presentation time of the first frame, seconds
    has_audio: bool = False
    audio_rate: int = 0
    audio_channels: int = 0

    def frames_at(self, fps: float, start: float = 0.0, end: float | None = None) -> int:
        """How many frames at `fps` the span [start, end) holds: sample times start + i/fps < end."""
        end = self.duration if end is None else end
        return max(0, math.ceil((end - start) * fps - 1e-3))


def probe_media(path: Path) -> MediaInfo:
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise MediaError("the file is empty")
    if suffix in IMAGE_EXTENSIONS:
        return probe_image(path)
    return probe_video(path)


def probe_image(path: Path) -> MediaInfo:
    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            image.load()
            width, height = image.size
    except Image.DecompressionBombError as error:
        raise MediaError(f"the image is too large ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise MediaError(f"cannot be read as an image ({error})") from error
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return MediaInfo(kind="image", width=width, height=height)


def open_image(path: Path, at_least: int | None = None) -> Image.Image:
    """The image upright (EXIF orientation applied), RGB; transparency is composited on white.
    `at_least` lets a JPEG decode at a reduced scale whose sides stay at or above it."""
    with Image.open(path) as image:
        if at_least:
            image.draft("RGB", (at_least, at_least))
        upright = ImageOps.exif_transpose(image)
        if upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info):
            rgba = upright.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return upright.convert("RGB")


def video_stream(container):
    """The clip's video stream: the first one that is not cover art or a thumbnail."""
    still = av.stream.Disposition.attached_pic | av.stream.Disposition.timed_thumbnails
    for stream in container.streams.video:
        if not (stream.disposition & still):
            return stream
    return None


def probe_video(path: Path) -> MediaInfo:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise MediaError(f"cannot be opened as a video ({why(error)})") from error
    with container:
        stream = video_stream(container)
        if stream is None:
            raise MediaError("has no video stream")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or float(rate) <= 0:
            raise MediaError("has no frame rate")
        fps = float(rate)
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as error:
            raise MediaError(f"cannot be decoded ({why(error)})") from error
        if first is None:
            raise MediaError("has no decodable frames")
        rotation = int(round((first.rotation or 0) / 90.0)) * 90 % 360
        start = float(first.time) if first.time is not None else 0.0
        frames, duration = _count(container, stream, fps, start)
        if frames <= 0 or duration <= 0:
            raise MediaError("has no frames")
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        audio = _audio_stream(container)
        return MediaInfo(
            kind="video",
            width=width,
            height=height,
            rotation=rotation,
            fps=fps,
            frames=frames,
            duration=duration,
            start=start,
            has_audio=audio is not None,
            audio_rate=audio.codec_context.sample_rate if audio is not None else 0,
            audio_channels=audio.codec_context.channels if audio is not None else 0,
        )


def _count(container, stream, fps: float, start: float) -> tuple[int, float]:
    """Frame count and duration: from the header when it states both, else by demuxing packets."""
    if stream.frames and stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
        if stream.start_time is not None:
            duration -= max(0.0, start - float(stream.start_time * stream.time_base))
        return stream.frames, duration
    container.seek(0)
    count = 0
    end = start
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        count += 1
        if packet.pts is not None and packet.time_base:
            packet_end = float(packet.pts * packet.time_base) + float((packet.duration or 0) * packet.time_base)
            end = max(end, packet_end if packet.duration else float(packet.pts * packet.time_base) + 1 / fps)
    duration = end - start if end > start else count / fps
    if abs(duration - count / fps) < 0.5 / fps:
        duration = count / fps  # constant frame rate: undo millisecond rounding (Matroska)
    return count, duration


def _audio_stream(container):
    for audio in container.streams.audio:
        if audio.codec_context is not None and audio.codec_context.sample_rate:
            return audio
    return None
