"""Dataset preparation: fetch -> safe extract -> match -> probe -> plan samples -> fit -> manifest.

    prepared = prepare_dataset(plan, work_dir)          # raises DatasetError (kind SOURCE / CONTENT)
    print(summarise(prepared))

Everything is written under `work_dir`: the download in `download/` and the extracted archive in
`extracted/` (both removed when preparation ends, failed or not), the prepared dataset in
`prepared/` (replaced on a re-run), and, with `debug_dataset`, `debug_dataset.zip`.

Decisions where the spec pages are silent (details in the module named):
- Timing (`video.py`): a clip longer than needed trains on its first `frames` frames at the target
  rate from the start of the clip or scene; one sample per clip or scene.
- Too-short clips and scenes are skipped with a logged reason (fal skips them silently).
- A file that cannot be opened or decoded is skipped with its reason, and named in the error when
  nothing usable is left. A damaged zip entry refuses the whole archive (re-upload it).
- Audio (`audio.py`) is decided over the clips that are actually trained (after too-short clips
  are dropped); `with_audio: true` on an image dataset is refused (stills have no sound).
  Stored as 16-bit stereo WAV at the encoder's rate, peak-normalised to -1 dBFS.
- Captions (`captions.py`): trigger not doubled, `[trigger]` placeholder, shuffled variants.
- v2v (`references.py`): `clip01.mp4` + `clip01_ref.mp4`; derived references on request.
- Archives (`archive.py`): limits, junk, refusals. Fetching (`fetch.py`): schemes, address rule.
- Sample ids are `NNNN_<file stem>` (`_sNN` per scene), numbered in archive-path order.
- Fitting runs in `workers` processes (default: every core) when there is enough to decode.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path, PurePosixPath

from ltxtune.data.archive import ArchiveLimits, extract_archive
from ltxtune.data.captions import caption_variants, read_caption
from ltxtune.data.debug import DEBUG_ARCHIVE, write_debug_archive
from ltxtune.data.errors import DatasetError
from ltxtune.data.fetch import FetchLimits, fetch_source
from ltxtune.data.fit import AudioJob, FitJob, FitResult, fit_sample
from ltxtune.data.manifest import PreparedDataset, Sample, Skipped
from ltxtune.data.matching import RECOMMENDED_FILES, WANTED, MediaFile, match_files
from ltxtune.data.probe import MediaInfo, ProbeError, probe_media
from ltxtune.data.scenes import detect_scenes
from ltxtune.data.summary import summarise
from ltxtune.specs.common import Mode
from ltxtune.specs.plan import TrainingPlan
from ltxtune.events import LogLine, OnEvent, Progress, ShouldStop, Stopped, ignore_event, never_stop

TOO_SHORT = "All training videos are too short to be trainable"
# Fitting runs in worker processes when the decoding work is at least this many pixel-frames.
PARALLEL_MIN_WORK = 50_000_000
DEFAULT_FETCH_LIMITS = FetchLimits()
DEFAULT_ARCHIVE_LIMITS = ArchiveLimits()

__all__ = ["prepare_dataset", "summarise", "DatasetError", "PreparedDataset", "TOO_SHORT"]


def prepare_dataset(
    plan: TrainingPlan,
    work_dir: Path,
    *,
    audio_sample_rate: int = 16000,
    allow_local_files: bool = False,
    allow_private_urls: bool = False,
    on_event: OnEvent = ignore_event,
    should_stop: ShouldStop = never_stop,
    workers: int | None = None,
    fetch_limits: FetchLimits = DEFAULT_FETCH_LIMITS,
    archive_limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS,
) -> PreparedDataset:
    """Fetch `plan.dataset.source_url`, fit every sample, write `work_dir/prepared`; return it.
    `should_stop` is asked during the download and between files: Stopped when it says so."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    rules = plan.dataset
    field = rules.source_field
    log = _Log(on_event, should_stop)
    download, extracted_dir, root = work_dir / "download", work_dir / "extracted", work_dir / "prepared"
    _remove(root, work_dir / DEBUG_ARCHIVE)  # never leave a previous run's dataset looking current
    succeeded = False
    try:
        archive = fetch_source(
            rules.source_url,
            download,
            field=field,
            allow_local_files=allow_local_files,
            allow_private_urls=allow_private_urls,
            limits=fetch_limits,
            should_stop=should_stop,
        )
        log.info(f"Fetched the training archive ({archive.stat().st_size / 2**20:.1f} MiB)")
        extracted = extract_archive(archive, extracted_dir, wanted=WANTED, limits=archive_limits)
        derive = rules.reference_transform is not None
        matched = match_files(
            extracted.root, extracted.files, extracted.ignored, v2v=plan.mode == Mode.V2V, derive_references=derive
        )
        skipped: list[Skipped] = list(matched.skipped)
        warnings: list[str] = list(matched.warnings)
        log.info(f"Found {matched.count} {matched.kind}{'' if matched.count == 1 else 's'}")
        if matched.count < RECOMMENDED_FILES:
            warnings.append(
                f"Only {matched.count} media files: at least {RECOMMENDED_FILES} are recommended, more is better"
            )
        if rules.expected_count is not None and rules.expected_count != matched.count:
            warnings.append(
                f"trainingData.count is {rules.expected_count}, but the archive holds {matched.count} media files"
            )
        log.report(skipped, warnings)
        probed = _probe(matched.items, skipped, log)
        root.mkdir(parents=True)
        jobs, too_short = _plan_jobs(plan, probed, root, skipped, log)
        log.report(skipped, warnings)
        if not jobs:
            _refuse_empty(plan, matched.kind, too_short, skipped)
        audio = _decide_audio(plan, matched.kind, probed, jobs, warnings)
        log.report(skipped, warnings)
        log.info(f"Audio: {'on' if audio else 'off'}")
        if audio:
            jobs = [_with_audio(job, audio_sample_rate, plan) for job in jobs]
        results = _run(jobs, workers, log)
        prepared = _manifest(
            plan, root, matched.kind, jobs, results, probed, audio, audio_sample_rate, skipped, warnings
        )
        log.report(skipped, warnings)
        prepared.save()
        if plan.outputs.debug_dataset:
            write_debug_archive(prepared, work_dir / DEBUG_ARCHIVE)
            log.info(f"Wrote the debug dataset archive {DEBUG_ARCHIVE}")
        succeeded = True
        return prepared
    finally:
        _remove(download, extracted_dir)
        if not succeeded:
            _remove(root, work_dir / DEBUG_ARCHIVE)


def _remove(*paths: Path) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)


class _Log:
    def __init__(self, on_event: OnEvent, should_stop: ShouldStop = never_stop):
        self.on_event = on_event
        self.should_stop = should_stop
        self.reported = (0, 0)

    def check_stop(self) -> None:
        """Stopped if the run was asked to stop (cancel, timeout, shutdown): checked between files."""
        if self.should_stop():
            raise Stopped("stopped while preparing the dataset")

    def report(self, skipped: list[Skipped], warnings: list[str]) -> None:
        """Log the skipped files and warnings added since the last call."""
        done_skipped, done_warnings = self.reported
        for item in skipped[done_skipped:]:
            self.warning(f"Skipped {item.source}: {item.reason}")
        for warning in warnings[done_warnings:]:
            self.warning(warning)
        self.reported = (len(skipped), len(warnings))

    def info(self, message: str) -> None:
        self.on_event(LogLine(message))

    def warning(self, message: str) -> None:
        self.on_event(LogLine(message, level="WARNING"))

    def progress(self, done: int, total: int) -> None:
        self.on_event(Progress(phase="prepare", done=done, total=total))


def _probe(items: list[MediaFile], skipped: list[Skipped], log: _Log) -> list[tuple[MediaFile, MediaInfo, MediaInfo | None]]:
    probed = []
    for item in items:
        log.check_stop()
        try:
            info = probe_media(item.path)
        except ProbeError as error:
            skipped.append(Skipped(item.source, str(error)))
            continue
        reference_info = None
        if item.reference is not None:
            try:
                reference_info = probe_media(item.reference)
            except ProbeError as error:
                skipped.append(Skipped(item.source, f"reference {item.reference_source}: {error}"))
                continue
        probed.append((item, info, reference_info))
    return probed


def _slug(source: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", PurePosixPath(source).stem).strip("-")[:40] or "sample"


def _plan_jobs(
    plan: TrainingPlan, probed, root: Path, skipped: list[Skipped], log: _Log
) -> tuple[list[FitJob], list[int]]:
    """One FitJob per sample; too-short clips and scenes are skipped. Returns the jobs and, for
    each too-short clip or scene, how many frames at the target rate it had."""
    rules = plan.dataset
    jobs: list[FitJob] = []
    too_short: list[int] = []
    hint = f" (or set {rules.auto_scale_field})" if rules.auto_scale_field else ""
    for number, (item, info, ref_info) in enumerate(probed, start=1):
        bucket = rules.bucket_for_clip(info.width, info.height)
        base = dict(
            kind=info.kind,
            path=item.path,
            info=info,
            fps=rules.fps,
            width=bucket.width,
            height=bucket.height,
            root=root,
            reference=item.reference,
            reference_info=ref_info,
            reference_transform=rules.reference_transform,
        )
        sample_id = f"{number:04d}_{_slug(item.source)}"
        if info.kind == "image":
            jobs.append(FitJob(id=sample_id, start=0.0, span=0.0, frames=1, **base))
            continue
        windows: list[tuple[float, float, bool]] = [(0.0, info.duration, False)]
        if rules.split_scenes and info.duration > rules.scene_threshold_s:
            scenes = detect_scenes(item.path, info)
            if len(scenes) > 1:
                log.info(f"Split {item.source} into {len(scenes)} scenes")
                windows = [(a, b, True) for a, b in scenes]
        for index, (start, end, is_scene) in enumerate(windows, start=1):
            where = f"scene {index} ({start:.2f}-{end:.2f} s) " if is_scene else ""
            available = info.frames_at(rules.fps, start, end)
            if available >= rules.frames:
                span = rules.frames / rules.fps
            elif rules.auto_scale and available >= 1:
                span = end - start
            else:
                too_short.append(available)
                skipped.append(
                    Skipped(
                        item.source,
                        f"{where}too short: {available} frames at {rules.fps} fps "
                        f"({end - start:.2f} s), needs {rules.frames}{hint}",
                    )
                )
                continue
            if ref_info is not None and ref_info.duration + 1.5 / ref_info.fps < start + span:
                skipped.append(
                    Skipped(
                        item.source,
                        f"{where}reference {item.reference_source} is {ref_info.duration:.2f} s "
                        f"long, the sample needs {start:.2f}-{start + span:.2f} s",
                    )
                )
                continue
            job_id = f"{sample_id}_s{index:02d}" if is_scene else sample_id
            scene = (round(start, 6), round(end, 6)) if is_scene else None
            jobs.append(FitJob(id=job_id, start=start, span=span, frames=rules.frames, scene=scene, **base))
    return jobs, too_short


def _refuse_empty(plan: TrainingPlan, kind: str, too_short: list[int], skipped: list[Skipped]) -> None:
    rules = plan.dataset
    if kind == "video" and too_short:
        raise DatasetError(
            f"{TOO_SHORT}: each needs at least {rules.frames} frames at {rules.fps} fps "
            f"({rules.frames / rules.fps:.2f} s); the longest has {max(too_short)}. "
            "Turn on auto_scale_input to fit shorter clips to the frame count."
        )
    reasons = "; ".join(f"{s.source}: {s.reason}" for s in skipped[:10])
    raise DatasetError(f"None of the media files can be used: {reasons}")


def _decide_audio(plan: TrainingPlan, kind: str, probed, jobs: list[FitJob], warnings: list[str]) -> bool:
    use = plan.dataset.audio.use
    if kind == "image":
        if use is True:
            raise DatasetError("with_audio is true, but the dataset is images, which have no audio track")
        return False
    if use is False:
        return False
    trained = {job.path for job in jobs}
    silent = [item.source for item, info, _ in probed if item.path in trained and not info.has_audio]
    if not silent:
        return True
    names = ", ".join(silent[:20]) + (f" and {len(silent) - 20} more" if len(silent) > 20 else "")
    if use is True:
        raise DatasetError(f"with_audio is true, but these clips have no audio track: {names}")
    warnings.append(f"Audio off: these clips have no audio track: {names}; training video only")
    return False


def _with_audio(job: FitJob, rate: int, plan: TrainingPlan) -> FitJob:
    rules = plan.dataset.audio
    return replace(job, audio=AudioJob(rate=rate, preserve_pitch=rules.preserve_pitch, normalize=rules.normalize))


def _work(job: FitJob) -> float:
    info = job.info
    return info.width * info.height * max(1.0, job.span * info.fps)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run(jobs: list[FitJob], workers: int | None, log: _Log) -> dict[str, FitResult]:
    results: dict[str, FitResult] = {}
    total = len(jobs)
    log.progress(0, total)
    if workers is None:
        workers = _cores()
        if sum(_work(job) for job in jobs) < PARALLEL_MIN_WORK:
            workers = 1
    if multiprocessing.current_process().daemon:
        workers = 1  # a daemonic process may not start children
    if workers > 1 and total > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, total), mp_context=context) as pool:
            futures = [pool.submit(fit_sample, job) for job in jobs]
            for done, future in enumerate(as_completed(futures), start=1):
                if log.should_stop():
                    pool.shutdown(wait=False, cancel_futures=True)  # the clips being fitted finish; no new ones start
                    log.check_stop()
                result = future.result()
                results[result.id] = result
                log.progress(done, total)
    else:
        for done, job in enumerate(jobs, start=1):
            log.check_stop()
            results[job.id] = fit_sample(job)
            log.progress(done, total)
    return results


def _manifest(plan, root, kind, jobs, results, probed, audio, rate, skipped, warnings) -> PreparedDataset:
    rules = plan.dataset
    captions = {item.path: read_caption(item.caption) for item, _, _ in probed}
    sources = {item.path: item.source for item, _, _ in probed}
    samples = []
    for job in jobs:
        result = results[job.id]
        source = sources[job.path]
        if result.error is not None:
            skipped.append(Skipped(source, result.error))
            continue
        samples.append(
            Sample(
                id=job.id,
                source=source,
                scene=job.scene,
                span=(round(job.start, 6), round(job.start + job.span, 6)) if kind == "video" else None,
                frames=job.frames,
                fps=rules.fps,
                width=job.width,
                height=job.height,
                media=result.media,
                audio=result.audio,
                reference=result.reference,
                captions=tuple(
                    caption_variants(captions[job.path], rules.captions, seed=plan.optimisation.seed, key=job.id)
                ),
                flips=(False, True) if rules.flip else (False,),
                content_hash=result.content_hash,
            )
        )
    if not samples:
        _refuse_empty(plan, kind, [], skipped)
    return PreparedDataset(
        root=root,
        kind=kind,
        mode=plan.mode.value,
        fps=rules.fps,
        frames=1 if kind == "image" else rules.frames,
        audio=audio,
        audio_sample_rate=rate,
        samples=tuple(samples),
        skipped=tuple(skipped),
        warnings=tuple(warnings),
    )
