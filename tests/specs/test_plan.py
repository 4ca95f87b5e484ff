import json
import subprocess
import sys

import pytest

from ltxtune.protocols import build_plan
from ltxtune.specs.common import Family, bucket_for_area, snap_frames_down
from ltxtune.specs.plan import TrainingPlan, evenly_spaced_steps


def test_plan_round_trips_through_json():
    plan = build_plan("civitai", {"steps": [{"$type": "training", "input": {
        "engine": "ai-toolkit", "ecosystem": "ltx2", "triggerWord": "TOK", "samples": {"prompts": ["TOK"]},
        "trainingData": {"type": "zip", "sourceUrl": "https://e/d.zip", "count": 4}}}]})
    text = plan.to_json()
    assert TrainingPlan.from_json(text) == plan
    assert json.loads(text)["family"] == "ltx2"


def test_with_family_keeps_everything_else():
    plan = build_plan("fal-ai/ltx23-trainer-v2/t2v", {"training_data_url": "u"})
    tiny = plan.with_family(Family.TINY)
    assert tiny.family == Family.TINY and tiny.model_copy(update={"family": plan.family}) == plan


def test_plan_is_frozen():
    plan = build_plan("fal-ai/ltx23-trainer-v2/t2v", {"training_data_url": "u"})
    with pytest.raises(Exception):
        plan.optimisation.steps = 5


@pytest.mark.parametrize("side, size, bucket", [
    (768, (1920, 1080), (1024, 576)),
    (768, (1080, 1920), (576, 1024)),
    (768, (640, 640), (768, 768)),
    (512, (1440, 1080), (576, 448)),
    (768, (1280, 720), (1024, 576)),
])
def test_civitai_area_buckets_keep_aspect(side, size, bucket):
    result = bucket_for_area(side, *size)
    assert (result.width, result.height) == bucket
    assert result.width % 32 == 0 and result.height % 32 == 0


def test_civitai_plan_buckets_per_clip():
    plan = build_plan("civitai", {"steps": [{"$type": "training", "input": {
        "engine": "ai-toolkit", "ecosystem": "ltx23", "resolution": 512,
        "trainingData": {"type": "zip", "sourceUrl": "https://e/d.zip", "count": 4}}}]})
    assert plan.dataset.bucket_for_clip(1920, 1080).label == "672x384"
    assert plan.validation.bucket.label == "512x512"


def test_fal_plan_bucket_is_fixed():
    plan = build_plan("fal-ai/ltx23-trainer-v2/t2v", {"training_data_url": "u", "resolution": "medium", "aspect_ratio": "16:9"})
    assert plan.dataset.bucket_for_clip(1080, 1920).label == "768x448"


def test_checkpoint_steps():
    assert evenly_spaced_steps(3000, 10) == list(range(300, 3001, 300))
    assert evenly_spaced_steps(1000, 3) == [333, 667, 1000]
    assert evenly_spaced_steps(5, 10) == [1, 2, 3, 4, 5]


def test_too_many_epochs_for_the_steps_is_a_warning():
    plan = build_plan("civitai", {"steps": [{"$type": "training", "input": {
        "engine": "ai-toolkit", "ecosystem": "ltx23", "steps": 5, "epochs": 10,
        "trainingData": {"type": "zip", "sourceUrl": "https://e/d.zip", "count": 4}}}]})
    assert plan.checkpoints.steps == [1, 2, 3, 4, 5]
    assert plan.warnings == ["10 epochs over 5 steps: only 5 distinct checkpoints can be saved"]


def test_snap_frames_down():
    assert [snap_frames_down(n) for n in (9, 16, 17, 88, 89, 121)] == [9, 9, 17, 81, 89, 121]


@pytest.mark.parametrize("module", ["ltxtune.specs", "ltxtune.specs.plan", "ltxtune.specs.pricing", "ltxtune.events"])
def test_front_door_does_not_import_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
