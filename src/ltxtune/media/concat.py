"""Segments joined into one mp4 by remuxing their H.264 packets: nothing is decoded or re-encoded.

Every segment must come from `H264Writer` with the same size, frame rate and settings (the same
codec parameters); each keyframe-first segment is shifted to start where the previous one ended.
Audio is laid out per segment: exactly as many samples as the segment's frames last, taken from
an audio source (decoded; AAC is cheap) trimmed or padded with silence, so sound stays in sync.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ltxtune.media.decode import audio_chunks
from ltxtune.media.encode import AacTrack
from ltxtune.media.errors import MediaError, why


@dataclass(frozen=True)
class Segment:
    video: Path  # an H.264 mp4 from H264Writer
    audio: Path | None = None  # a file whose first audio track plays over the segment (None: silence)


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise MediaError(f"{path.name}: has no video stream")
    return container.streams.video[0]


def concat_segments(segments: Sequence[Segment], dest: Path, *, audio_rate: int | None = None) -> Path:
    """Join `segments` into `dest` (written atomically), with a stereo AAC track at `audio_rate` if set."""
    if not segments:
        raise ValueError("concat_segments needs at least one segment")
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp.mp4")
    try:
        with av.open(str(segments[0].video)) as first:
            template = _video_stream(first, segments[0].video)
            fps = Fraction(template.average_rate)
            params = (template.codec_context.width, template.codec_context.height, bytes(template.codec_context.extradata or b""))
            with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
                video = out.add_stream_from_template(template)
                audio = AacTrack(out, audio_rate) if audio_rate else None
                frames = 0
                for segment in segments:
                    frames += _copy_video(segment.video, out, video, params, fps, frames)
                    if audio is not None:
                        _lay_audio(audio, segment.audio, round(Fraction(frames) / fps * audio_rate))
                if audio is not None:
                    audio.flush()
        os.replace(tmp, dest)
    except av.FFmpegError as error:
        raise MediaError(f"{dest.name}: joining segments failed ({why(error)})") from error
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _copy_video(path: Path, out, video, params: tuple, fps: Fraction, start_frame: int) -> int:
    """Mux `path`'s video packets into `video`, shifted to start at frame `start_frame`; returns its frame count."""
    with av.open(str(path)) as container:
        stream = _video_stream(container, path)
        own = (stream.codec_context.width, stream.codec_context.height, bytes(stream.codec_context.extradata or b""))
        if own != params or Fraction(stream.average_rate) != fps:
            raise MediaError(f"{path.name}: was encoded with other settings than the first segment; cannot be joined")
        offset = round(Fraction(start_frame) / fps / stream.time_base)
        count = 0
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            packet.pts += offset
            packet.dts += offset
            packet.stream = video
            out.mux(packet)
            count += 1
    return count


def _lay_audio(track: AacTrack, source: Path | None, target: int) -> None:
    """Bring `track` up to `target` samples: `source`'s audio, trimmed or padded with silence."""
    if source is not None:
        for chunk in audio_chunks(source, track.rate):
            room = target - track.samples
            if room <= 0:
                break
            track.write(chunk[:, :room])
    missing = target - track.samples
    if missing > 0:
        track.write(np.zeros((2, missing), dtype=np.float32))
