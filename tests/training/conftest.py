"""Tiny end-to-end jobs: archives made with PyAV, the tiny model family, a shared encoding cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltxtune.specs.common import Family
from ltxtune.specs.plan import TrainingPlan
from ltxtune.events import RunSettings
from ltxtune.training.job import run_job
from tests.data.conftest import tiny_plan
from tests.data.media import make_image, make_video, make_zip

BUCKET = (128, 128)  # x264 is byte-reproducible from 128 px up, so pinned values stay pinned


def short(plan: TrainingPlan, steps: int, *, checkpoints: list[int] | None = None, previews: list[int] | None = None) -> TrainingPlan:
    """The same plan on the tiny family, `steps` long, with checkpoints and previews where asked."""
    return plan.with_family(Family.TINY).model_copy(
        update={
            "optimisation": plan.optimisation.model_copy(update={"steps": steps}),
            "checkpoints": plan.checkpoints.model_copy(update={"steps": checkpoints or [steps]}),
            "validation": plan.validation.model_copy(
                update={"at_steps": previews or [], "bucket": plan.dataset.bucket, "frames": 9}
            ),
        }
    )


@pytest.fixture(scope="session")
def archives(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("archives")
    media = root / "media"
    media.mkdir()
    a = make_video(media / "a.mp4", 160, 128, frames=17, fps=24, tone_hz=440)
    b = make_video(media / "b.mp4", 128, 160, frames=20, fps=24, tone_hz=660, textured=True)
    silent = make_video(media / "silent.mp4", 128, 128, frames=17, fps=24, audio=False)
    ref = make_video(media / "a_ref.mp4", 160, 128, frames=17, fps=24, audio=False, textured=True)
    image = make_image(media / "still.png", 160, 128)
    image2 = make_image(media / "still2.png", 128, 160, index=3)
    captions = {"a.txt": b"a square slides right", "b.txt": b"a square on grain"}
    return {
        "audio": make_zip(root / "audio.zip", {"a.mp4": a, "b.mp4": b, **captions}),
        "one": make_zip(root / "one.zip", {"a.mp4": a, "a.txt": captions["a.txt"]}),
        "silent": make_zip(root / "silent.zip", {"silent.mp4": silent, "silent.txt": b"a silent square"}),
        "v2v": make_zip(root / "v2v.zip", {"a.mp4": a, "a_ref.mp4": ref, "a.txt": captions["a.txt"]}),
        "images": make_zip(root / "images.zip", {"still.png": image, "still2.png": image2, "still.txt": b"a still"}),
        "reference": ref,
        "image": image,
    }


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def plan_for(archive: Path, endpoint: str = "fal-ai/ltx23-trainer-v2/t2v", **body) -> TrainingPlan:
    return tiny_plan(archive, endpoint, bucket=BUCKET, **body)


def settings(cache_dir: Path, **overrides) -> RunSettings:
    return RunSettings(cache_dir=cache_dir, allow_local_files=True, **{"log_every": 1, **overrides})


def run(plan: TrainingPlan, work: Path, cache_dir: Path, **kwargs):
    events = []
    outputs = run_job(plan, work, settings=kwargs.pop("settings", settings(cache_dir)), on_event=events.append, **kwargs)
    return outputs, events
