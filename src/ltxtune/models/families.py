"""Model families ltxtune trains: LTX-2 (19B), LTX-2.3 (22B) and a tiny random stand-in.

This module is pure data plus the rule that finds a family's weights. It imports neither torch nor
diffusers, so the API process can list and validate families cheaply.

Weights are never downloaded by ltxtune. A real family's weights come from what its environment
variable names: a diffusers-format pipeline directory (the layout `LTX2Pipeline.save_pretrained`
writes, with `model_index.json`), an original single-file checkpoint as Lightricks publishes it
(converted on first use by `ltxtune.models.single_file`, with Gemma 3 from `LTXTUNE_GEMMA_MODEL`),
or a Hugging Face repo id that is already in the local HF cache (looked up with
`local_files_only=True`, i.e. `HF_HUB_OFFLINE=1` semantics).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from ltxtune.errors import SetupError


class ModelNotAvailable(SetupError):
    """A family's weights are not on this machine. The message says what to download and what to set."""


class UnknownModelFamily(ValueError):
    """A family name that ltxtune does not know."""


@dataclass(frozen=True)
class ModelFamily:
    """Everything the rest of ltxtune needs to know about one model family.

    Components are loaded by `ltxtune.models.load` with the classes the weights' own `model_index.json`
    (or, for an original single file, its metadata) names; the architecture fields here are what
    `ltxtune.models.family_check` compares those weights against.
    """

    name: str
    title: str
    # --- architecture, checked against the weights (`ltxtune.models.family_check`) ---
    ltx_version: str  # "2.0" or "2.3": 2.3 adds gated attention, prompt AdaLN, per-stream text projections
    vocoder_class: str  # diffusers.pipelines.ltx2: LTX2Vocoder (2.0) or LTX2VocoderWithBWE (2.3)
    num_layers: int
    video_dim: int  # video stream width (heads x head dim)
    audio_dim: int  # audio stream width
    # --- latent geometry ---
    spatial_compression: int  # pixels per latent cell (width and height)
    temporal_compression: int  # frames per latent frame after the first (frames = 8k+1)
    audio_temporal_compression: int  # mel frames per audio latent frame
    # --- audio ---
    audio_sample_rate: int  # waveform rate the audio VAE's mel front end expects
    mel_hop_length: int
    # --- text ---
    max_sequence_length: int  # tokens per prompt (padded); LTX2Pipeline's default is 1024
    # --- conditioning conventions ---
    use_cross_timestep: bool  # transformer(use_cross_timestep=...): True for LTX-2.3, False for LTX-2.0
    # --- preview (validation sampling) defaults; LTX2Pipeline.__call__ defaults unless noted ---
    default_guidance_scale: float
    default_audio_guidance_scale: float
    default_stg_blocks: tuple[int, ...]
    default_modality_scale: float
    default_guidance_rescale: float
    default_num_inference_steps: int
    # --- where the weights come from ---
    env_var: str  # a diffusers-format directory, an original single file, or a cached repo id
    default_repo_id: str | None
    single_file_name: str | None  # the official original-layout release file, for messages

    @property
    def is_tiny(self) -> bool:
        """True for the small random stand-in (built in code unless its variable names weights)."""
        return self.name == "tiny"

    @property
    def default_negative_prompt(self) -> str:
        """diffusers' `pipelines.ltx2.utils.DEFAULT_NEGATIVE_PROMPT` (imports diffusers)."""
        from diffusers.pipelines.ltx2.utils import DEFAULT_NEGATIVE_PROMPT

        return DEFAULT_NEGATIVE_PROMPT

    @property
    def audio_latents_per_second(self) -> float:
        """Audio latent frames per second: sample_rate / hop / 4 (25.0 for LTX-2).

        Same formula as `LTX2Pipeline.__call__` (`audio_latents_per_second`).
        """
        return self.audio_sample_rate / self.mel_hop_length / self.audio_temporal_compression

    def audio_latent_frames(self, num_frames: int, frame_rate: float) -> int:
        """Audio latent frames that go with `num_frames` video frames at `frame_rate`.

        `LTX2Pipeline.__call__`: `round(num_frames / frame_rate * audio_latents_per_second)`.
        """
        return round(num_frames / frame_rate * self.audio_latents_per_second)

    def latent_video_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(latent frames, latent height, latent width) for a clip; raises ValueError if not a valid size."""
        self.check_video_size(num_frames, height, width)
        return (
            (num_frames - 1) // self.temporal_compression + 1,
            height // self.spatial_compression,
            width // self.spatial_compression,
        )

    def check_video_size(self, num_frames: int, height: int, width: int) -> None:
        """Raise ValueError unless frames = 8k+1 and width/height are multiples of 32."""
        problems = []
        if num_frames < 1 or (num_frames - 1) % self.temporal_compression:
            problems.append(f"num_frames={num_frames} is not {self.temporal_compression}k+1")
        for label, size in (("height", height), ("width", width)):
            if size < self.spatial_compression or size % self.spatial_compression:
                problems.append(f"{label}={size} is not a positive multiple of {self.spatial_compression}")
        if problems:
            raise ValueError(f"{self.name}: " + "; ".join(problems))

    def resolve_source(self) -> Path | None:
        """Where this family's weights are: a diffusers-format directory or an original single file.

        Order: the family's environment variable (a directory with model_index.json, an original
        `.safetensors` single file, or a repo id already in the HF cache), then the default repo id if
        it is in the HF cache. Never downloads. The tiny family returns None when its variable is unset
        (it is built in code). Raises ModelNotAvailable with one message naming what to download and
        which variable to set.
        """
        configured = os.environ.get(self.env_var, "").strip()
        if self.is_tiny and not configured:
            return None
        value = configured or self.default_repo_id or ""
        origin = f"{self.env_var}={configured!r}" if configured else f"the default repo {value!r}"
        if value and _looks_like_path(value):
            path = Path(value).expanduser()
            if path.is_file() and path.suffix == ".safetensors":
                return path
            if (path / "model_index.json").is_file():
                return path
            what = "does not exist" if not path.exists() else (
                "is a file but not a .safetensors checkpoint" if path.is_file() else "has no model_index.json")
            raise ModelNotAvailable(f"{origin} {what}. " + self._download_hint())
        if value:
            cached = _cached_snapshot(value)
            if cached is not None and (cached / "model_index.json").is_file():
                return cached
        raise ModelNotAvailable(
            f"{self.title} weights not found: {origin} is not in the local Hugging Face cache. " + self._download_hint()
        )

    def _download_hint(self) -> str:
        if self.default_repo_id is None:
            return (f"{self.env_var} must name a diffusers-format directory (model_index.json) or an original "
                    "single-file checkpoint (.safetensors).")
        repo = self.default_repo_id
        return (
            f"Download the diffusers-format {self.title} pipeline (for example `hf download {repo} --local-dir "
            f"/models/{self.name}`; model_index.json and the component folders it lists are enough) and set "
            f"{self.env_var}=/models/{self.name} (a directory with model_index.json, or a Hugging Face repo id already "
            f"in the local cache), or set {self.env_var} to the original single file ({self.single_file_name}) "
            f"and LTXTUNE_GEMMA_MODEL to a Gemma 3 12B directory. ltxtune never downloads weights itself."
        )


def _looks_like_path(value: str) -> bool:
    """A Hugging Face repo id is `owner/name`; anything else (absolute, relative, ~, existing) is a path."""
    return value.startswith(("/", ".", "~")) or value.count("/") != 1 or Path(value).expanduser().exists()


def _cached_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot of `repo_id` (main revision), or None. Never touches the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    # Read the cache location now (huggingface_hub reads it once, at import).
    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, cache_dir=cache_dir))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None


_LTX_GEOMETRY = dict(
    spatial_compression=32,
    temporal_compression=8,
    audio_temporal_compression=4,
    audio_sample_rate=16000,
    mel_hop_length=160,
)
_PREVIEW = dict(
    default_guidance_scale=3.0,
    default_audio_guidance_scale=7.0,
    default_modality_scale=3.0,
    default_guidance_rescale=0.7,
)

LTX2 = ModelFamily(
    name="ltx2",
    title="LTX-2 (19B)",
    ltx_version="2.0",
    vocoder_class="LTX2Vocoder",
    num_layers=48,
    video_dim=4096,
    audio_dim=2048,
    max_sequence_length=1024,
    use_cross_timestep=False,
    default_stg_blocks=(29,),
    default_num_inference_steps=30,
    env_var="LTXTUNE_LTX2_MODEL",
    default_repo_id="Lightricks/LTX-2",
    single_file_name="ltx-2-19b-dev.safetensors",
    **_LTX_GEOMETRY,
    **_PREVIEW,
)

LTX23 = ModelFamily(
    name="ltx23",
    title="LTX-2.3 (22B)",
    ltx_version="2.3",
    vocoder_class="LTX2VocoderWithBWE",
    num_layers=48,
    video_dim=4096,
    audio_dim=2048,
    max_sequence_length=1024,
    use_cross_timestep=True,
    default_stg_blocks=(28,),
    default_num_inference_steps=30,
    env_var="LTXTUNE_LTX23_MODEL",
    # The only diffusers-format LTX-2.3 id named in diffusers' own source (LTX2InContextPipeline example).
    default_repo_id="diffusers/LTX-2.3-Diffusers",
    single_file_name="ltx-2.3-22b-dev.safetensors",
    **_LTX_GEOMETRY,
    **_PREVIEW,
)

# LTX-2.3 architecture with 2 blocks, 2 heads and tiny channels (`ltxtune.models.tiny`), random weights
# from a fixed seed, built in code unless LTXTUNE_TINY_MODEL names weights of that shape.
TINY = ModelFamily(
    name="tiny",
    title="tiny random LTX-2.3",
    ltx_version="2.3",
    vocoder_class="LTX2VocoderWithBWE",
    num_layers=2,
    video_dim=64,
    audio_dim=32,
    max_sequence_length=64,
    use_cross_timestep=True,
    default_stg_blocks=(1,),
    default_num_inference_steps=4,
    env_var="LTXTUNE_TINY_MODEL",
    default_repo_id=None,
    single_file_name=None,
    **_LTX_GEOMETRY,
    **_PREVIEW,
)

FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (LTX2, LTX23, TINY)}


def get_family(name: str | ModelFamily) -> ModelFamily:
    """Look a family up by name ("ltx2", "ltx23", "tiny"); a ModelFamily is returned unchanged."""
    if isinstance(name, ModelFamily):
        return name
    try:
        return FAMILIES[name]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        raise UnknownModelFamily(f"unknown model family {name!r}; known families: {known}") from None


def list_families() -> list[ModelFamily]:
    return list(FAMILIES.values())


def component_class(library: str, class_name: str):
    """model_index.json's (library, class) -> class, the way DiffusionPipeline resolves it."""
    module = {"ltx2": "diffusers.pipelines.ltx2"}.get(library, library)
    if module not in ("diffusers", "transformers", "diffusers.pipelines.ltx2"):
        raise ModelNotAvailable(f"model_index.json names an unsupported library {library!r} for {class_name}")
    return getattr(importlib.import_module(module), class_name)
