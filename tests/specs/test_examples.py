"""Every example request on the spec pages validates, and its plan carries the documented defaults."""

import json
from pathlib import Path

import pytest

from ltxtune.protocols import build_plan
from ltxtune.specs.common import Family, Mode
from ltxtune.protocols.fal.request import LONG_NEGATIVE_PROMPT, SHORT_NEGATIVE_PROMPT

EXAMPLES = Path(__file__).parents[2] / "examples"


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def test_t2v_page_example():
    plan = build_plan("fal-ai/ltx23-trainer-v2/t2v", example("fal-t2v.json"))
    assert (plan.family, plan.mode) == (Family.LTX23, Mode.T2V)
    assert plan.dataset.captions.trigger_phrase == "tronlog0"
    assert (plan.dataset.frames, plan.dataset.fps) == (89, 24)
    assert (plan.dataset.bucket.width, plan.dataset.bucket.height) == (768, 768)
    assert plan.dataset.auto_scale is False
    assert plan.dataset.split_scenes is True and plan.dataset.scene_threshold_s == 30.0
    assert plan.dataset.audio.use is None and plan.dataset.audio.normalize and plan.dataset.audio.preserve_pitch
    assert (plan.lora.rank, plan.lora.alpha) == (32, 32)
    assert (plan.optimisation.steps, plan.optimisation.learning_rate) == (2000, 0.0002)
    assert plan.optimisation.first_frame_p == 0.0
    assert [p.prompt for p in plan.validation.prompts] == ["tronlog0 spinning slowly on a dark background"]
    assert plan.validation.negative_prompt == LONG_NEGATIVE_PROMPT
    assert (plan.validation.frames, plan.validation.fps) == (89, 24)
    assert (plan.validation.bucket.width, plan.validation.bucket.height) == (960, 960)
    assert plan.validation.stg_scale == 1.0
    assert plan.checkpoints.steps == [2000] and plan.checkpoints.deliver_each is False
    assert plan.outputs.preview_reel is True and plan.outputs.debug_dataset is False
    assert (plan.price.amount, plan.price.currency, plan.price.billed_units) == (12.0, "USD", 2000)
    assert plan.warnings == []


def test_i2v_page_example():
    plan = build_plan("fal-ai/ltx23-trainer-v2/i2v", example("fal-i2v.json"))
    assert plan.mode == Mode.I2V
    assert plan.optimisation.first_frame_p == 0.5
    assert plan.validation.prompts[0].image_url == "https://example.com/start.png"
    assert (plan.dataset.fps, plan.validation.fps) == (24, 24)
    assert plan.price.amount == 4.8


def test_video_trainer_full_example():
    plan = build_plan("fal-ai/ltx23-video-trainer", example("fal-video-trainer.json"))
    assert plan.mode == Mode.I2V
    assert (plan.dataset.fps, plan.validation.fps) == (25, 25)
    assert plan.optimisation.first_frame_p == 0.5
    assert plan.validation.negative_prompt == SHORT_NEGATIVE_PROMPT
    assert plan.validation.audio is True
    assert plan.outputs.preview_reel is False
    assert plan.price.amount == 9.6


def test_video_trainer_required_example_gets_every_default():
    plan = build_plan("fal-ai/ltx23-video-trainer", {"training_data_url": ""})
    full = build_plan("fal-ai/ltx23-video-trainer", example("fal-video-trainer.json"))
    assert plan == full


def test_v2v_page_example():
    plan = build_plan("fal-ai/ltx23-v2v-trainer", example("fal-v2v.json"))
    assert plan.mode == Mode.V2V
    assert plan.optimisation.first_frame_p == 0.1
    assert (plan.dataset.frames, plan.dataset.fps, plan.validation.fps) == (89, 25, 25)
    assert plan.dataset.captions.trigger_phrase == "TOK"
    assert plan.dataset.reference_transform is None
    assert plan.price.amount == 9.6 and "no price" in plan.price.note


@pytest.mark.parametrize("name, family, lr", [("civitai-ltx2.json", Family.LTX2, 0.0002), ("civitai-ltx23.json", Family.LTX23, 0.0001)])
def test_civitai_page_examples(name, family, lr):
    plan = build_plan("civitai", example(name))
    assert (plan.flavour, plan.family, plan.mode) == ("civitai", family, Mode.T2V)
    assert plan.optimisation.learning_rate == lr
    assert (plan.optimisation.steps, plan.optimisation.scheduler, plan.optimisation.optimizer) == (3000, "cosine", "adamw8bit")
    assert (plan.lora.rank, plan.lora.alpha) == (32, 32)
    assert plan.dataset.expected_count == 4
    assert plan.dataset.area_side == 768 and plan.dataset.bucket is None
    assert plan.checkpoints.steps == list(range(300, 3001, 300)) and plan.checkpoints.deliver_each
    assert [p.prompt for p in plan.validation.prompts] == ["a video of TOK", "TOK moving in a garden"]
    assert plan.validation.at_steps == plan.checkpoints.steps
    assert (plan.price.amount, plan.price.currency) == (2750, "Buzz")


def test_civitai_continue_from_example():
    """The page's continueFrom snippet is a step fragment; with the required trainingData it validates."""
    body = {
        "steps": [
            {
                "$type": "training",
                "input": {
                    "engine": "ai-toolkit",
                    "ecosystem": "ltx2",
                    "continueFrom": "urn:air:ltx2:lora:civitai:123@456",
                    "steps": 1500,
                    "trainingData": {"type": "zip", "sourceUrl": "https://example.com/d.zip", "count": 4},
                },
            }
        ]
    }
    plan = build_plan("civitai", body)
    assert plan.lora.init_from == "urn:air:ltx2:lora:civitai:123@456"
    assert plan.optimisation.steps == 1500
    assert plan.price.amount == 2200  # 1500 x 0.75 + 10 x 50 = 1625, below the floor


def test_civitai_defaults_after_apply_defaults():
    body = {"steps": [{"$type": "training", "input": {
        "engine": "ai-toolkit", "ecosystem": "ltx23",
        "trainingData": {"type": "zip", "sourceUrl": "https://example.com/d.zip", "count": 12}}}]}
    plan = build_plan("civitai", body)
    assert plan.optimisation.steps == 3000 and len(plan.checkpoints.steps) == 10
    assert plan.optimisation.learning_rate == 0.0001
    assert (plan.optimisation.scheduler, plan.optimisation.optimizer, plan.optimisation.noise_offset) == ("cosine", "adamw8bit", 0.0)
    assert (plan.lora.rank, plan.lora.alpha, plan.lora.init_from) == (32, 32, None)
    assert plan.dataset.flip is False and plan.dataset.captions.shuffle_tokens is False
    assert plan.dataset.captions.keep_tokens == 0 and plan.dataset.captions.trigger_phrase == ""
    assert plan.validation.prompts == [] and plan.validation.at_steps == []
    assert plan.validation.guidance_scale is None and plan.validation.lora_strength == 1.0
    assert plan.price.amount == 2750
