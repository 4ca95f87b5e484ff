"""A whole training job: prepare, cache, train, previews, outputs.

The CLI (`ltxtune train`) and the service's worker both call `run_job`. Running it again on the
same `work_dir` after a crash resumes: the prepared dataset and the caches are reused and training
continues from the last saved state.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ltxtune import __version__
from ltxtune.data.debug import DEBUG_ARCHIVE
from ltxtune.data.errors import DatasetError
from ltxtune.data.fetch import fetch_file
from ltxtune.data.manifest import MANIFEST, PreparedDataset
from ltxtune.data.prepare import prepare_dataset
from ltxtune.models.families import ModelFamily, get_family
from ltxtune.models.family_check import prepare_source
from ltxtune.models.load import load_transformer
from ltxtune.models.memory import apply_memory_preset, place_trainable, resolve_memory
from ltxtune.models.planner import estimate_memory, memory_summary_lines
from ltxtune.models.lora import LoraMismatchError, inject_lora, load_lora_into, lora_state_dict_comfy, save_lora
from ltxtune.models.lora_check import LoraCheckFailed, check_lora
from ltxtune.specs.plan import TrainingPlan
from ltxtune.threads import apply_thread_policy
from ltxtune.training.cache import Cache, build_examples, weights_id
from ltxtune.events import (
    CheckpointSaved,
    JobOutputs,
    LogLine,
    OnEvent,
    RunSettings,
    ShouldStop,
    ignore_event,
    never_stop,
)
from ltxtune.training.loop import LoopSettings, train
from ltxtune.training.outputs import lora_metadata, write_config
from ltxtune.training.previews import Previews
from ltxtune.training.speed import apply_speed, eager_blocks, resolve_speed
from ltxtune.training.strategies import strategy_for


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _prepared(plan: TrainingPlan, work_dir: Path, family: ModelFamily, settings: RunSettings, on_event: OnEvent, should_stop: ShouldStop) -> PreparedDataset:
    prepared_dir = work_dir / "prepared"
    if (prepared_dir / MANIFEST).exists():
        on_event(LogLine("reusing the prepared dataset of an earlier attempt"))
        return PreparedDataset.load(prepared_dir)
    return prepare_dataset(
        plan,
        work_dir,
        audio_sample_rate=family.audio_sample_rate,
        allow_local_files=settings.allow_local_files,
        allow_private_urls=settings.allow_private_urls,
        on_event=on_event,
        should_stop=should_stop,
    )


def _fingerprint(plan: TrainingPlan, family: ModelFamily, prepared: PreparedDataset) -> str:
    """What a saved training state must match to be resumed: the same plan, weights and data."""
    parts = [plan.model_dump_json(exclude={"price", "warnings"}), weights_id(family)]
    parts += [sample.content_hash for sample in prepared.samples]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _init_lora(plan: TrainingPlan, transformer: torch.nn.Module, family: ModelFamily, on_event: OnEvent) -> None:
    source = plan.lora.init_from
    if source is None:
        return
    path = Path(source.removeprefix("file://"))
    if not path.is_file():
        raise DatasetError(f"continueFrom {source!r} is not a LoRA this server can find")
    try:
        loaded = load_lora_into(transformer, path, family=family.name)
    except LoraMismatchError as error:
        raise DatasetError(f"continueFrom: {error}") from None
    on_event(LogLine(f"starting from the LoRA {path.name} ({len(loaded.modules)} modules, rank {loaded.rank})"))


def run_job(
    plan: TrainingPlan,
    work_dir: Path,
    *,
    settings: RunSettings,
    on_event: OnEvent = ignore_event,
    should_stop: ShouldStop = never_stop,
) -> JobOutputs:
    work_dir = Path(work_dir)
    outputs_dir = work_dir / "outputs"
    outputs_dir.mkdir(parents=True, exist_ok=True)
    family = get_family(plan.family.value)
    prepare_source(family, log=lambda line: on_event(LogLine(line)))  # wrong or missing weights stop the job here
    device = pick_device(settings.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    on_event(LogLine(f"ltxtune {__version__}: {plan.endpoint} ({plan.mode.value}) on {family.title}, {device.type}"))
    on_event(LogLine(apply_thread_policy(settings.cpu_slots, settings.threads).describe()))
    memory = resolve_memory(settings.memory, plan, family, device)
    on_event(LogLine(f"memory preset {memory.describe()}"))
    estimate = memory.estimate or estimate_memory(plan, family, memory.preset, offload_blocks=memory.offload_blocks,
                                                  device_type=device.type)
    for line in memory_summary_lines(estimate):
        on_event(LogLine(line))
    for warning in plan.warnings:
        on_event(LogLine(warning, "WARNING"))

    prepared = _prepared(plan, work_dir, family, settings, on_event, should_stop)
    previews = Previews.for_plan(plan, family, prepared, work_dir, device, dtype, fetch=lambda url, dest, field: fetch_file(
        url, dest, field=field, allow_local_files=settings.allow_local_files, allow_private_urls=settings.allow_private_urls))
    examples = build_examples(family, prepared, plan.dataset.flip, Cache(settings.cache_dir), device, dtype, on_event,
                              also_with_text_encoder=previews.encode_prompts if previews.needs_text_encoder else None,
                              memory=memory.preset)

    transformer = load_transformer(family, "cpu", dtype)  # the preset decides what reaches the device
    apply_memory_preset(transformer, memory.preset, device=device, offload_blocks=memory.offload_blocks, compute_dtype=dtype)
    with torch.random.fork_rng():  # LoRA A matrices are drawn from the global generator
        torch.manual_seed(plan.optimisation.seed)
        inject_lora(transformer, plan.lora.rank, plan.lora.alpha)
    _init_lora(plan, transformer, family, on_event)
    place_trainable(transformer, device)
    checkpointing = settings.gradient_checkpointing
    if checkpointing is None:
        # The real models need it for long clips; tiny runs are faster without. Offload saves device memory
        # only with it (otherwise autograd keeps every block's weights alive until the backward pass).
        checkpointing = not family.is_tiny or memory.preset.offload
    speed = apply_speed(transformer, resolve_speed(settings.speed, device=device, is_tiny=family.is_tiny,
                                                   num_blocks=len(transformer.transformer_blocks),
                                                   gradient_checkpointing=checkpointing), device, on_event)

    checkpoint_steps = plan.checkpoints.steps
    checkpoints: dict[int, CheckpointSaved] = {}

    def lora_name(index: int) -> str:
        return f"epoch-{index:02d}.safetensors" if plan.checkpoints.deliver_each else "lora.safetensors"

    def on_checkpoint(step: int) -> None:
        with eager_blocks(transformer):
            samples = previews.render(transformer, step) if step in plan.validation.at_steps else ()
        if step not in checkpoint_steps:
            return
        index = checkpoint_steps.index(step) + 1
        path = save_lora(outputs_dir / lora_name(index), lora_state_dict_comfy(transformer), lora_metadata(plan, prepared, step))
        saved = CheckpointSaved(index=index, step=step, lora_path=path, sample_paths=tuple(samples))
        checkpoints[index] = saved
        if plan.checkpoints.deliver_each:
            on_event(saved)

    strategy = strategy_for(plan.mode.value, plan.optimisation.first_frame_p, plan.optimisation.audio_loss_weight, plan.optimisation.noise_offset)
    loop_settings = LoopSettings(device=device, dtype=dtype, state_dir=work_dir / "state", log_every=settings.log_every,
                                 state_every=settings.state_every, use_cross_timestep=family.use_cross_timestep,
                                 speed=speed, lora_rank=plan.lora.rank)
    losses = train(plan, transformer, examples, strategy, loop_settings, fingerprint=_fingerprint(plan, family, prepared),
                   on_event=on_event, should_stop=should_stop, on_checkpoint=on_checkpoint)

    for index, step in enumerate(checkpoint_steps, 1):  # saved before a resume: found on disk
        if index not in checkpoints:
            checkpoints[index] = CheckpointSaved(index=index, step=step, lora_path=outputs_dir / lora_name(index),
                                                 sample_paths=previews.rendered(step))
    final = checkpoints[len(checkpoint_steps)]
    lora_path = final.lora_path
    if plan.checkpoints.deliver_each:
        lora_path = outputs_dir / "lora.safetensors"
        lora_path.write_bytes(final.lora_path.read_bytes())
    report = check_lora(lora_path, family=family.name)
    for line in report.summary_lines():
        on_event(LogLine(line, "INFO" if report.ok else "ERROR"))
    config_path = write_config(outputs_dir / "config.json", plan, family, prepared, lora_path.name,
                               memory=memory.as_config(), lora_check=report.as_json())
    if not report.ok:
        raise LoraCheckFailed(report)  # a JobError: the job fails, is not retried and is billed 0
    reel_path = previews.reel(outputs_dir / "validation_reel.mp4") if plan.outputs.preview_reel else None
    debug_path = work_dir / DEBUG_ARCHIVE if plan.outputs.debug_dataset else None  # written by prepare_dataset
    on_event(LogLine(f"done: {len(losses)} steps, final loss {losses[-1]:.4f}" if losses else "done"))
    return JobOutputs(lora_path=lora_path, config_path=config_path, reel_path=reel_path, debug_dataset_path=debug_path,
                      checkpoints=tuple(checkpoints[i] for i in sorted(checkpoints)), losses=tuple(losses))
