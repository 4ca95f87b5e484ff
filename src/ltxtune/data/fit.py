"""Fit one sample: frames (and reference) to the bucket, audio to the trained duration.

`fit_sample` takes a picklable `FitJob` and returns a `FitResult`, so samples can be fitted in
worker processes. A sample that fails while decoding is returned with `error` set (the caller
skips it with that reason); nothing else is raised for content problems.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ltxtune.data.audio import AudioError, decode_window, fit_audio, write_wav
from ltxtune.data.probe import MediaInfo, ProbeError, open_image
from ltxtune.data.references import transform
from ltxtune.data.video import FitError, fitted_yuv_frames, sample_times, write_fitted

SAMPLES_DIR = "samples"


@dataclass(frozen=True)
class AudioJob:
    rate: int
    preserve_pitch: bool
    normalize: bool


@dataclass(frozen=True)
class FitJob:
    id: str
    kind: str  # "video" | "image"
    path: Path
    info: MediaInfo
    start: float  # seconds after the first frame
    span: float  # seconds of source the frames cover
    frames: int
    fps: int
    width: int
    height: int
    root: Path  # the prepared folder
    scene: tuple[float, float] | None = None  # the shot, when the clip was split
    audio: AudioJob | None = None
    reference: Path | None = None
    reference_info: MediaInfo | None = None
    reference_transform: str | None = None


@dataclass(frozen=True)
class FitResult:
    id: str
    media: str | None = None
    audio: str | None = None
    reference: str | None = None
    content_hash: str = ""
    error: str | None = None


def fit_sample(job: FitJob) -> FitResult:
    try:
        if job.kind == "image":
            return _fit_image(job)
        return _fit_video(job)
    except (FitError, AudioError, ProbeError) as error:
        _remove_outputs(job)
        return FitResult(job.id, error=str(error))


def _relative(job: FitJob, suffix: str) -> str:
    return f"{SAMPLES_DIR}/{job.id}{suffix}"


def _fit_video(job: FitJob) -> FitResult:
    (job.root / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    media = _relative(job, ".mp4")
    audio_rel = reference_rel = None
    samples = None
    if job.audio is not None:
        audio_rel = _relative(job, ".wav")
        window = decode_window(job.path, job.info, job.start, job.span, job.audio.rate)
        count = int(round(job.frames / job.fps * job.audio.rate))
        samples = fit_audio(window, count, preserve_pitch=job.audio.preserve_pitch, normalize=job.audio.normalize)
        write_wav(job.root / audio_rel, samples, job.audio.rate)
    times = sample_times(job.start, job.span, job.frames)
    derived = None
    if job.reference is None and job.reference_transform:
        reference_rel = _relative(job, "_ref.mp4")
        derived = (job.root / reference_rel, transform(job.reference_transform))
    frames = fitted_yuv_frames(job.path, job.info, times, job.width, job.height)
    written = write_fitted(
        frames, job.root / media, job.fps, audio=samples, audio_rate=job.audio.rate if job.audio else 0, derived=derived
    )
    if written != job.frames:
        raise FitError(f"produced {written} frames instead of {job.frames}")
    if job.reference is not None and job.reference_info is not None:
        reference_rel = _relative(job, "_ref.mp4")
        reference_frames = fitted_yuv_frames(job.reference, job.reference_info, times, job.width, job.height)
        try:
            written = write_fitted(reference_frames, job.root / reference_rel, job.fps)
        except FitError as error:
            raise FitError(f"reference {job.reference.name}: {error}") from error
        if written != job.frames:
            raise FitError(f"reference {job.reference.name} produced {written} frames instead of {job.frames}")
    return _result(job, media, audio_rel, reference_rel)


def fit_image_file(path: Path, width: int, height: int) -> Image.Image:
    """A still resized to fill width x height (aspect kept, Lanczos) and centre-cropped."""
    try:
        image = open_image(path, at_least=max(width, height))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise FitError(f"cannot be read as an image ({error})") from error
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def _fit_image(job: FitJob) -> FitResult:
    (job.root / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    media = _relative(job, ".png")
    image = fit_image_file(job.path, job.width, job.height)
    image.save(job.root / media, compress_level=3)
    reference_rel = None
    if job.reference is not None:
        reference_rel = _relative(job, "_ref.png")
        try:
            fit_image_file(job.reference, job.width, job.height).save(job.root / reference_rel, compress_level=3)
        except FitError as error:
            raise FitError(f"reference {job.reference.name}: {error}") from error
    elif job.reference_transform:
        reference_rel = _relative(job, "_ref.png")
        derived = transform(job.reference_transform)(np.asarray(image))
        Image.fromarray(derived).save(job.root / reference_rel, compress_level=3)
    return _result(job, media, None, reference_rel)


def _result(job: FitJob, media: str, audio: str | None, reference: str | None) -> FitResult:
    digest = hashlib.sha256()
    for tag, relative in (("media", media), ("audio", audio), ("reference", reference)):
        digest.update(tag.encode() + b"\0")
        if relative is not None:
            with open(job.root / relative, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        digest.update(b"\0")
    return FitResult(job.id, media=media, audio=audio, reference=reference, content_hash=digest.hexdigest())


def _remove_outputs(job: FitJob) -> None:
    for path in (job.root / SAMPLES_DIR).glob(f"{job.id}*"):
        if path.stem == job.id or path.stem == f"{job.id}_ref":
            path.unlink(missing_ok=True)
