"""ltxtune.media: decoding at a time on variable-frame-rate input, fitting in YUV against the former
RGB route, the writer and the remuxing join. Media are made with PyAV at test time."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.reformatter import Interpolation

from ltxtune.data.video import fitted_yuv_frames, sample_times, write_fitted
from ltxtune.media.concat import Segment, concat_segments
from ltxtune.media.decode import frames_at_times, read_rgb_frames
from ltxtune.media.encode import FITTED, H264Writer
from ltxtune.media.errors import MediaError
from ltxtune.media.geometry import fill_size, fit_yuv, to_rgb
from ltxtune.media.probe import probe_video
from tests.data.media import make_video

COLOURS = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (250, 250, 10), (10, 250, 250), (250, 10, 250)]


def make_vfr(path: Path, times_ms: list[int], end_ms: int) -> Path:
    """A clip whose frame i (a flat colour) starts at times_ms[i], timestamps set explicitly (1 ms time base)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": "1", "preset": "veryfast", "bf": "0"}
        for index, at in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), COLOURS[index], np.uint8), format="rgb24")
            frame.pts, frame.time_base = at, Fraction(1, 1000)
            for packet in stream.encode(frame):
                if packet.pts == times_ms[-1]:
                    packet.duration = end_ms - times_ms[-1]
                container.mux(packet)
        for packet in stream.encode():
            packet.duration = end_ms - times_ms[-1] if packet.pts == times_ms[-1] else packet.duration
            container.mux(packet)
    return path


def colour_index(frame: av.VideoFrame) -> int:
    mean = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
    return int(np.argmin([np.abs(mean - np.array(c)).sum() for c in COLOURS]))


def test_frame_at_time_follows_timestamps_on_variable_frame_rate_input(tmp_path):
    # Six frames held 100, 50, 350, 50, 450 and 200 ms: a frame index / average-rate rule gets these wrong.
    starts = [0, 100, 150, 500, 550, 1000]
    path = make_vfr(tmp_path / "vfr.mp4", starts, end_ms=1200)
    info = probe_video(path)
    assert info.frames == 6
    times = [0.0, 0.05, 0.095, 0.1, 0.145, 0.15, 0.3, 0.49, 0.5, 0.56, 0.99, 1.0, 1.1]
    expected = [0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5, 5]
    assert [colour_index(f) for f in frames_at_times(path, info, times)] == expected
    # Seeking in (the first time is past 1 s) keeps the same rule.
    assert [colour_index(f) for f in frames_at_times(path, info, [1.05, 1.15])] == [5, 5]


def test_decoding_past_a_truncated_end_is_an_error(tmp_path):
    path = make_vfr(tmp_path / "short.mp4", [0, 100], end_ms=200)
    with pytest.raises(MediaError, match=r"decoding stopped at 0\.10 s but frames up to 5\.00 s are needed"):
        list(frames_at_times(path, probe_video(path), [0.0, 5.0]))


_PRECISE = Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


def former_rgb_fit(frame: av.VideoFrame, rotation: int, width: int, height: int) -> np.ndarray:
    """How fitting worked before it stayed in YUV: scale to RGB at the fill size, rotate, crop the centre."""
    turns = (rotation // 90) % 4
    display_w, display_h = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
    fill_w, fill_h = fill_size(display_w, display_h, width, height)
    coded_w, coded_h = (fill_h, fill_w) if turns % 2 else (fill_w, fill_h)
    shrink = coded_w * coded_h <= frame.width * frame.height
    flags = (Interpolation.AREA if shrink else Interpolation.BICUBIC) | _PRECISE
    rgb = frame.reformat(width=coded_w, height=coded_h, format="rgb24", interpolation=flags).to_ndarray()
    rgb = np.rot90(rgb, turns) if turns else rgb
    y0, x0 = (rgb.shape[0] - height) // 2, (rgb.shape[1] - width) // 2
    return np.ascontiguousarray(rgb[y0 : y0 + height, x0 : x0 + width])


@pytest.mark.parametrize(
    ("size", "rotation", "bucket"),
    [((320, 180), None, (128, 96)), ((200, 150), -90, (96, 128)), ((48, 32), None, (96, 64)), ((250, 142), None, (64, 64))],
    ids=["shrink", "rotated", "enlarge", "odd-fill"],
)
def test_fitted_frames_match_the_former_rgb_route(tmp_path, size, rotation, bucket):
    source = make_video(tmp_path / "src.mp4", *size, frames=12, audio=False, textured=True, rotation=rotation)
    info = probe_video(source)
    times = sample_times(0.0, 12 / 24, 12)
    width, height = bucket
    raw = [former_rgb_fit(frame, info.rotation, width, height) for frame in frames_at_times(source, info, times)]
    former = tmp_path / "former.mp4"
    with H264Writer(former, width, height, 24, settings=FITTED) as writer:
        for rgb in raw:
            writer.add(rgb)
    expected = read_rgb_frames(former)  # what the former route wrote
    out = tmp_path / "fitted.mp4"
    assert write_fitted(fitted_yuv_frames(source, info, times, width, height), out, 24) == 12
    got = read_rgb_frames(out)
    assert got.shape == expected.shape

    def error(a, b) -> float:
        return float(np.abs(a.astype(int) - np.asarray(b).astype(int)).mean())

    codec = error(expected, raw)  # what encoding alone costs (the textured pattern is hard on H.264)
    assert error(got, raw) <= 1.2 * codec + 0.2, (error(got, raw), codec)
    assert error(got, expected) < 2.0


@pytest.mark.parametrize("colour", [(250, 10, 10), (10, 250, 10), (10, 10, 250), (128, 128, 128), (200, 150, 50)])
def test_flat_colours_keep_their_level(tmp_path, colour):
    source = tmp_path / "flat.mp4"
    with H264Writer(source, 160, 90, 24, settings=FITTED) as writer:
        for _ in range(3):
            writer.add(np.full((90, 160, 3), colour, np.uint8))
    info = probe_video(source)
    (frame,) = list(frames_at_times(source, info, [0.0]))
    former = former_rgb_fit(frame, 0, 64, 64)
    fitted = to_rgb(fit_yuv(frame, 0, 64, 64))
    assert np.abs(fitted.astype(int) - former.astype(int)).max() <= 2
    assert np.abs(fitted.astype(int) - np.array(colour)).max() <= 3


def test_the_writer_refuses_frames_of_another_size_or_format(tmp_path):
    with H264Writer(tmp_path / "a.mp4", 64, 32, 24, settings=FITTED) as writer:
        with pytest.raises(ValueError, match="expected a yuv420p frame of 64x32"):
            writer.add_frame(av.VideoFrame(32, 32, "yuv420p"))
        with pytest.raises(ValueError, match=r"expected a uint8 frame of \(32, 64, 3\)"):
            writer.add(np.zeros((32, 32, 3), np.uint8))
        writer.add(np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="even sides"):
        H264Writer(tmp_path / "b.mp4", 63, 32, 24)


def _write(path: Path, frames: list[np.ndarray], fps: int, audio_rate: int | None = None, tone: float = 0.0) -> Path:
    with H264Writer(path, frames[0].shape[1], frames[0].shape[0], fps, audio_rate=audio_rate) as writer:
        for rgb in frames:
            writer.add(rgb)
        if audio_rate:
            t = np.arange(round(len(frames) / fps * audio_rate)) / audio_rate
            writer.write_audio(np.stack([np.sin(2 * np.pi * tone * t)] * 2).astype(np.float32) * 0.5)
    return path


def test_joining_remuxes_segments_bit_exactly_and_keeps_audio_in_sync(tmp_path):
    rng = np.random.default_rng(0)
    clips = [[rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(n)] for n in (7, 5, 9)]
    paths = [_write(tmp_path / f"s{i}.mp4", frames, 24, 48000, tone=440.0) for i, frames in enumerate(clips)]
    silent = _write(tmp_path / "silent.mp4", clips[1], 24)
    joined = concat_segments([Segment(paths[0], paths[0]), Segment(silent, None), Segment(paths[2], paths[2])],
                             tmp_path / "joined.mp4", audio_rate=48000)
    decoded = read_rgb_frames(joined)
    parts = [read_rgb_frames(paths[0]), read_rgb_frames(silent), read_rgb_frames(paths[2])]
    assert np.array_equal(decoded, np.concatenate(parts))  # packets copied: the very same pictures
    with av.open(str(joined)) as container:
        audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
        assert float(container.streams.video[0].average_rate) == 24
    assert audio.shape[1] / 48000 == pytest.approx(21 / 24, abs=0.03)
    gap = slice(round(7 / 24 * 48000) + 2048, round(12 / 24 * 48000) - 2048)
    assert np.abs(audio[:, gap]).max() < 0.02 and np.abs(audio[:, :gap.start - 4096]).max() > 0.3

    other = _write(tmp_path / "other.mp4", [np.zeros((32, 32, 3), np.uint8)] * 3, 24)
    with pytest.raises(MediaError, match="other.mp4: was encoded with other settings than the first segment"):
        concat_segments([Segment(paths[0]), Segment(other)], tmp_path / "bad.mp4")
    assert not (tmp_path / "bad.mp4").exists()


def test_media_and_the_url_guard_stay_at_the_bottom_layer():
    """Dataset workers import media/ (no torch); neither media/ nor netguard reaches up into the service."""
    import subprocess
    import sys

    code = (
        "import sys, ltxtune.media, ltxtune.media.probe, ltxtune.media.decode, ltxtune.media.encode, "
        "ltxtune.media.geometry, ltxtune.media.concat, ltxtune.netguard\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.split('.')[:2] in "
        "(['ltxtune', 'jobs'], ['ltxtune', 'api'], ['ltxtune', 'cli'], ['ltxtune', 'protocols'], ['ltxtune', 'training'], "
        "['ltxtune', 'data'])))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
