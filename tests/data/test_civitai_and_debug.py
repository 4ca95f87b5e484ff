"""Civitai rules (area buckets, count, trigger, shuffling, flips) and the debug archive."""

import json
import zipfile

import av

from ltxtune.data import DEBUG_ARCHIVE, PreparedDataset, write_debug_archive
from ltxtune.specs.common import bucket_for_area
from tests.data.conftest import prepare_files
from tests.data.media import make_video


def clip(tmp_path, name, width=128, height=72, **kwargs):
    kwargs.setdefault("frames", 20)
    return make_video(tmp_path / "media" / name, width, height, **kwargs)


def test_civitai_dataset_rules(tmp_path, events):
    files = {
        "a.mp4": clip(tmp_path, "a.mp4"),
        "a.txt": "red car, coastal road, sunset, wide shot",
        "phone.mp4": clip(tmp_path, "phone.mp4", rotation=-90),
        "b.mp4": clip(tmp_path, "b.mp4", frames=9),  # shorter: always fitted (auto scale)
    }
    prepared = prepare_files(
        tmp_path,
        files,
        "civitai",
        on_event=events.append,
        count=4,
        resolution=256,
        triggerWord="TOK",
        shuffleTokens=True,
        keepTokens=1,
        flipAugmentation=True,
    )
    assert prepared.skipped == ()
    assert [(s.source, s.width, s.height) for s in prepared.samples] == [
        ("a.mp4", 352, 192),
        ("b.mp4", 352, 192),
        ("phone.mp4", 192, 352),
    ]
    assert bucket_for_area(256, 128, 72).label == "352x192"
    assert prepared.buckets == {"352x192": 2, "192x352": 1}
    assert "trainingData.count is 4, but the archive holds 3 media files" in prepared.warnings
    assert "trainingData.count is 4, but the archive holds 3 media files" in events.logs
    first = prepared.samples[0]
    assert len(first.captions) == 4 and first.captions[0] == "TOK, red car, coastal road, sunset, wide shot"
    assert all(c.startswith("TOK, red car, ") for c in first.captions)
    assert prepared.samples[1].captions == ("TOK",)
    assert all(s.flips == (False, True) for s in prepared.samples)
    assert prepared.samples[1].span == (0.0, 0.375)


def test_debug_archive(tmp_path):
    files = {"a.mp4": clip(tmp_path, "a.mp4"), "a.txt": "a caption"}
    prepared = prepare_files(tmp_path, files, debug_dataset=True, trigger_phrase="TOK")
    archive_path = tmp_path / "job" / DEBUG_ARCHIVE
    with zipfile.ZipFile(archive_path) as archive:
        assert sorted(archive.namelist()) == [
            "manifest.json",
            "samples/0001_a.mp4",
            "samples/0001_a.txt",
            "samples/0001_a.wav",
        ]
        assert archive.read("samples/0001_a.txt").decode() == "TOK a caption\n"
        assert json.loads(archive.read("manifest.json")) == prepared.to_dict()
        archive.extract("samples/0001_a.mp4", tmp_path / "check")
    with av.open(str(tmp_path / "check" / "samples" / "0001_a.mp4")) as clip_file:
        assert len(clip_file.streams.audio) == 1 and clip_file.streams.audio[0].codec_context.name == "aac"
        assert clip_file.streams.audio[0].rate == 16000 and clip_file.streams.audio[0].channels == 2
        assert sum(1 for _ in clip_file.decode(video=0)) == 17
    again = write_debug_archive(PreparedDataset.load(tmp_path / "job" / "prepared"), tmp_path / "elsewhere" / "d.zip")
    assert zipfile.ZipFile(again).namelist() == zipfile.ZipFile(archive_path).namelist()


def test_no_debug_archive_unless_asked(tmp_path):
    prepare_files(tmp_path, {"a.mp4": clip(tmp_path, "a.mp4")})
    assert not (tmp_path / "job" / DEBUG_ARCHIVE).exists()
