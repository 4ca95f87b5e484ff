"""Scene splitting with PySceneDetect's content detector (HSV change between frames).

Frames are decoded with PyAV straight to a small BGR image (the detector's own downscaling
would first convert every full-size frame), and fed to `ContentDetector` in order. A cut at
frame k starts a new scene at that frame's presentation time.
"""

from __future__ import annotations

from pathlib import Path

import av
from scenedetect import ContentDetector, FrameTimecode

from ltxtune.media.probe import MediaInfo, video_stream

THRESHOLD = 27.0  # PySceneDetect's default for ContentDetector
MIN_SCENE_S = 0.5
ANALYSIS_WIDTH = 256


def detect_scenes(
    path: Path,
    info: MediaInfo,
    *,
    threshold: float = THRESHOLD,
    min_scene_s: float = MIN_SCENE_S,
) -> list[tuple[float, float]]:
    """The clip's shots as (start, end) seconds after its first frame; one shot if no cut is found."""
    detector = ContentDetector(threshold=threshold, min_scene_len=float(min_scene_s))
    fps = info.fps
    times: list[float] = []
    cuts: list[FrameTimecode] = []
    with av.open(str(path)) as container:
        stream = video_stream(container)
        stream.thread_type = "AUTO"
        scale = ANALYSIS_WIDTH / max(1, stream.codec_context.width)
        width = ANALYSIS_WIDTH if scale < 1 else stream.codec_context.width
        height = max(2, round(stream.codec_context.height * min(1.0, scale)))
        try:
            for index, frame in enumerate(container.decode(stream)):
                at = float(frame.time) - info.start if frame.time is not None else index / fps
                times.append(at)
                image = frame.reformat(width=width, height=height, format="bgr24", interpolation="AREA").to_ndarray()
                cuts += detector.process_frame(FrameTimecode(index, fps=fps), image)
        except av.FFmpegError:
            pass  # a damaged tail: split what decoded; fitting reports the damage
    if not times:
        return [(0.0, info.duration)]
    cuts += detector.post_process(FrameTimecode(len(times) - 1, fps=fps))
    starts = sorted({times[cut.frame_num] for cut in cuts if 0 < cut.frame_num < len(times)})
    bounds = [0.0, *starts, max(info.duration, times[-1])]
    return [(round(a, 6), round(b, 6)) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
