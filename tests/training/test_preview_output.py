"""Preview output after the encoding changes: the same pictures as the former output path, uint8 early,
and a reel joined from the labelled segments written alongside the previews (no re-rendering)."""

from __future__ import annotations

import tracemalloc

import av
import numpy as np
import pytest
import torch
from diffusers.video_processor import VideoProcessor

import ltxtune.training.reel as reel_module
import ltxtune.training.sampling as sampling
from ltxtune.media.decode import read_rgb_frames
from ltxtune.media.encode import EncodeSettings, H264Writer
from ltxtune.training.reel import make_reel, preview_label, segment_path
from tests.training.test_sampling import (  # noqa: F401  (fixtures)
    AUDIO_RATE, FPS, FRAMES, HEIGHT, RULES, WIDTH, components, prompts, read_clip, render, text_encoder, transformer,
)

FORMER_SETTINGS = EncodeSettings(crf="18", preset="medium", threads=1)  # how previews were encoded before


class FormerOutput:
    """The pipeline's stock float32 output, turned into uint8 the way previews used to be."""

    def __init__(self, processor):
        self._processor = processor

    def __getattr__(self, name):
        return getattr(self._processor, name)

    def postprocess_video(self, video, output_type="np", **kwargs):
        floats = self._processor.postprocess_video(video, output_type="np")
        return (np.clip(floats, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def capture_frames(monkeypatch) -> list[np.ndarray]:
    captured: list[np.ndarray] = []
    real = sampling.write_preview

    def recording(path, frames, fps, **kwargs):
        frames = np.asarray(frames)
        captured.append(frames.copy())
        return real(path, frames, fps, **kwargs)

    monkeypatch.setattr(sampling, "write_preview", recording)
    return captured


def mean_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_previews_show_what_the_former_output_path_showed(tmp_path, monkeypatch, transformer, components, prompts):
    frames_now = capture_frames(monkeypatch)
    monkeypatch.setattr(sampling, "_Uint8Video", FormerOutput)
    render(tmp_path / "former", transformer, components, prompts)
    former = list(frames_now)
    frames_now.clear()
    monkeypatch.undo()
    frames_now = capture_frames(monkeypatch)
    paths = render(tmp_path / "now", transformer, components, prompts)

    assert len(former) == len(frames_now) == len(RULES.prompts)
    for old, new, path in zip(former, frames_now, paths):
        assert new.dtype == np.uint8 and np.array_equal(old, new)  # the same pictures, bit for bit
        # Encoded: the fast preset loses about what the former medium preset lost.
        old_mp4 = tmp_path / f"former-{path.name}"
        with H264Writer(old_mp4, WIDTH, HEIGHT, FPS, settings=FORMER_SETTINGS) as writer:
            for rgb in old:
                writer.add(rgb)
        decoded_now, decoded_former = read_rgb_frames(path), read_rgb_frames(old_mp4)
        assert decoded_now.shape == (FRAMES, HEIGHT, WIDTH, 3)
        assert mean_error(decoded_now, old) <= mean_error(decoded_former, old) + 1.0
        clip = read_clip(path)
        assert clip.audio is not None and clip.audio.shape[1] / AUDIO_RATE == pytest.approx(FRAMES / FPS, abs=0.03)


def test_decoded_video_becomes_uint8_a_few_frames_at_a_time():
    video = torch.rand(1, 3, 48, 64, 96) * 2 - 1  # what the VAE decodes, in [-1, 1]
    processor = VideoProcessor(vae_scale_factor=32)
    expected = (np.clip(processor.postprocess_video(video, output_type="np"), 0, 1) * 255 + 0.5).astype(np.uint8)
    tracemalloc.start()
    try:
        got = sampling._Uint8Video(processor).postprocess_video(video, output_type="np")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
    clip_uint8 = video.numel()  # bytes of the uint8 clip
    assert peak < 1.5 * clip_uint8  # never a float32 copy of the clip (that alone would be 4x)
    bf16 = sampling._Uint8Video(processor).postprocess_video(video.bfloat16(), output_type="np")
    former_bf16 = (np.clip(processor.postprocess_video(video.bfloat16(), output_type="np"), 0, 1) * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(bf16, former_bf16)


def test_the_reel_is_joined_from_the_labelled_segments_without_re_rendering(tmp_path, monkeypatch, transformer,
                                                                             components, prompts):
    rendered = capture_frames(monkeypatch)
    paths = render(tmp_path / "previews", transformer, components, prompts)
    monkeypatch.undo()
    entries = [(preview_label(10, i, p.prompt), path) for i, (p, path) in enumerate(zip(RULES.prompts, paths))]
    assert all(segment_path(path).exists() for path in paths)

    def no_rendering(*args, **kwargs):
        raise AssertionError("a segment was rendered again")

    monkeypatch.setattr(reel_module, "_render_segment", no_rendering)
    reel = make_reel(entries, tmp_path / "reel.mp4")

    clip = read_clip(reel)  # playable: decodes from start to end, with its audio
    assert clip.frames.shape == (2 * FRAMES, HEIGHT, WIDTH, 3) and clip.fps == FPS
    assert clip.duration == pytest.approx(2 * FRAMES / FPS, abs=0.02)
    assert clip.audio.shape[1] / AUDIO_RATE == pytest.approx(2 * FRAMES / FPS, abs=0.03)
    segments = np.concatenate([read_rgb_frames(segment_path(path)) for path in paths])
    assert np.array_equal(clip.frames, segments)  # remuxed: the segments' very pictures
    previews = np.concatenate([read_rgb_frames(path) for path in paths])
    body = slice(HEIGHT // 3, None)
    raw = np.concatenate(rendered)
    # Below the banner: the rendered pictures, encoded once (as faithful as the previews themselves).
    assert mean_error(clip.frames[:, body], raw[:, body]) <= mean_error(previews[:, body], raw[:, body]) + 0.5
    rows = reel_module._banner(entries[0][0], WIDTH, HEIGHT)[0]
    banner = clip.frames[:, :rows].astype(int)
    assert banner.max() >= 200 and np.median(banner) < 0.6 * np.median(previews[:, :rows])  # darkened, white text

    # A changed label (another step) is not taken from a stale segment: it is rendered anew.
    monkeypatch.undo()
    relabelled = make_reel([(preview_label(20, 0, RULES.prompts[0].prompt), paths[0])], tmp_path / "again.mp4")
    assert not np.array_equal(read_rgb_frames(relabelled)[:, :6], read_rgb_frames(segment_path(paths[0]))[:, :6])
    with av.open(str(relabelled)) as container:
        assert container.streams.video[0].frames == FRAMES
