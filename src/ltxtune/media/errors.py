"""The one error media I/O raises, and FFmpeg errors in a few words."""

from __future__ import annotations


class MediaError(Exception):
    """A file cannot be read or written; the message is the reason shown to the user."""


def why(error: Exception) -> str:
    """An FFmpeg or OS error in a few words (\"Invalid data found when processing input\")."""
    text = getattr(error, "strerror", None) or str(error)
    return text.strip() or type(error).__name__
