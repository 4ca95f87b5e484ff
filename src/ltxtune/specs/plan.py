"""One `TrainingPlan` that every protocol's requests convert into (`ltxtune.protocols.*.plan`).

The plan is plain data (pydantic, frozen; no torch, no disk, no network), round-trips through JSON
(`to_json` / `TrainingPlan.from_json`), and is the only input of everything downstream: dataset
preparation, training, outputs and prices.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ltxtune.specs.common import Bucket, Family, Mode, bucket_for_area
from ltxtune.specs.pricing import Price

DEFAULT_SEED = 42


class _Plain(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AudioRules(_Plain):
    use: bool | None = Field(description="True: required on every clip. False: ignored. None: used only if every clip has a track.")
    normalize: bool = True
    preserve_pitch: bool = True


class CaptionRules(_Plain):
    trigger_phrase: str = ""
    shuffle_tokens: bool = False
    keep_tokens: int = Field(0, description="Leading comma-separated tags kept in place when shuffling.")
    variants: int = Field(1, description="Caption variants per sample (shuffled orders), each encoded once and cached.")


class DatasetRules(_Plain):
    source_url: str
    source_field: str = Field("the dataset URL", description="The request's name for source_url, as errors name it.")
    auto_scale_field: str | None = Field(
        None, description="The request field that fits short clips instead of skipping them, named in skip reasons."
    )
    expected_count: int | None = Field(None, description="How many clips the request says there are; a mismatch is logged.")
    frames: int = Field(description="Frames per video sample, 8k+1. Images are single-frame samples.")
    fps: int
    bucket: Bucket | None = Field(None, description="Fixed bucket every clip is resized and cropped to.")
    area_side: int | None = Field(
        None, description="Each clip keeps its aspect ratio at about area_side^2 pixels, sides multiples of 32."
    )
    auto_scale: bool
    split_scenes: bool
    scene_threshold_s: float
    audio: AudioRules
    captions: CaptionRules
    flip: bool = False
    reference_transform: Literal["canny", "grayscale", "blur"] | None = None

    @model_validator(mode="after")
    def _one_sizing_rule(self) -> "DatasetRules":
        if (self.bucket is None) == (self.area_side is None):
            raise ValueError("exactly one of bucket and area_side must be set")
        return self

    def bucket_for_clip(self, width: int, height: int) -> Bucket:
        """The bucket a clip of this size is fitted to."""
        if self.bucket is not None:
            return self.bucket
        return bucket_for_area(self.area_side, width, height)


class LoraRules(_Plain):
    rank: int
    alpha: float
    init_from: str | None = Field(None, description="An existing LoRA to start from: a local path (the API resolves ids to paths).")


class Optimisation(_Plain):
    steps: int
    learning_rate: float
    scheduler: Literal["constant", "constant_with_warmup", "cosine", "linear", "step"]
    warmup_steps: int = 0
    optimizer: Literal["adamw8bit", "adamw", "adafactor", "prodigy"]
    noise_offset: float = 0.0
    first_frame_p: float = Field(0.0, description="Probability the first latent frame is held clean as a condition.")
    audio_loss_weight: float = 1.0
    batch_size: int = 1
    seed: int = DEFAULT_SEED


class Checkpoints(_Plain):
    steps: list[int] = Field(description="Steps after which a LoRA is saved; the last is always the final step.")
    deliver_each: bool = Field(description="Every checkpoint is a delivered output (epochs); else only the last.")


class ValidationPrompt(_Plain):
    prompt: str
    image_url: str | None = None
    reference_video_url: str | None = None


class ValidationRules(_Plain):
    prompts: list[ValidationPrompt] = Field(default_factory=list)
    negative_prompt: str
    frames: int
    fps: int
    bucket: Bucket
    guidance_scale: float | None = Field(None, description="None: the model family's default.")
    stg_scale: float = 1.0
    lora_strength: float = 1.0
    audio: bool = Field(True, description="Generate audio in previews when the run trains audio.")
    at_steps: list[int] = Field(default_factory=list, description="Steps after which previews are rendered.")


class Outputs(_Plain):
    preview_reel: bool
    debug_dataset: bool
    checkpoint_loras: bool


class TrainingPlan(_Plain):
    flavour: str = Field(description="The protocol whose request this plan was made from.")
    endpoint: str
    family: Family
    mode: Mode
    dataset: DatasetRules
    lora: LoraRules
    optimisation: Optimisation
    checkpoints: Checkpoints
    validation: ValidationRules
    outputs: Outputs
    price: Price
    warnings: list[str] = Field(default_factory=list)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainingPlan":
        return cls.model_validate_json(text)

    def with_family(self, family: Family) -> "TrainingPlan":
        """The same plan on another model family (e.g. `tiny` for a weightless run)."""
        return self.model_copy(update={"family": family})


def evenly_spaced_steps(steps: int, count: int) -> list[int]:
    """`count` steps spread evenly over a run, ending on the last (3000 steps, 10 -> 300, 600, ... 3000)."""
    return sorted({max(1, round(steps * i / count)) for i in range(1, count + 1)})


def ignored_warnings(fields: list[str]) -> list[str]:
    """The plan warnings for request fields that were accepted and ignored."""
    return [f"unknown field '{name}' ignored" for name in fields]
