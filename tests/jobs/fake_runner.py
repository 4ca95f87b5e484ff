"""A fast, honest stand-in for `ltxtune.training.job:run_job`, for the protocol tests.

It keeps the trainer's contract: emits LogLine / Progress / CheckpointSaved events, checks
`should_stop` every step (raising Stopped), keeps its training state in `work_dir/state.json`
(every 10 steps and at every checkpoint) and resumes from it, raises DatasetError for a bad
dataset, and returns JobOutputs with small files. The real trainer's resume is tested in
tests/training.

Behaviour is steered by query parameters of the dataset URL:
    run_s=1.0          wall time of the whole run (spread over its steps)
    dataset=bad        DatasetError 422 "All training videos are too short to be trainable"
    dataset=missing    DatasetError 400 "trainingData.sourceUrl not reachable"
    crash=once|always  the process kills itself (SIGKILL) halfway, on the first / every run
    error=once|always  raises RuntimeError("CUDA out of memory ...") halfway
    disk_full=oserror|torch  from halfway on, every file write fails as on a full disk (ENOSPC, or
                       torch's checkpoint writer's error, which carries no errno)
"""

from __future__ import annotations

import hashlib
import errno
import json
import os
import signal
import time
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ltxtune.events import CheckpointSaved, JobOutputs, LogLine, Progress, Stopped

def _dataset_error(message: str, status: int) -> Exception:
    """The real `ltxtune.data.errors.DatasetError`, imported only when needed (the data package
    imports PyAV and numpy, half a second this fake otherwise does not spend)."""
    from ltxtune.data.errors import DatasetError
    from ltxtune.errors import ErrorKind

    return DatasetError(message, ErrorKind.SOURCE if status == 400 else ErrorKind.CONTENT)


STATE_EVERY = 10
DISK_FULL = {"as": None}  # set halfway by the disk_full knob


def _knobs(url: str) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(urlsplit(url).query).items()}


def _write(path: Path, data: bytes) -> Path:
    if DISK_FULL["as"] == "oserror":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    if DISK_FULL["as"] == "torch":
        raise RuntimeError(f"[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file {path}: file write failed")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _save_state(work_dir: Path, state: dict) -> None:
    _write(work_dir / "state.json", json.dumps(state).encode())


def run_job(plan, work_dir: Path, *, settings, on_event, should_stop) -> JobOutputs:
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    knobs = _knobs(plan.dataset.source_url)
    total = plan.optimisation.steps
    step_s = float(knobs.get("run_s", "1.0")) / total
    state_path = work_dir / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"step": 0, "runs": 0, "checkpoints": []}
    state["runs"] += 1
    if state["step"]:
        on_event(LogLine(f"resuming from step {state['step']} (run {state['runs']})"))
    _save_state(work_dir, state)

    on_event(Progress("prepare", 0, 1))
    if knobs.get("dataset") == "bad":
        raise _dataset_error("All training videos are too short to be trainable", 422)
    if knobs.get("dataset") == "missing":
        raise _dataset_error("trainingData.sourceUrl not reachable", 400)
    on_event(LogLine(f"prepared dataset from {plan.dataset.source_url} for {plan.family.value}"))
    if plan.dataset.source_url.startswith("file:") and settings.allow_local_files:  # an upload of this server
        data = Path(urlsplit(plan.dataset.source_url).path).read_bytes()
        on_event(LogLine(f"read the uploaded archive: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}"))
    on_event(Progress("prepare", 1, 1))

    checkpoint_steps = sorted(plan.checkpoints.steps)
    preview_steps = set(plan.validation.at_steps)
    log_every = max(1, total // 20)
    started = time.monotonic()
    first = state["step"] + 1
    for step in range(first, total + 1):
        if should_stop():
            raise Stopped()
        time.sleep(step_s)
        if step == total // 2:
            first_run = state["runs"] == 1
            if knobs.get("crash") == "always" or (knobs.get("crash") == "once" and first_run):
                os.kill(os.getpid(), signal.SIGKILL)
            if knobs.get("error") == "always" or (knobs.get("error") == "once" and first_run):
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            DISK_FULL["as"] = knobs.get("disk_full")
        loss = 1.0 / (1.0 + 0.01 * step)
        if step % log_every == 0 or step == total:
            per_step = (time.monotonic() - started) / (step - first + 1)
            on_event(Progress("train", step, total, loss=loss, seconds_per_step=per_step, eta_seconds=per_step * (total - step)))
        if step in checkpoint_steps:
            index = checkpoint_steps.index(step) + 1
            lora = _write(work_dir / f"lora_step{step:05d}.safetensors", f"lora {index} step {step} loss {loss:.6f}".encode() * 64)
            samples = ()
            if step in preview_steps:
                samples = tuple(
                    _write(work_dir / f"sample_step{step:05d}_{i}.mp4", f"video {i} step {step}".encode() * 16)
                    for i, _ in enumerate(plan.validation.prompts)
                )
            state["checkpoints"].append({"index": index, "step": step, "lora": str(lora), "samples": [str(s) for s in samples]})
            on_event(CheckpointSaved(index=index, step=step, lora_path=lora, sample_paths=samples))
        if step % STATE_EVERY == 0 or step in checkpoint_steps or step == total:
            state["step"] = step
            _save_state(work_dir, state)

    outputs = work_dir / "outputs"
    outputs.mkdir(exist_ok=True)
    final = _write(outputs / "pytorch_lora_weights.safetensors", f"final lora {total}".encode() * 256)
    config = _write(
        outputs / "config.json",
        json.dumps({"trigger_phrase": plan.dataset.captions.trigger_phrase, "mode": plan.mode.value, "family": plan.family.value}).encode(),
    )
    reel = _write(outputs / "validation.mp4", b"reel" * 1024) if plan.outputs.preview_reel else None
    debug = None
    if plan.outputs.debug_dataset:
        debug = outputs / "debug_dataset.zip"
        with zipfile.ZipFile(debug, "w") as archive:
            archive.writestr("clip_000.txt", "a caption")
    checkpoints = tuple(
        CheckpointSaved(index=c["index"], step=c["step"], lora_path=Path(c["lora"]), sample_paths=tuple(Path(s) for s in c["samples"]))
        for c in state["checkpoints"]
    )
    return JobOutputs(lora_path=final, config_path=config, reel_path=reel, debug_dataset_path=debug, checkpoints=checkpoints)
