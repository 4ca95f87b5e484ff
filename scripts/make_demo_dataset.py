"""Write examples/demo-clips.zip: six short clips (moving shapes, a tone each) with captions.

The README's main job trains the tiny model on it. Run again to regenerate:
    .venv/bin/python scripts/make_demo_dataset.py examples/demo-clips.zip
"""

from __future__ import annotations

import io
import sys
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT, FPS, FRAMES, RATE = 192, 192, 24, 33, 48000
CLIPS = [
    ("glow/orbit", (255, 80, 40), 330.0, "ltxdemo an orange square circles a dark room"),
    ("glow/rise", (40, 200, 255), 440.0, "ltxdemo a blue square rises slowly"),
    ("glow/drift", (120, 255, 90), 550.0, "ltxdemo a green square drifts to the right"),
    ("pulse/left", (255, 220, 60), 660.0, "ltxdemo a yellow square slides left"),
    ("pulse/fall", (230, 60, 230), 770.0, "ltxdemo a pink square falls"),
    ("pulse/orbit", (240, 240, 240), 880.0, "ltxdemo a white square circles"),
]


def frame(index: int, colour: tuple[int, int, int], motion: str) -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), 18, np.uint8)
    t = index / FRAMES
    side = 48
    if motion == "orbit":
        x, y = 72 + 56 * np.cos(2 * np.pi * t), 72 + 56 * np.sin(2 * np.pi * t)
    elif motion in ("rise", "fall"):
        x, y = 72, 140 - 110 * t if motion == "rise" else 4 + 110 * t
    else:
        x, y = (4 + 130 * t if motion == "drift" else 134 - 130 * t), 72
    x, y = int(x), int(y)
    image[y : y + side, x : x + side] = colour
    return image


def clip_bytes(colour: tuple[int, int, int], tone_hz: float, motion: str) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "18"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = container.add_stream("aac", rate=RATE, layout="stereo")
        for index in range(FRAMES):
            for packet in video.encode(av.VideoFrame.from_ndarray(frame(index, colour, motion), format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        seconds = np.arange(int(RATE * FRAMES / FPS)) / RATE
        tone = (0.3 * np.sin(2 * np.pi * tone_hz * seconds)).astype(np.float32)
        samples = np.stack([tone, tone])
        for start in range(0, samples.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start : start + 1024]), format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts, chunk.time_base = RATE, start, Fraction(1, RATE)
            for packet in audio.encode(chunk):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return buffer.getvalue()


def main(dest: Path) -> None:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as archive:
        for name, colour, tone, caption in CLIPS:
            archive.writestr(f"{name}.mp4", clip_bytes(colour, tone, name.split("/")[1]))
            archive.writestr(f"{name}.txt", caption)
    print(f"wrote {dest} ({dest.stat().st_size // 1024} KiB, {len(CLIPS)} clips)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/demo-clips.zip"))
