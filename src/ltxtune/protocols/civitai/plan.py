"""A Civitai training workflow as a `TrainingPlan`, and its price.

Civitai bills `steps x 0.75 + epochs x 50` Buzz, rounded half up, never below 80% of the default
configuration's price (3000 steps, 10 epochs: 2750 Buzz, so the floor is 2200).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from ltxtune.protocols.civitai.request import WorkflowRequest
from ltxtune.specs.common import LONG_NEGATIVE_PROMPT, Family, Mode, bucket_for_area
from ltxtune.specs import plan as rules
from ltxtune.specs.plan import TrainingPlan
from ltxtune.specs.pricing import Price, PriceTable

NAME = "civitai"
DATASET_FIELDS = {"source_field": "trainingData.sourceUrl"}
ENDPOINT = "civitai"
CIVITAI_FRAMES = 89
CIVITAI_FPS = 24
# Fixed caption variants per sample when tokens are shuffled: enough variety, still cacheable.
SHUFFLE_VARIANTS = 4


def plan_of(request: WorkflowRequest, prices: PriceTable) -> TrainingPlan:
    """A Civitai training workflow as a plan.

    The page is silent on clip length and frame rate: ltxtune trains 89 frames at 24 fps (LTX-2's
    native rate), fits shorter clips to that count (ai-toolkit does not drop short clips), and does
    not split scenes. Audio is used when every clip has a track. Previews render at each saved
    checkpoint, square at `resolution`, with `samples.strength` as the LoRA weight.
    """
    step = request.step
    inputs = step.input
    warnings = rules.ignored_warnings(request.ignored_fields)
    checkpoint_steps = rules.evenly_spaced_steps(inputs.steps, inputs.epochs)
    if len(checkpoint_steps) < inputs.epochs:
        warnings.append(
            f"{inputs.epochs} epochs over {inputs.steps} steps: only {len(checkpoint_steps)} distinct checkpoints can be saved"
        )
    trigger = inputs.triggerWord or ""
    dataset = rules.DatasetRules(
        source_url=inputs.trainingData.sourceUrl,
        **DATASET_FIELDS,
        expected_count=inputs.trainingData.count,
        frames=CIVITAI_FRAMES,
        fps=CIVITAI_FPS,
        area_side=inputs.resolution,
        auto_scale=True,
        split_scenes=False,
        scene_threshold_s=30.0,
        audio=rules.AudioRules(use=None),
        captions=rules.CaptionRules(
            trigger_phrase=trigger,
            shuffle_tokens=inputs.shuffleTokens,
            keep_tokens=inputs.keepTokens,
            variants=SHUFFLE_VARIANTS if inputs.shuffleTokens else 1,
        ),
        flip=inputs.flipAugmentation,
    )
    prompts = [rules.ValidationPrompt(prompt=prompt) for prompt in inputs.samples.prompts]
    scheduler = inputs.lrScheduler
    return TrainingPlan(
        flavour=NAME,
        endpoint=ENDPOINT,
        family=Family(inputs.ecosystem),
        mode=Mode.T2V,
        dataset=dataset,
        lora=rules.LoraRules(rank=inputs.networkDim, alpha=inputs.networkAlpha, init_from=inputs.continueFrom),
        optimisation=rules.Optimisation(
            steps=inputs.steps,
            learning_rate=inputs.lr,
            scheduler=scheduler,
            warmup_steps=max(1, round(inputs.steps * 0.05)) if scheduler == "constant_with_warmup" else 0,
            optimizer=inputs.optimizerType,
            noise_offset=inputs.noiseOffset,
        ),
        checkpoints=rules.Checkpoints(steps=checkpoint_steps, deliver_each=True),
        validation=rules.ValidationRules(
            prompts=prompts,
            negative_prompt=inputs.samples.negativePrompt or LONG_NEGATIVE_PROMPT,
            frames=CIVITAI_FRAMES,
            fps=CIVITAI_FPS,
            bucket=bucket_for_area(inputs.resolution, 1, 1),
            guidance_scale=inputs.samples.cfgScale,
            lora_strength=inputs.samples.strength,
            at_steps=checkpoint_steps if prompts else [],
        ),
        outputs=rules.Outputs(preview_reel=False, debug_dataset=False, checkpoint_loras=True),
        price=civitai_price(inputs.steps, inputs.epochs, prices),
        warnings=warnings,
    )


def _civitai_raw(steps: int, epochs: int, table: PriceTable) -> Decimal:
    return Decimal(str(table.civitai_buzz_per_step)) * steps + Decimal(str(table.civitai_buzz_per_epoch)) * epochs


def civitai_price(steps: int, epochs: int, table: PriceTable) -> Price:
    default = _civitai_raw(table.civitai_default_steps, table.civitai_default_epochs, table)
    floor = (default * Decimal(str(table.civitai_floor_fraction))).quantize(Decimal(1), ROUND_HALF_UP)
    raw = _civitai_raw(steps, epochs, table).quantize(Decimal(1), ROUND_HALF_UP)
    buzz = max(raw, floor)
    return Price(
        amount=float(buzz),
        currency="Buzz",
        billed_units=int(buzz),
        unit_price=table.civitai_buzz_per_step,
        formula=(
            f"max(round({steps} steps x {table.civitai_buzz_per_step} + {epochs} epochs x "
            f"{table.civitai_buzz_per_epoch}), floor {floor})"
        ),
        note="floor applied" if buzz > raw else "",
    )
