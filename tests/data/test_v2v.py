"""Video-to-video: target + `_ref` reference pairs, fitted identically; derived references."""

import numpy as np
import pytest
from PIL import Image

from ltxtune.errors import ErrorKind
from ltxtune.data import DatasetError
from tests.data.conftest import V2V, prepare_files
from tests.data.media import frame_indices, make_image, make_video, read_frames


def clip(tmp_path, name, **kwargs):
    kwargs.setdefault("frames", 20)
    return make_video(tmp_path / "media" / name, kwargs.pop("width", 128), kwargs.pop("height", 72), **kwargs)


def test_pairs_are_fitted_identically(tmp_path):
    files = {
        "clips/clip01.mp4": clip(tmp_path, "t1.mp4"),
        "clips/clip01_ref.mp4": clip(tmp_path, "r1.mp4", width=192, height=108, audio=False, cut_at=0),
        "clips/clip01.txt": "make it orange",
        "clips/clip02.mov": clip(tmp_path, "t2.mov"),
        "clips/clip02_REF.mkv": clip(tmp_path, "r2.mkv", audio=False),
    }
    prepared = prepare_files(tmp_path, files, V2V, trigger_phrase="TOK")
    assert prepared.mode == "v2v" and prepared.audio is True  # the targets' sound decides
    assert [(s.source, s.reference, s.captions) for s in prepared.samples] == [
        ("clips/clip01.mp4", "samples/0001_clip01_ref.mp4", ("TOK make it orange",)),
        ("clips/clip02.mov", "samples/0002_clip02_ref.mp4", ("TOK",)),
    ]
    for sample in prepared.samples:
        target, reference = read_frames(prepared.path(sample.media)), read_frames(prepared.path(sample.reference))
        assert target.shape == reference.shape == (17, 64, 64, 3)
        assert (
            frame_indices(prepared.path(sample.reference))
            == frame_indices(prepared.path(sample.media))
            == list(range(17))
        )
    reference = read_frames(prepared.path(prepared.samples[0].reference))
    assert (reference[:, 4, 32, 0] > 150).all()  # the reference is the orange one


def test_no_references_explains_the_convention(tmp_path):
    files = {"a.mp4": clip(tmp_path, "a.mp4"), "b.mp4": clip(tmp_path, "b.mp4")}
    with pytest.raises(DatasetError) as caught:
        prepare_files(tmp_path, files, V2V)
    assert caught.value.kind is ErrorKind.CONTENT
    assert caught.value.message == (
        "Video-to-video training needs a reference for every clip, and none of the 2 has one: name each reference "
        "after its target with _ref before the extension, in the same folder (clips/clip01.mp4 + "
        "clips/clip01_ref.mp4, caption in clips/clip01.txt). Or set reference_transform (canny, grayscale or blur) "
        "to derive references from the clips."
    )


def test_unpaired_files_are_skipped(tmp_path):
    files = {
        "a.mp4": clip(tmp_path, "a.mp4"),
        "a_ref.mp4": clip(tmp_path, "ar.mp4"),
        "b.mp4": clip(tmp_path, "b.mp4"),
        "lonely_ref.mp4": clip(tmp_path, "l.mp4"),
    }
    prepared = prepare_files(tmp_path, files, V2V)
    assert [s.source for s in prepared.samples] == ["a.mp4"]
    assert [(s.source, s.reason) for s in prepared.skipped] == [
        ("lonely_ref.mp4", "reference without a target: expected lonely.<ext> beside it"),
        (
            "b.mp4",
            "no reference clip: expected b_ref.mp4 beside it (name each reference after its target with _ref "
            "before the extension, in the same folder (clips/clip01.mp4 + clips/clip01_ref.mp4, caption in clips/clip01.txt))",
        ),
    ]
    assert prepared.warnings == ("Only 2 media files: at least 10 are recommended, more is better",)


def test_short_reference_is_skipped(tmp_path):
    files = {
        "a.mp4": clip(tmp_path, "a.mp4"),
        "a_ref.mp4": clip(tmp_path, "ar.mp4", frames=9),
        "b.mp4": clip(tmp_path, "b.mp4"),
        "b_ref.mp4": clip(tmp_path, "br.mp4"),
    }
    prepared = prepare_files(tmp_path, files, V2V)
    assert [s.source for s in prepared.samples] == ["b.mp4"]
    assert [(s.source, s.reason) for s in prepared.skipped] == [
        ("a.mp4", "reference a_ref.mp4 is 0.38 s long, the sample needs 0.00-0.71 s")
    ]


@pytest.mark.parametrize("transform", ["canny", "grayscale", "blur"])
def test_references_derived_from_targets(tmp_path, transform):
    files = {"a.mp4": clip(tmp_path, "a.mp4", width=384, height=216)}
    prepared = prepare_files(tmp_path, files, V2V, reference_transform=transform, bucket=(192, 192))
    sample = prepared.samples[0]
    assert sample.reference == "samples/0001_a_ref.mp4"
    target, reference = (
        read_frames(prepared.path(sample.media)).astype(int),
        read_frames(prepared.path(sample.reference)).astype(int),
    )
    assert reference.shape == target.shape == (17, 192, 192, 3)
    if transform == "grayscale":
        assert np.abs(reference[..., 0] - reference[..., 2]).max() <= 3
        assert np.abs(target[..., 0] - target[..., 2]).max() > 100
    elif transform == "canny":
        assert ((reference > 60) & (reference < 190)).mean() < 0.05  # black, with white edges
        assert 0.005 < (reference > 190).mean() < 0.2
    else:
        # sigma 2 px at 192 px: sharp steps become ramps
        assert np.abs(np.diff(reference, axis=2)).max() < np.abs(np.diff(target, axis=2)).max() / 2


def test_image_pairs_and_derived_image_references(tmp_path):
    files = {
        "a.png": make_image(tmp_path / "a.png", 96, 64),
        "a_ref.jpg": make_image(tmp_path / "ar.jpg", 64, 96),
        "b.png": make_image(tmp_path / "b.png"),
    }
    prepared = prepare_files(tmp_path, files, V2V, reference_transform="grayscale")
    assert [(s.source, s.reference) for s in prepared.samples] == [
        ("a.png", "samples/0001_a_ref.png"),
        ("b.png", "samples/0002_b_ref.png"),
    ]
    for sample in prepared.samples:
        assert Image.open(prepared.path(sample.reference)).size == (64, 64)
    derived = np.asarray(Image.open(prepared.path("samples/0002_b_ref.png"))).astype(int)
    assert np.abs(derived[..., 0] - derived[..., 2]).max() == 0
