"""A job's validation previews: inputs fetched up front, prompts encoded while the text encoder is
loaded, renders at the plan's steps, and the labelled reel at the end."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Callable

import torch

from ltxtune.data.manifest import PreparedDataset
from ltxtune.models.families import ModelFamily
from ltxtune.models.memory import release_cached_memory
from ltxtune.models.text import TextEncoder
from ltxtune.specs.plan import TrainingPlan
from ltxtune.training.reel import make_reel, preview_label
from ltxtune.training.sampling import PreviewComponents, PreviewPrompts, encode_preview_prompts, preview_name, render_previews

Fetch = Callable[[str, Path, str], Path]  # (url, destination, field name) -> local file


class Previews:
    def __init__(self, plan: TrainingPlan, family: ModelFamily, directory: Path, device: torch.device, dtype: torch.dtype,
                 with_audio: bool, images: list[Path | None], references: list[Path | None]):
        self.plan = plan
        self.rules = plan.validation
        self.family = family
        self.directory = directory
        self.device = device
        self.dtype = dtype
        self.with_audio = with_audio
        self.images = images
        self.references = references
        self.prompts_file = directory / "prompts.safetensors"
        self._components: PreviewComponents | None = None

    @classmethod
    def for_plan(cls, plan: TrainingPlan, family: ModelFamily, prepared: PreparedDataset, work_dir: Path,
                 device: torch.device, dtype: torch.dtype, fetch: Fetch) -> "Previews":
        """Fetch every validation image and reference video now: a bad URL fails the job before training."""
        directory = work_dir / "previews"
        inputs = directory / "inputs"
        images: list[Path | None] = []
        references: list[Path | None] = []
        for index, entry in enumerate(plan.validation.prompts):
            images.append(_fetched(fetch, entry.image_url, inputs / f"image-{index}", f"validation[{index}].image_url"))
            references.append(_fetched(fetch, entry.reference_video_url, inputs / f"reference-{index}",
                                       f"validation[{index}].reference_video_url"))
        return cls(plan, family, directory, device, dtype, prepared.audio, images, references)

    @property
    def wanted(self) -> bool:
        return bool(self.rules.prompts)

    @property
    def needs_text_encoder(self) -> bool:
        """True until the preview prompts are encoded (they survive a resume on disk)."""
        return self.wanted and not (self.prompts_file.exists() and PreviewPrompts.load(self.prompts_file).matches(self.rules))

    def encode_prompts(self, text_encoder: TextEncoder) -> None:
        encode_preview_prompts(text_encoder, self.rules).save(self.prompts_file)

    def render(self, transformer: torch.nn.Module, step: int) -> list[Path]:
        """Render the previews of `step`. The VAEs, vocoder and connectors are on the device only while
        rendering and parked on the host between rounds; the training step's freed activations are handed
        back to the allocator first, so the decode can use them."""
        if self._components is None:
            self._components = PreviewComponents.load(self.family, "cpu", self.dtype)
        release_cached_memory()
        try:
            return render_previews(
                family=self.family, transformer=transformer, rules=self.rules, prompts=PreviewPrompts.load(self.prompts_file),
                images=self.images, references=self.references, step=step, out_dir=self.directory, device=self.device,
                dtype=self.dtype, with_audio=self.with_audio, seed=self.plan.optimisation.seed, components=self._components,
            )
        finally:
            self._components.to("cpu")
            release_cached_memory()

    def rendered(self, step: int) -> tuple[Path, ...]:
        """Previews of `step` already on disk (from before a resume)."""
        paths = (self.directory / preview_name(step, index) for index in range(len(self.rules.prompts)))
        return tuple(path for path in paths if path.exists())

    def reel(self, dest: Path) -> Path | None:
        entries = [
            (preview_label(step, index, entry.prompt), self.directory / preview_name(step, index))
            for step in self.rules.at_steps
            for index, entry in enumerate(self.rules.prompts)
        ]
        entries = [(label, path) for label, path in entries if path.exists()]
        return make_reel(entries, dest) if entries else None


def _fetched(fetch: Fetch, url: str | None, stem: Path, field: str) -> Path | None:
    if not url:
        return None
    guessed = Path(url.split("?")[0]).suffix.lower() if not url.startswith("data:") else (
        mimetypes.guess_extension(url[5:].split(";")[0].split(",")[0]) or "")
    return fetch(url, stem.with_suffix(guessed or ".bin"), field)
