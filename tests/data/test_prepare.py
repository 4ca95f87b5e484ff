"""End-to-end preparation: archives built at test time, exact outcomes checked."""

import json
from pathlib import Path

import pytest

from ltxtune.errors import ErrorKind
from ltxtune.data import TOO_SHORT, DatasetError, PreparedDataset, prepare_dataset, summarise
from ltxtune.data.audio import read_wav
from ltxtune.events import LogLine, Progress
from tests.data.conftest import prepare_files, tiny_plan
from tests.data.media import frame_indices, make_image, make_video, make_zip, read_frames

AUDIO_17 = round(17 / 24 * 16000)  # samples of audio for 17 frames at 24 fps


def clip(tmp_path: Path, name: str, **kwargs) -> Path:
    kwargs.setdefault("frames", 20)
    return make_video(tmp_path / "media" / name, kwargs.pop("width", 128), kwargs.pop("height", 72), **kwargs)


def test_every_container_nested_folders_and_captions(tmp_path, events):
    files = {
        "clips/a.mp4": clip(tmp_path, "a.mp4"),
        "clips/a.txt": "a blue square slides right",
        "clips/more/b.mov": clip(tmp_path, "b.mov"),
        "clips/more/b.txt": "second clip",
        "c.avi": clip(tmp_path, "c.avi"),
        "deep/er/d.mkv": clip(tmp_path, "d.mkv"),
        "__MACOSX/clips/._a.mp4": b"\x00\x05\x16\x07",
        "clips/.DS_Store": b"junk",
    }
    prepared = prepare_files(tmp_path, files, on_event=events.append, trigger_phrase="TOK")
    assert prepared.kind == "video" and prepared.mode == "t2v"
    assert (prepared.fps, prepared.frames, prepared.audio, prepared.audio_sample_rate) == (24, 17, True, 16000)
    assert [s.source for s in prepared.samples] == ["c.avi", "clips/a.mp4", "clips/more/b.mov", "deep/er/d.mkv"]
    assert [s.id for s in prepared.samples] == ["0001_c", "0002_a", "0003_b", "0004_d"]
    assert [s.captions for s in prepared.samples] == [
        ("TOK",),
        ("TOK a blue square slides right",),
        ("TOK second clip",),
        ("TOK",),
    ]
    for sample in prepared.samples:
        assert (sample.frames, sample.fps, sample.width, sample.height) == (17, 24, 64, 64)
        assert sample.scene is None and sample.span == (0.0, 0.708333)
        assert sample.media == f"samples/{sample.id}.mp4" and sample.audio == f"samples/{sample.id}.wav"
        assert sample.reference is None and sample.flips == (False,)
        assert frame_indices(prepared.path(sample.media)) == list(range(17))
        audio, rate = read_wav(prepared.path(sample.audio))
        assert rate == 16000 and audio.shape == (2, AUDIO_17)
        assert len(sample.content_hash) == 64
    assert prepared.skipped == ()
    assert prepared.warnings == ("Only 4 media files: at least 10 are recommended, more is better",)
    assert [p.done for p in events.progress] == [0, 1, 2, 3, 4] and {p.total for p in events.progress} == {4}
    assert "Only 4 media files: at least 10 are recommended, more is better" in events.logs
    loaded = PreparedDataset.load(tmp_path / "job" / "prepared")
    assert loaded == prepared
    manifest = json.loads((tmp_path / "job" / "prepared" / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["samples"][0]["scene"] is None
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["prepared"]  # download and extraction removed


def test_same_name_in_different_folders_stays_distinct(tmp_path):
    files = {
        "x/clip.mp4": clip(tmp_path, "1.mp4"),
        "x/clip.txt": "first",
        "y/clip.mp4": clip(tmp_path, "2.mp4", cut_at=0),
        "y/clip.txt": "second",
    }
    prepared = prepare_files(tmp_path, files)
    assert [(s.id, s.source, s.captions) for s in prepared.samples] == [
        ("0001_clip", "x/clip.mp4", ("first",)),
        ("0002_clip", "y/clip.mp4", ("second",)),
    ]
    assert prepared.samples[0].content_hash != prepared.samples[1].content_hash


def test_upper_case_extensions(tmp_path):
    prepared = prepare_files(tmp_path, {"CLIP.MP4": clip(tmp_path, "a.mp4"), "CLIP.TXT": "loud"})
    assert [(s.source, s.captions) for s in prepared.samples] == [("CLIP.MP4", ("loud",))]


def test_short_clips_are_skipped_with_a_reason(tmp_path, events):
    files = {"long.mp4": clip(tmp_path, "long.mp4"), "short.mp4": clip(tmp_path, "short.mp4", frames=9)}
    prepared = prepare_files(tmp_path, files, on_event=events.append)
    assert [s.source for s in prepared.samples] == ["long.mp4"]
    reason = "too short: 9 frames at 24 fps (0.38 s), needs 17 (or set auto_scale_input)"
    assert [(s.source, s.reason) for s in prepared.skipped] == [("short.mp4", reason)]
    assert f"Skipped short.mp4: {reason}" in events.logs
    assert any(isinstance(e, LogLine) and e.level == "WARNING" and "short.mp4" in e.message for e in events)


def test_all_clips_too_short_is_the_spec_error(tmp_path):
    files = {"a.mp4": clip(tmp_path, "a.mp4", frames=9), "b.mkv": clip(tmp_path, "b.mkv", frames=12)}
    with pytest.raises(DatasetError) as caught:
        prepare_files(tmp_path, files)
    assert caught.value.kind is ErrorKind.CONTENT
    assert caught.value.message.startswith(TOO_SHORT)
    assert caught.value.message == (
        "All training videos are too short to be trainable: each needs at least 17 frames at 24 fps (0.71 s); "
        "the longest has 12. Turn on auto_scale_input to fit shorter clips to the frame count."
    )


def test_longer_clip_trains_on_its_first_frames(tmp_path):
    prepared = prepare_files(tmp_path, {"a.mp4": clip(tmp_path, "a.mp4", frames=50)})
    sample = prepared.samples[0]
    assert sample.span == (0.0, 0.708333)
    assert frame_indices(prepared.path(sample.media)) == list(range(17))


def test_frame_rate_conversion_keeps_audio_in_sync(tmp_path):
    """30 fps source with a hard cut (new colour, 440 -> 880 Hz) at 1.0 s, trained at 24 fps."""
    source = clip(tmp_path, "a.mov", frames=60, fps=30, cut_at=30)
    prepared = prepare_files(tmp_path, {"a.mov": source}, number_of_frames=41)
    sample = prepared.samples[0]
    assert frame_indices(prepared.path(sample.media)) == [i * 30 // 24 for i in range(41)]
    frames = read_frames(prepared.path(sample.media))
    first_orange = next(i for i, f in enumerate(frames) if f[4, 32, 0] > 150)  # red channel of the background
    assert first_orange == 24  # 24 / 24 fps = 1.0 s
    audio, rate = read_wav(prepared.path(sample.audio))
    assert audio.shape == (2, round(41 / 24 * 16000))
    assert abs(switch_time(audio[0], rate) - 1.0) <= 0.012


def switch_time(signal, rate, low=440.0, high=880.0) -> float:
    """When the tone changes from `low` to `high` Hz (10 ms windows, 2 ms steps)."""
    import numpy as np

    window = int(0.01 * rate)
    t = np.arange(window) / rate
    probe_low, probe_high = np.exp(-2j * np.pi * low * t), np.exp(-2j * np.pi * high * t)
    for start in range(0, len(signal) - window, int(0.002 * rate)):
        chunk = signal[start : start + window]
        if abs(chunk @ probe_high) > abs(chunk @ probe_low):
            return (start + window / 2) / rate
    return float("inf")


def test_full_hd_source_into_the_768x448_bucket(tmp_path):
    source = make_video(tmp_path / "media" / "hd.mp4", 1920, 1080, frames=9, fps=24)
    prepared = prepare_files(
        tmp_path, {"hd.mp4": source}, bucket=None, resolution="medium", aspect_ratio="16:9", number_of_frames=9
    )
    sample = prepared.samples[0]
    assert (sample.width, sample.height, sample.frames) == (768, 448, 9)
    frames = read_frames(prepared.path(sample.media))
    assert frames.shape == (9, 448, 768, 3)
    assert frame_indices(prepared.path(sample.media)) == list(range(9))


def test_rotated_phone_clip_is_fitted_upright(tmp_path):
    source = clip(tmp_path, "phone.mp4", frames=17, rotation=-90)  # coded 128x72, shown 72x128
    prepared = prepare_files(tmp_path, {"phone.mp4": source}, bucket=(64, 128))
    frame = read_frames(prepared.path(prepared.samples[0].media))[0]
    assert frame.shape == (128, 64, 3)
    # the red marker of the coded top-left corner is shown top-right after a quarter turn clockwise
    top_right, top_left = frame[2:10, 56:62].mean(axis=(0, 1)), frame[2:10, 2:8].mean(axis=(0, 1))
    assert top_right[0] > 180 and top_right[1] < 60
    assert not (top_left[0] > 180 and top_left[1] < 60)


def test_extreme_aspect_ratios_fill_and_crop(tmp_path):
    files = {
        "wide.mp4": clip(tmp_path, "wide.mp4", width=200, height=60),
        "tall.mp4": clip(tmp_path, "tall.mp4", width=60, height=200),
    }
    prepared = prepare_files(tmp_path, files, bucket=(96, 64))
    for sample in prepared.samples:
        frames = read_frames(prepared.path(sample.media))
        assert frames.shape == (17, 64, 96, 3)
        assert frame_indices(prepared.path(sample.media)) == list(range(17))


def test_images_become_single_frame_samples(tmp_path):
    from PIL import Image

    exif_path = tmp_path / "media" / "turned.jpg"
    make_image(exif_path, 96, 64, index=2)  # centre patches: left 24, right 80
    image = Image.open(exif_path)
    exif = image.getexif()
    exif[0x0112] = 6  # shown rotated a quarter turn clockwise
    image.save(exif_path, exif=exif, quality=95)
    files = {
        "odd.png": make_image(tmp_path / "media" / "odd.png", 97, 55),
        "alpha.PNG": make_image(tmp_path / "media" / "alpha.png", 64, 64, mode="RGBA"),
        "photo.jpeg": make_image(tmp_path / "media" / "photo.jpeg", 120, 80),
        "turned.jpg": exif_path,
        "photo.txt": "a photo",
    }
    prepared = prepare_files(tmp_path, files, trigger_phrase="TOK", with_audio=None)
    assert (prepared.kind, prepared.frames, prepared.audio) == ("image", 1, False)
    assert [s.source for s in prepared.samples] == ["alpha.PNG", "odd.png", "photo.jpeg", "turned.jpg"]
    assert [s.captions for s in prepared.samples] == [("TOK",), ("TOK",), ("TOK a photo",), ("TOK",)]
    for sample in prepared.samples:
        assert sample.media.endswith(".png") and sample.audio is None and sample.span is None
        assert Image.open(prepared.path(sample.media)).size == (64, 64) and sample.frames == 1
    turned = __import__("numpy").asarray(Image.open(prepared.path(prepared.samples[3].media))).astype(float)
    # upright, the coded left patch is on top and the right one below
    assert abs(turned[26:30, 30:34].mean() - 24) < 8 and abs(turned[34:38, 30:34].mean() - 80) < 8


def test_mixed_videos_and_images_are_refused(tmp_path):
    files = {
        "a.mp4": clip(tmp_path, "a.mp4"),
        "b.mp4": clip(tmp_path, "b.mp4"),
        "c.png": make_image(tmp_path / "c.png"),
    }
    with pytest.raises(DatasetError) as caught:
        prepare_files(tmp_path, files)
    assert caught.value.kind is ErrorKind.CONTENT
    assert caught.value.message == (
        "The dataset must contain ONLY videos OR ONLY images - mixed datasets are not supported. "
        "Found 2 videos and 1 images (e.g. c.png); remove one kind."
    )


def test_unsupported_files_and_orphan_captions_are_reported(tmp_path, events):
    files = {"a.mp4": clip(tmp_path, "a.mp4"), "b.webm": b"webm", "notes.txt": "hello"}
    prepared = prepare_files(tmp_path, files, on_event=events.append)
    assert [(s.source, s.reason) for s in prepared.skipped] == [
        ("b.webm", "unsupported file type .webm: use videos (.mp4, .mov, .avi, .mkv) or images (.png, .jpg, .jpeg)")
    ]
    assert "Captions that match no media file: notes.txt" in prepared.warnings


def test_corrupt_media_is_skipped_and_named(tmp_path, events):
    good = clip(tmp_path, "good.mp4", frames=40, faststart=True)
    truncated = tmp_path / "media" / "cut.mp4"
    truncated.write_bytes(good.read_bytes()[: int(good.stat().st_size * 0.3)])
    files = {
        "good.mp4": good,
        "noise.mp4": b"\x13\x37" * 500,
        "empty.mov": b"",
        "cut.mp4": truncated,
        "bad.png.txt": "x",
    }
    prepared = prepare_files(tmp_path, files, on_event=events.append)
    assert [s.source for s in prepared.samples] == ["good.mp4"]
    reasons = {s.source: s.reason for s in prepared.skipped}
    assert reasons["empty.mov"] == "the file is empty"
    assert reasons["noise.mp4"] == "cannot be opened as a video (Invalid data found when processing input)"
    assert reasons["cut.mp4"] == (
        "decoding the audio failed at 0.32 s but sound up to 0.71 s is needed "
        "(the file looks truncated or corrupt: Invalid data found when processing input)"
    )
    assert not list((tmp_path / "job" / "prepared" / "samples").glob("0001_cut*"))


def test_nothing_usable_names_every_file(tmp_path):
    with pytest.raises(DatasetError) as caught:
        prepare_files(tmp_path, {"noise.mp4": b"\x13\x37" * 500, "empty.mov": b""})
    assert caught.value.message == (
        "None of the media files can be used: empty.mov: the file is empty; "
        "noise.mp4: cannot be opened as a video (Invalid data found when processing input)"
    )


def test_over_http_needs_permission_for_loopback(tmp_path, http_root):
    folder, base = http_root
    make_zip(folder / "d.zip", {"a.mp4": clip(tmp_path, "a.mp4")})
    plan = tiny_plan(f"{base}/d.zip")
    prepared = prepare_dataset(plan, tmp_path / "job", allow_private_urls=True)
    assert len(prepared.samples) == 1
    with pytest.raises(DatasetError) as caught:
        prepare_dataset(plan, tmp_path / "job2")
    assert caught.value.kind is ErrorKind.SOURCE and "only public addresses are fetched" in caught.value.message
    assert not (tmp_path / "job2" / "prepared").exists()


def test_summary_for_the_command_line(tmp_path):
    files = {"a.mp4": clip(tmp_path, "a.mp4"), "a.txt": "one", "b.mp4": clip(tmp_path, "b.mp4", frames=9)}
    prepared = prepare_files(tmp_path, files, trigger_phrase="TOK")
    assert summarise(prepared) == "\n".join(
        [
            "Prepared 1 video sample from 1 clip (t2v)",
            "  frames: 17 at 24 fps (0.71 s)",
            "  bucket: 64x64 (1)",
            "  scenes: none split",
            "  audio: on (16000 Hz stereo)",
            "  captions: 1 of 1 non-empty",
            "Skipped 1:",
            "  b.mp4: too short: 9 frames at 24 fps (0.38 s), needs 17 (or set auto_scale_input)",
            "Warnings:",
            "  Only 2 media files: at least 10 are recommended, more is better",
        ]
    )


def test_parallel_workers_give_the_same_dataset(tmp_path):
    # x264 output is not bit-reproducible for frames as small as 64x64; it is from 128x128 up
    files = {f"{n}.mp4": clip(tmp_path, f"{n}.mp4", cut_at=n) for n in range(3)}
    serial = prepare_files(tmp_path / "one", files, workers=1, bucket=(128, 128))
    parallel = prepare_files(tmp_path / "two", files, workers=2, bucket=(128, 128))
    assert [s.content_hash for s in serial.samples] == [s.content_hash for s in parallel.samples]
    assert [s.id for s in parallel.samples] == ["0001_0", "0002_1", "0003_2"]


def test_rerun_replaces_the_prepared_folder(tmp_path):
    prepare_files(tmp_path, {"a.mp4": clip(tmp_path, "a.mp4"), "b.mp4": clip(tmp_path, "b.mp4")})
    again = prepare_files(tmp_path, {"c.mp4": clip(tmp_path, "c.mp4")})
    assert [s.source for s in again.samples] == ["c.mp4"]
    assert sorted(p.name for p in (tmp_path / "job" / "prepared" / "samples").iterdir()) == ["0001_c.mp4", "0001_c.wav"]


def test_progress_is_reported_per_sample(tmp_path, events):
    prepare_files(
        tmp_path, {"a.mp4": clip(tmp_path, "a.mp4"), "b.mp4": clip(tmp_path, "b.mp4")}, on_event=events.append
    )
    assert [(e.phase, e.done, e.total) for e in events if isinstance(e, Progress)] == [
        ("prepare", 0, 2),
        ("prepare", 1, 2),
        ("prepare", 2, 2),
    ]


def test_a_failed_run_leaves_no_prepared_dataset(tmp_path):
    prepare_files(tmp_path, {"a.mp4": clip(tmp_path, "a.mp4")}, debug_dataset=True)
    assert (tmp_path / "job" / "prepared" / "manifest.json").exists()
    with pytest.raises(DatasetError):
        prepare_files(tmp_path, {"a.mp4": clip(tmp_path, "short.mp4", frames=5)}, debug_dataset=True)
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == []
