"""One `TrainingPlan` that every request flavour converts into.

The plan is plain data (pydantic, frozen; no torch, no disk, no network), round-trips through JSON
(`to_json` / `TrainingPlan.from_json`), and is the only input of everything downstream: dataset
preparation, training, outputs and prices.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ltxtune.specs.civitai import WorkflowRequest
from ltxtune.specs.common import Bucket, Family, Mode, bucket_for, bucket_for_area
from ltxtune.specs.fal import (
    LONG_NEGATIVE_PROMPT,
    FalI2VRequest,
    FalTrainerRequest,
    FalV2VRequest,
    FalVideoTrainerRequest,
)
from ltxtune.specs.pricing import Price, PriceTable, civitai_price, fal_price

CIVITAI_FRAMES = 89
CIVITAI_FPS = 24
DEFAULT_SEED = 42
# Fixed caption variants per sample when tokens are shuffled: enough variety, still cacheable.
SHUFFLE_VARIANTS = 4


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
    expected_count: int | None = Field(None, description="Civitai's trainingData.count; a mismatch is logged.")
    frames: int = Field(description="Frames per video sample, 8k+1. Images are single-frame samples.")
    fps: int
    bucket: Bucket | None = Field(None, description="Fixed bucket every clip is resized and cropped to (fal).")
    area_side: int | None = Field(
        None, description="Each clip keeps its aspect ratio at about area_side^2 pixels, sides multiples of 32 (Civitai)."
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
    init_from: str | None = Field(None, description="An existing LoRA to start from (Civitai continueFrom AIR, or a path from the CLI).")


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
    deliver_each: bool = Field(description="Every checkpoint is a delivered output (Civitai epochs); else only the last (fal).")


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
    flavour: Literal["fal", "civitai"]
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


def _ignored_warnings(fields: list[str]) -> list[str]:
    return [f"unknown field '{name}' ignored" for name in fields]


def _declared(request: FalTrainerRequest, name: str, default):
    """A field the endpoint's page declares, else `default` (never an ignored unknown field)."""
    return getattr(request, name) if name in type(request).model_fields else default


def _fal_mode(request: FalTrainerRequest) -> Mode:
    if isinstance(request, FalV2VRequest):
        return Mode.V2V
    if isinstance(request, (FalI2VRequest, FalVideoTrainerRequest)):
        return Mode.I2V
    return Mode.T2V


def _fal_validation_prompts(request: FalTrainerRequest) -> list[ValidationPrompt]:
    prompts = []
    for entry in request.validation:
        prompts.append(
            ValidationPrompt(
                prompt=entry.prompt,
                image_url=getattr(entry, "image_url", None),
                reference_video_url=getattr(entry, "reference_video_url", None),
            )
        )
    return prompts


def from_fal(endpoint: str, request: FalTrainerRequest, prices: PriceTable) -> TrainingPlan:
    """A fal request as a plan. fal returns the final LoRA only; previews are rendered at a quarter,
    half, three quarters and the end of the run. The pages name no optimiser or schedule: ltxtune
    uses AdamW with a linear decay, as Lightricks' trainer's example LoRA configs do."""
    steps = request.number_of_steps
    prompts = _fal_validation_prompts(request)
    dataset = DatasetRules(
        source_url=request.training_data_url,
        frames=request.number_of_frames,
        fps=request.frame_rate,
        bucket=bucket_for(request.resolution, request.aspect_ratio),
        auto_scale=request.auto_scale_input,
        split_scenes=request.split_input_into_scenes,
        scene_threshold_s=request.split_input_duration_threshold,
        audio=AudioRules(
            use=request.with_audio,
            normalize=request.audio_normalize,
            preserve_pitch=request.audio_preserve_pitch,
        ),
        captions=CaptionRules(trigger_phrase=request.trigger_phrase),
        reference_transform=_declared(request, "reference_transform", None),
    )
    validation = ValidationRules(
        prompts=prompts,
        negative_prompt=request.validation_negative_prompt,
        frames=request.validation_number_of_frames,
        fps=request.validation_frame_rate,
        bucket=bucket_for(request.validation_resolution, request.validation_aspect_ratio),
        stg_scale=request.stg_scale,
        audio=_declared(request, "generate_audio_in_validation", True),
        at_steps=evenly_spaced_steps(steps, 4) if prompts else [],
    )
    return TrainingPlan(
        flavour="fal",
        endpoint=endpoint,
        family=Family.LTX23,
        mode=_fal_mode(request),
        dataset=dataset,
        lora=LoraRules(rank=request.rank, alpha=request.rank),
        optimisation=Optimisation(
            steps=steps,
            learning_rate=request.learning_rate,
            scheduler="linear",
            optimizer="adamw",
            first_frame_p=_declared(request, "first_frame_conditioning_p", 0.0),
        ),
        checkpoints=Checkpoints(steps=[steps], deliver_each=False),
        validation=validation,
        outputs=Outputs(preview_reel=bool(prompts), debug_dataset=request.debug_dataset, checkpoint_loras=False),
        price=fal_price(endpoint, steps, prices),
        warnings=_ignored_warnings(request.ignored_fields),
    )


def from_civitai(request: WorkflowRequest, prices: PriceTable) -> TrainingPlan:
    """A Civitai training workflow as a plan.

    The page is silent on clip length and frame rate: ltxtune trains 89 frames at 24 fps (LTX-2's
    native rate), fits shorter clips to that count (ai-toolkit does not drop short clips), and does
    not split scenes. Audio is used when every clip has a track. Previews render at each saved
    checkpoint, square at `resolution`, with `samples.strength` as the LoRA weight.
    """
    step = request.step
    inputs = step.input
    warnings = _ignored_warnings(request.ignored_fields)
    checkpoint_steps = evenly_spaced_steps(inputs.steps, inputs.epochs)
    if len(checkpoint_steps) < inputs.epochs:
        warnings.append(
            f"{inputs.epochs} epochs over {inputs.steps} steps: only {len(checkpoint_steps)} distinct checkpoints can be saved"
        )
    trigger = inputs.triggerWord or ""
    dataset = DatasetRules(
        source_url=inputs.trainingData.sourceUrl,
        expected_count=inputs.trainingData.count,
        frames=CIVITAI_FRAMES,
        fps=CIVITAI_FPS,
        area_side=inputs.resolution,
        auto_scale=True,
        split_scenes=False,
        scene_threshold_s=30.0,
        audio=AudioRules(use=None),
        captions=CaptionRules(
            trigger_phrase=trigger,
            shuffle_tokens=inputs.shuffleTokens,
            keep_tokens=inputs.keepTokens,
            variants=SHUFFLE_VARIANTS if inputs.shuffleTokens else 1,
        ),
        flip=inputs.flipAugmentation,
    )
    prompts = [ValidationPrompt(prompt=prompt) for prompt in inputs.samples.prompts]
    scheduler = inputs.lrScheduler
    return TrainingPlan(
        flavour="civitai",
        endpoint="civitai",
        family=Family(inputs.ecosystem),
        mode=Mode.T2V,
        dataset=dataset,
        lora=LoraRules(rank=inputs.networkDim, alpha=inputs.networkAlpha, init_from=inputs.continueFrom),
        optimisation=Optimisation(
            steps=inputs.steps,
            learning_rate=inputs.lr,
            scheduler=scheduler,
            warmup_steps=max(1, round(inputs.steps * 0.05)) if scheduler == "constant_with_warmup" else 0,
            optimizer=inputs.optimizerType,
            noise_offset=inputs.noiseOffset,
        ),
        checkpoints=Checkpoints(steps=checkpoint_steps, deliver_each=True),
        validation=ValidationRules(
            prompts=prompts,
            negative_prompt=inputs.samples.negativePrompt or LONG_NEGATIVE_PROMPT,
            frames=CIVITAI_FRAMES,
            fps=CIVITAI_FPS,
            bucket=bucket_for_area(inputs.resolution, 1, 1),
            guidance_scale=inputs.samples.cfgScale,
            lora_strength=inputs.samples.strength,
            at_steps=checkpoint_steps if prompts else [],
        ),
        outputs=Outputs(preview_reel=False, debug_dataset=False, checkpoint_loras=True),
        price=civitai_price(inputs.steps, inputs.epochs, prices),
        warnings=warnings,
    )
