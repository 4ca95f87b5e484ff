"""What a finished run delivers besides the LoRA weights: its metadata and the inference config."""

from __future__ import annotations

import json
from pathlib import Path

from ltxtune import __version__
from ltxtune.data.manifest import PreparedDataset
from ltxtune.models.families import ModelFamily
from ltxtune.specs.plan import TrainingPlan

TRAINING_TYPES = {"t2v": "text-to-video", "i2v": "image-to-video", "v2v": "video-to-video"}
BASE_MODELS = {"ltx2": "Lightricks/LTX-2 (19B)", "ltx23": "Lightricks/LTX-2.3 (22B)", "tiny": "ltxtune tiny (random, for tests)"}


def dataset_summary(prepared: PreparedDataset) -> dict:
    return {
        "kind": prepared.kind,
        "samples": len(prepared.samples),
        "skipped": len(prepared.skipped),
        "buckets": dict(prepared.buckets),
        "frames": prepared.frames,
        "fps": prepared.fps,
        "audio": prepared.audio,
    }


def lora_metadata(plan: TrainingPlan, prepared: PreparedDataset, step: int) -> dict[str, str]:
    """safetensors metadata (strings only): enough to know what a LoRA file is without its job."""
    return {
        "format": "comfyui",
        "ltxtune_version": __version__,
        "family": plan.family.value,
        "base_model": BASE_MODELS[plan.family.value],
        "mode": plan.mode.value,
        "rank": str(plan.lora.rank),
        "alpha": str(plan.lora.alpha),
        "alpha_folded": "true",
        "trigger_phrase": plan.dataset.captions.trigger_phrase,
        "steps": str(step),
        "total_steps": str(plan.optimisation.steps),
        "learning_rate": str(plan.optimisation.learning_rate),
        "dataset": json.dumps(dataset_summary(prepared)),
    }


def write_config(path: Path, plan: TrainingPlan, family: ModelFamily, prepared: PreparedDataset, lora_name: str,
                 *, memory: dict | None = None, lora_check: dict | None = None) -> Path:
    """The `config_file` output: how to set up inference with this LoRA; also, as `training_memory`, the
    memory preset it was trained with (the LoRA itself is the same whatever the preset), and the LoRA
    check's report."""
    validation = plan.validation
    config = {
        "lora_file": lora_name,
        "trigger_phrase": plan.dataset.captions.trigger_phrase,
        "training_type": TRAINING_TYPES[plan.mode.value],
        "family": plan.family.value,
        "base_model": BASE_MODELS[plan.family.value],
        "rank": plan.lora.rank,
        "alpha": plan.lora.alpha,
        "steps": plan.optimisation.steps,
        "audio": prepared.audio,
        "recommended_lora_scale": validation.lora_strength,
        "inference": {
            "num_frames": validation.frames,
            "frame_rate": validation.fps,
            "width": validation.bucket.width,
            "height": validation.bucket.height,
            "guidance_scale": validation.guidance_scale or family.default_guidance_scale,
            "stg_scale": validation.stg_scale,
            "negative_prompt": validation.negative_prompt,
            "first_frame_image": plan.mode.value == "i2v",
            "reference_video": plan.mode.value == "v2v",
        },
        "dataset": dataset_summary(prepared),
        "ltxtune_version": __version__,
    }
    if memory is not None:
        config["training_memory"] = memory
    if lora_check is not None:
        config["lora_check"] = lora_check
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path
