"""Media I/O shared by dataset preparation and the previews: one of each.

- `probe`: what a file is (`probe_media`, `probe_video`, `MediaInfo`), the clip's video stream.
- `decode`: the source frame on screen at given times (`frames_at_times`, by presentation
  timestamps, so variable-frame-rate input is sampled correctly), a clip's audio in chunks.
- `geometry`: a decoded frame filled to a size and centre-cropped without leaving YUV.
- `encode`: `H264Writer` (H.264 yuv420p BT.709 + optional AAC stereo), the presets it is used with.
- `concat`: segments written with the same settings joined by remuxing, without re-encoding.

Everything here raises `MediaError` (the message is the reason shown to the user). This package
imports PyAV, NumPy and Pillow only: no torch, nothing from the job queue, API or command line.
"""

from ltxtune.media.errors import MediaError, why

__all__ = ["MediaError", "why"]
