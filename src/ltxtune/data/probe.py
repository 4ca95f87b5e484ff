"""Probing for dataset preparation: `ltxtune.media.probe`, with its failures as `ProbeError`."""

from __future__ import annotations

from pathlib import Path

from ltxtune.media import probe as _media
from ltxtune.media.errors import MediaError, why
from ltxtune.media.probe import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, MediaInfo, open_image, video_stream

__all__ = [
    "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "MediaInfo", "ProbeError", "open_image", "probe_media", "probe_video",
    "video_stream", "why",
]


class ProbeError(Exception):
    """The file cannot be used; the message is the reason shown to the user."""


def probe_media(path: Path) -> MediaInfo:
    try:
        return _media.probe_media(path)
    except MediaError as error:
        raise ProbeError(str(error)) from error


def probe_video(path: Path) -> MediaInfo:
    try:
        return _media.probe_video(path)
    except MediaError as error:
        raise ProbeError(str(error)) from error
