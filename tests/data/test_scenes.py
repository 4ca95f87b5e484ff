"""Scene splitting: a long clip with a hard cut becomes one sample per shot."""

import numpy as np

from ltxtune.data.audio import read_wav
from ltxtune.data.probe import probe_media
from ltxtune.data.scenes import detect_scenes
from tests.data.conftest import prepare_files
from tests.data.media import dominant_hz, frame_indices, make_video, read_frames


def long_clip(tmp_path, name="long.mp4", frames=60, cut_at=30):
    # 2.5 s at 24 fps: blue with a 440 Hz tone, then orange with 880 Hz from the cut
    return make_video(tmp_path / "media" / name, 128, 72, frames=frames, fps=24, cut_at=cut_at)


def test_detect_scenes_finds_the_hard_cut(tmp_path):
    path = long_clip(tmp_path)
    assert detect_scenes(path, probe_media(path)) == [(0.0, 1.25), (1.25, 2.5)]
    plain = make_video(tmp_path / "media" / "plain.mp4", 128, 72, frames=40)
    assert detect_scenes(plain, probe_media(plain)) == [(0.0, round(40 / 24, 6))]


def test_long_clip_is_split_into_shots_sharing_the_caption(tmp_path, events):
    files = {
        "long.mkv": long_clip(tmp_path, "long.mkv"),
        "long.txt": "two shots",
        "short.mp4": make_video(tmp_path / "s.mp4", frames=20),
    }
    prepared = prepare_files(
        tmp_path, files, on_event=events.append, split_input_duration_threshold=1.0, trigger_phrase="TOK"
    )
    assert [(s.id, s.source, s.scene, s.span) for s in prepared.samples] == [
        ("0001_long_s01", "long.mkv", (0.0, 1.25), (0.0, 0.708333)),
        ("0001_long_s02", "long.mkv", (1.25, 2.5), (1.25, 1.958333)),
        ("0002_short", "short.mp4", None, (0.0, 0.708333)),  # 0.83 s: not above the threshold
    ]
    assert [s.captions for s in prepared.samples[:2]] == [("TOK two shots",), ("TOK two shots",)]
    assert "Split long.mkv into 2 scenes" in events.logs
    first, second = prepared.samples[:2]
    assert frame_indices(prepared.path(first.media)) == list(range(17))
    assert frame_indices(prepared.path(second.media)) == list(range(30, 47))
    assert (read_frames(prepared.path(second.media))[:, 4, 32, 0] > 150).all()  # every frame orange
    for sample, hz in ((first, 440), (second, 880)):
        audio, rate = read_wav(prepared.path(sample.audio))
        assert audio.shape == (2, round(17 / 24 * 16000))
        assert abs(dominant_hz(audio[0], rate) - hz) < 3


def test_threshold_and_switch(tmp_path):
    files = {"long.mp4": long_clip(tmp_path)}
    assert [s.scene for s in prepare_files(tmp_path / "a", files).samples] == [None]  # 2.5 s < 30 s default
    off = prepare_files(tmp_path / "b", files, split_input_into_scenes=False, split_input_duration_threshold=1.0)
    assert [s.scene for s in off.samples] == [None]


def test_short_scenes_follow_the_frame_rules(tmp_path):
    files = {"long.mp4": long_clip(tmp_path, frames=60, cut_at=48)}  # second shot: 12 frames
    prepared = prepare_files(tmp_path, files, split_input_duration_threshold=1.0)
    assert [s.scene for s in prepared.samples] == [(0.0, 2.0)]
    assert [(s.source, s.reason) for s in prepared.skipped] == [
        (
            "long.mp4",
            "scene 2 (2.00-2.50 s) too short: 12 frames at 24 fps (0.50 s), needs 17 (or set auto_scale_input)",
        )
    ]
    stretched = prepare_files(tmp_path / "auto", files, split_input_duration_threshold=1.0, auto_scale_input=True)
    assert [(s.scene, s.span) for s in stretched.samples] == [((0.0, 2.0), (0.0, 0.708333)), ((2.0, 2.5), (2.0, 2.5))]
    assert frame_indices(stretched.path(stretched.samples[1].media)) == [48 + i * 12 // 17 for i in range(17)]
    audio, rate = read_wav(stretched.path(stretched.samples[1].audio))
    assert abs(dominant_hz(audio[0], rate) - 880) < 3 and np.abs(audio[:, -2000:]).max() > 0.3
