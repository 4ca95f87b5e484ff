"""Do the weights match the family? Read the architecture from the weights, compare, say what differs.

The architecture comes from a diffusers directory's `transformer/config.json` and the vocoder class
in `model_index.json`, or from an original single file's `__metadata__` (headers only: no tensor is
read, no GPU touched). `check_family(family)` is called by the job right after the source is
resolved; `identify(path)` picks the family a checkpoint is (for `--model PATH`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .families import ModelFamily, ModelNotAvailable, get_family, list_families
from .sources import GEMMA_ENV, ModelSource, resolve, resolve_gemma


class ModelMismatch(ModelNotAvailable):
    """Weights of a different architecture than the family they were given for."""


@dataclass(frozen=True)
class Architecture:
    ltx_version: str  # "2.0" or "2.3"
    num_layers: int
    video_dim: int
    audio_dim: int
    gated_attention: bool
    prompt_adaln: bool  # LTX-2.3's cross-attention AdaLN (prompt modulation)
    caption_projection: str  # "transformer" (LTX-2.0) or "connectors" (LTX-2.3: before the connectors)
    vocoder_class: str

    def describe(self) -> str:
        return (
            f"LTX-{self.ltx_version} ({self.num_layers} layers, video width {self.video_dim}, audio width {self.audio_dim}, "
            f"{'' if self.gated_attention else 'no '}gated attention, {'' if self.prompt_adaln else 'no '}prompt AdaLN, "
            f"caption projection {'in the transformer' if self.caption_projection == 'transformer' else 'before the connectors'}, "
            f"{self.vocoder_class})"
        )


def expected(family: str | ModelFamily) -> Architecture:
    family = get_family(family)
    v23 = family.ltx_version == "2.3"
    return Architecture(
        ltx_version=family.ltx_version, num_layers=family.num_layers, video_dim=family.video_dim, audio_dim=family.audio_dim,
        gated_attention=v23, prompt_adaln=v23, caption_projection="connectors" if v23 else "transformer",
        vocoder_class=family.vocoder_class,
    )


def _from_transformer_config(t: dict, vocoder_class: str) -> Architecture:
    gated, prompt = bool(t.get("gated_attn")), bool(t.get("cross_attn_mod"))
    return Architecture(
        ltx_version="2.3" if gated or prompt else "2.0", num_layers=t["num_layers"],
        video_dim=t["num_attention_heads"] * t["attention_head_dim"],
        audio_dim=t["audio_num_attention_heads"] * t["audio_attention_head_dim"],
        gated_attention=gated, prompt_adaln=prompt,
        caption_projection="transformer" if t.get("use_prompt_embeddings", True) else "connectors",
        vocoder_class=vocoder_class,
    )


def architecture_of(path: str | Path) -> Architecture:
    """What a diffusers directory or an original single file is; raises ModelNotAvailable if unreadable."""
    path = Path(path)
    if path.is_file():
        from .single_file import OriginalCheckpoint

        checkpoint = OriginalCheckpoint.open(path)
        return _from_transformer_config(checkpoint.configs["transformer"][1], checkpoint.vocoder_class)
    try:
        index = json.loads((path / "model_index.json").read_text())
        transformer = json.loads((path / "transformer" / "config.json").read_text())
        vocoder_class = index["vocoder"][1]
        return _from_transformer_config(transformer, vocoder_class)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ModelNotAvailable(f"{path} is not a readable LTX-2 pipeline directory ({error})") from None


def check_family(family: str | ModelFamily) -> None:
    """Raise ModelMismatch if the family's configured weights are another architecture (no-op when built in code)."""
    family = get_family(family)
    source = resolve(family)
    if source is None:
        return
    check_weights(family, source.path, origin=f"{family.env_var}")
    if source.single_file:
        check_gemma(source)  # the file has no text encoder: say now, not after the dataset is prepared


def check_gemma(source) -> None:
    """The Gemma of a single-file source exists and has the hidden size and depth its text projection reads."""
    from .single_file import OriginalCheckpoint

    gemma = resolve_gemma(source)
    connectors = OriginalCheckpoint.open(source.path).configs["connectors"][1]
    wanted = (connectors["caption_channels"], connectors["text_proj_in_factor"] - 1)
    config_file = gemma / "text_encoder" / "config.json" if (gemma / "text_encoder").is_dir() else gemma / "config.json"
    try:
        config = json.loads(config_file.read_text())
        text = config.get("text_config", config)
        found = (text["hidden_size"], text["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelNotAvailable(f"{GEMMA_ENV}={gemma}: {config_file} is not a readable Gemma 3 config ({error})") from None
    if found != wanted:
        raise ModelMismatch(
            f"{GEMMA_ENV}={gemma} is a text model of hidden size {found[0]} with {found[1]} layers, but {source.origin} "
            f"reads hidden size {wanted[0]} from {wanted[1]} layers (Gemma 3 12B: 3840, 48). Point {GEMMA_ENV} at the Gemma "
            "3 model the checkpoint was trained with."
        )


def check_weights(family: str | ModelFamily, path: Path, origin: str) -> None:
    family = get_family(family)
    found, wanted = architecture_of(path), expected(family)
    if found == wanted:
        return
    kind = "checkpoint" if Path(path).is_file() else "pipeline directory"
    matches = [f.name for f in list_families() if expected(f) == found]
    advice = f" (that is the {matches[0]} family)" if matches else ""
    raise ModelMismatch(
        f"{origin} points at an {found.describe()} {kind}{advice}; {family.title} needs {wanted.describe()}. "
        f"Point {family.env_var} at {family.title} weights" + (f" (e.g. {family.single_file_name})" if family.single_file_name else "")
        + "."
    )


def identify(path: str | Path) -> ModelFamily:
    """The family whose architecture the weights at `path` have; raises ModelMismatch if none."""
    found = architecture_of(path)
    for family in list_families():
        if expected(family) == found:
            return family
    known = "; ".join(f"{f.name}: {expected(f).describe()}" for f in list_families())
    raise ModelMismatch(f"{path} is an {found.describe()} model, which no family ltxtune trains matches ({known})")


def prepare_source(family: str | ModelFamily, log=None) -> ModelSource | None:
    """What a job calls first: resolve the family's weights, check they are the family's architecture (and
    that a single file has a matching Gemma), and convert a single file now (cached), with progress lines
    to `log`, so a bad or missing model stops the job before any data or GPU work."""
    family = get_family(family)
    check_family(family)
    source = resolve(family)
    if source is not None and source.single_file:
        source.pipeline_dir(log)
    return source
