"""A fal trainer request as a `TrainingPlan`, and its price.

fal bills `unit price x billed units` USD, a successful run billing `max(100, number_of_steps)`
units; the v2v page gives no price, so it is billed like `fal-ai/ltx23-video-trainer`.
"""

from __future__ import annotations

from decimal import Decimal

from ltxtune.protocols.fal.request import FalI2VRequest, FalTrainerRequest, FalV2VRequest, FalVideoTrainerRequest
from ltxtune.specs.common import Family, Mode, bucket_for
from ltxtune.specs import plan as rules
from ltxtune.specs.plan import TrainingPlan
from ltxtune.specs.pricing import Price, PriceTable

NAME = "fal"
DATASET_FIELDS = {"source_field": "training_data_url", "auto_scale_field": "auto_scale_input"}
V2V_ENDPOINT = "fal-ai/ltx23-v2v-trainer"
V2V_PRICE_NOTE = "the v2v page gives no price; ltxtune bills it like fal-ai/ltx23-video-trainer"


def _declared(request: FalTrainerRequest, name: str, default):
    """A field the endpoint's page declares, else `default` (never an ignored unknown field)."""
    return getattr(request, name) if name in type(request).model_fields else default


def _fal_mode(request: FalTrainerRequest) -> Mode:
    if isinstance(request, FalV2VRequest):
        return Mode.V2V
    if isinstance(request, (FalI2VRequest, FalVideoTrainerRequest)):
        return Mode.I2V
    return Mode.T2V


def _fal_validation_prompts(request: FalTrainerRequest) -> list[rules.ValidationPrompt]:
    prompts = []
    for entry in request.validation:
        prompts.append(
            rules.ValidationPrompt(
                prompt=entry.prompt,
                image_url=getattr(entry, "image_url", None),
                reference_video_url=getattr(entry, "reference_video_url", None),
            )
        )
    return prompts


def plan_of(endpoint: str, request: FalTrainerRequest, prices: PriceTable) -> TrainingPlan:
    """A fal request as a plan. fal returns the final LoRA only; previews are rendered at a quarter,
    half, three quarters and the end of the run. The pages name no optimiser or schedule: ltxtune
    uses AdamW with a linear decay, as Lightricks' trainer's example LoRA configs do."""
    steps = request.number_of_steps
    prompts = _fal_validation_prompts(request)
    dataset = rules.DatasetRules(
        source_url=request.training_data_url,
        **DATASET_FIELDS,
        frames=request.number_of_frames,
        fps=request.frame_rate,
        bucket=bucket_for(request.resolution, request.aspect_ratio),
        auto_scale=request.auto_scale_input,
        split_scenes=request.split_input_into_scenes,
        scene_threshold_s=request.split_input_duration_threshold,
        audio=rules.AudioRules(
            use=request.with_audio,
            normalize=request.audio_normalize,
            preserve_pitch=request.audio_preserve_pitch,
        ),
        captions=rules.CaptionRules(trigger_phrase=request.trigger_phrase),
        reference_transform=_declared(request, "reference_transform", None),
    )
    validation = rules.ValidationRules(
        prompts=prompts,
        negative_prompt=request.validation_negative_prompt,
        frames=request.validation_number_of_frames,
        fps=request.validation_frame_rate,
        bucket=bucket_for(request.validation_resolution, request.validation_aspect_ratio),
        stg_scale=request.stg_scale,
        audio=_declared(request, "generate_audio_in_validation", True),
        at_steps=rules.evenly_spaced_steps(steps, 4) if prompts else [],
    )
    return TrainingPlan(
        flavour=NAME,
        endpoint=endpoint,
        family=Family.LTX23,
        mode=_fal_mode(request),
        dataset=dataset,
        lora=rules.LoraRules(rank=request.rank, alpha=request.rank),
        optimisation=rules.Optimisation(
            steps=steps,
            learning_rate=request.learning_rate,
            scheduler="linear",
            optimizer="adamw",
            first_frame_p=_declared(request, "first_frame_conditioning_p", 0.0),
        ),
        checkpoints=rules.Checkpoints(steps=[steps], deliver_each=False),
        validation=validation,
        outputs=rules.Outputs(preview_reel=bool(prompts), debug_dataset=request.debug_dataset, checkpoint_loras=False),
        price=fal_price(endpoint, steps, prices),
        warnings=rules.ignored_warnings(request.ignored_fields),
    )


def fal_price(endpoint: str, steps: int, table: PriceTable) -> Price:
    unit_price = Decimal(str(table.fal_usd_per_unit[endpoint]))
    units = max(table.fal_minimum_units, steps)
    amount = (unit_price * units).quantize(Decimal("0.000001"))
    return Price(
        amount=float(amount),
        currency="USD",
        billed_units=units,
        unit_price=float(unit_price),
        formula=f"{unit_price} USD x max({table.fal_minimum_units}, {steps} steps)",
        note=V2V_PRICE_NOTE if endpoint == V2V_ENDPOINT else "",
    )
