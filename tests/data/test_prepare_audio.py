"""Audio rules: all-or-nothing, forced, ignored, normalised, fitted to the trained duration."""

import numpy as np
import pytest

from ltxtune.errors import ErrorKind
from ltxtune.data import DatasetError
from ltxtune.data.audio import PEAK, read_wav
from tests.data.conftest import prepare_files
from tests.data.media import dominant_hz, frame_indices, make_video

RATE = 16000


def clip(tmp_path, name, **kwargs):
    kwargs.setdefault("frames", 20)
    return make_video(tmp_path / "media" / name, 128, 72, **kwargs)


def test_auto_audio_is_off_when_one_clip_is_silent(tmp_path, events):
    files = {"a.mp4": clip(tmp_path, "a.mp4"), "quiet.mp4": clip(tmp_path, "quiet.mp4", audio=False)}
    prepared = prepare_files(tmp_path, files, on_event=events.append)
    assert prepared.audio is False
    assert [s.audio for s in prepared.samples] == [None, None]
    warning = "Audio off: these clips have no audio track: quiet.mp4; training video only"
    assert warning in prepared.warnings and warning in events.logs
    assert "Audio: off" in events.logs


def test_forced_audio_names_the_silent_clips(tmp_path):
    files = {
        "a.mp4": clip(tmp_path, "a.mp4"),
        "x/quiet.mkv": clip(tmp_path, "quiet.mkv", audio=False),
        "y/mute.avi": clip(tmp_path, "mute.avi", audio=False),
    }
    with pytest.raises(DatasetError) as caught:
        prepare_files(tmp_path, files, with_audio=True)
    assert caught.value.kind is ErrorKind.CONTENT
    assert caught.value.message == "with_audio is true, but these clips have no audio track: x/quiet.mkv, y/mute.avi"


def test_a_silent_clip_that_is_skipped_does_not_turn_audio_off(tmp_path):
    files = {"a.mp4": clip(tmp_path, "a.mp4"), "short.mp4": clip(tmp_path, "short.mp4", frames=5, audio=False)}
    prepared = prepare_files(tmp_path, files)
    assert prepared.audio is True and [s.source for s in prepared.samples] == ["a.mp4"]


def test_audio_can_be_ignored(tmp_path):
    prepared = prepare_files(tmp_path, {"a.mp4": clip(tmp_path, "a.mp4")}, with_audio=False)
    assert prepared.audio is False and prepared.samples[0].audio is None
    assert not list((tmp_path / "job" / "prepared" / "samples").glob("*.wav"))


def test_forced_audio_on_images_is_refused(tmp_path):
    from tests.data.media import make_image

    with pytest.raises(DatasetError) as caught:
        prepare_files(tmp_path, {"a.png": make_image(tmp_path / "a.png")}, with_audio=True)
    assert caught.value.message == "with_audio is true, but the dataset is images, which have no audio track"


def test_peak_normalisation(tmp_path):
    files = {"a.mp4": clip(tmp_path, "a.mp4")}
    loud = read_wav(prepare_files(tmp_path / "1", files).path("samples/0001_a.wav"))[0]
    raw = read_wav(prepare_files(tmp_path / "2", files, audio_normalize=False).path("samples/0001_a.wav"))[0]
    assert abs(np.abs(loud).max() - PEAK) < 1e-3
    assert 0.45 < np.abs(raw).max() < 0.55  # the test tone's own amplitude (0.5)


def test_mono_and_other_rates_become_stereo_at_the_encoder_rate(tmp_path):
    source = clip(tmp_path, "a.mp4", audio_channels=1, audio_rate=22050, tone_hz=1000)
    prepared = prepare_files(tmp_path, {"a.mp4": source})
    audio, rate = read_wav(prepared.path(prepared.samples[0].audio))
    assert rate == RATE and audio.shape == (2, round(17 / 24 * RATE))
    assert np.allclose(audio[0], audio[1])
    assert abs(dominant_hz(audio[0], RATE) - 1000) < 3


def test_audio_shorter_than_the_video_is_padded_with_silence(tmp_path):
    prepared = prepare_files(tmp_path, {"a.mp4": clip(tmp_path, "a.mp4", audio_seconds=0.3)})
    audio, _ = read_wav(prepared.path(prepared.samples[0].audio))
    assert audio.shape == (2, round(17 / 24 * RATE))
    assert np.abs(audio[:, : int(0.28 * RATE)]).max() > 0.5
    assert not audio[:, int(0.33 * RATE) :].any()


def test_auto_scale_stretches_short_clips_and_their_sound(tmp_path):
    """9 frames (0.375 s) slowed down to 17 frames (0.708 s)."""
    source = clip(tmp_path, "a.mp4", frames=9)
    prepared = prepare_files(tmp_path, {"a.mp4": source}, auto_scale_input=True)
    sample = prepared.samples[0]
    assert sample.span == (0.0, 0.375) and sample.frames == 17
    assert frame_indices(prepared.path(sample.media)) == [i * 9 // 17 for i in range(17)]
    audio, _ = read_wav(prepared.path(sample.audio))
    assert audio.shape == (2, round(17 / 24 * RATE))
    assert abs(dominant_hz(audio[0], RATE) - 440) < 3  # same pitch
    assert np.abs(audio[:, -1500:-300]).max() > 0.3  # sound to the end: stretched, not padded


def test_auto_scale_without_pitch_preservation_pads_with_silence(tmp_path):
    source = clip(tmp_path, "a.mp4", frames=9)
    prepared = prepare_files(tmp_path, {"a.mp4": source}, auto_scale_input=True, audio_preserve_pitch=False)
    audio, _ = read_wav(prepared.path(prepared.samples[0].audio))
    assert audio.shape == (2, round(17 / 24 * RATE))
    assert np.abs(audio[:, : int(0.35 * RATE)]).max() > 0.5
    assert not audio[:, int(0.376 * RATE) :].any()


def test_truncated_silent_clip_is_skipped_with_the_video_reason(tmp_path):
    good = clip(tmp_path, "good.mp4", frames=40, faststart=True, audio=False)
    cut = tmp_path / "media" / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: int(good.stat().st_size * 0.6)])
    prepared = prepare_files(tmp_path, {"good.mp4": good, "cut.mp4": cut})
    assert [s.source for s in prepared.samples] == ["good.mp4"]
    (skip,) = prepared.skipped
    assert skip.source == "cut.mp4"
    assert (
        skip.reason
        == "decoding stopped at 0.46 s but frames up to 0.67 s are needed (the file looks truncated or corrupt)"
    )
