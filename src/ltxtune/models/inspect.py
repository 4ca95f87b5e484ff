"""`ltxtune models inspect` and `ltxtune models convert`: what a checkpoint is, and a diffusers copy of it.

`inspect_weights(path)` reads only headers and configs (no tensor data) of an original single file or
a diffusers-format directory; `format_inspection` renders it. `convert_checkpoint(path, out_dir)`
writes the directory `LTX2Pipeline.from_pretrained` loads, with Gemma 3 and its tokenizer copied in
when `LTXTUNE_GEMMA_MODEL` (or the cached default) provides them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .families import ModelNotAvailable
from .family_check import Architecture, architecture_of, expected
from .families import list_families
from .keymap import COMPONENTS


@dataclass(frozen=True)
class ComponentSummary:
    name: str
    class_name: str
    num_params: int
    dtypes: dict[str, int]  # safetensors dtype -> tensor count


@dataclass
class Inspection:
    path: Path
    kind: str  # "original single file" or "diffusers directory"
    architecture: Architecture
    family: str | None
    components: list[ComponentSummary]
    config: dict[str, object]
    model_version: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def trainable(self) -> bool:
        return self.family is not None


def _config_summary(transformer: dict, vae: dict) -> dict[str, object]:
    return {
        "layers": transformer["num_layers"],
        "video heads x dim": f"{transformer['num_attention_heads']} x {transformer['attention_head_dim']}",
        "audio heads x dim": f"{transformer['audio_num_attention_heads']} x {transformer['audio_attention_head_dim']}",
        "latent channels": transformer["in_channels"],
        "caption channels": transformer["caption_channels"],
        "gated attention": transformer.get("gated_attn", False),
        "prompt AdaLN": transformer.get("cross_attn_mod", False),
        "VAE compression": f"{vae.get('spatial_compression_ratio')}x spatial, {vae.get('temporal_compression_ratio')}x temporal",
    }


def inspect_weights(path: str | os.PathLike) -> Inspection:
    """Describe an original single file or a diffusers directory; raises ModelNotAvailable if unreadable."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelNotAvailable(f"{path} does not exist")
    architecture = architecture_of(path)
    family = next((f.name for f in list_families() if expected(f) == architecture), None)
    if path.is_file():
        from .single_file import OriginalCheckpoint

        checkpoint = OriginalCheckpoint.open(path)
        components = []
        for name in COMPONENTS:
            dtypes: dict[str, int] = {}
            for key, _ in checkpoint.plan[name]:
                dtype = checkpoint.header.tensors[key].dtype
                dtypes[dtype] = dtypes.get(dtype, 0) + 1
            components.append(ComponentSummary(name, checkpoint.configs[name][0], checkpoint.num_params(name), dtypes))
        notes = ["text encoder: not in the file (Gemma 3 12B comes from LTXTUNE_GEMMA_MODEL)"]
        if checkpoint.ignored:
            notes.append(f"ignored (read by no LTX-2 loader): {', '.join(checkpoint.ignored)}")
        config = _config_summary(checkpoint.configs["transformer"][1], checkpoint.configs["vae"][1])
        return Inspection(path, "original single file", architecture, family, components, config,
                          checkpoint.model_version, notes)
    index = json.loads((path / "model_index.json").read_text())
    components = []
    notes = []
    for name in (*COMPONENTS, "text_encoder"):
        entry = index.get(name) or [None, None]
        folder = path / name
        if entry[0] is None or not folder.is_dir():
            notes.append(f"{name}: missing")
            continue
        params, dtypes = _folder_params(folder)
        components.append(ComponentSummary(name, entry[1], params, dtypes))
    transformer = json.loads((path / "transformer" / "config.json").read_text())
    vae_config = path / "vae" / "config.json"
    vae = json.loads(vae_config.read_text()) if vae_config.is_file() else {}
    return Inspection(path, "diffusers directory", architecture, family, components, _config_summary(transformer, vae),
                      None, notes)


def _folder_params(folder: Path) -> tuple[int, dict[str, int]]:
    from .single_file import read_header

    total, dtypes = 0, {}
    for file in sorted(folder.glob("*.safetensors")):
        for entry in read_header(file).tensors.values():
            count = 1
            for n in entry.shape:
                count *= n
            total += count
            dtypes[entry.dtype] = dtypes.get(entry.dtype, 0) + 1
    return total, dtypes


def format_inspection(inspection: Inspection) -> str:
    lines = [f"{inspection.path}: {inspection.kind}", f"  architecture: {inspection.architecture.describe()}"]
    if inspection.model_version:
        lines.append(f"  model_version: {inspection.model_version}")
    if inspection.family:
        lines.append(f"  family: {inspection.family} (ltxtune can train it: --model {inspection.path})")
    else:
        lines.append("  family: none of ltxtune's families (ltx2, ltx23, tiny) has this architecture; ltxtune cannot train it")
    lines.append("  components:")
    total = 0
    for component in inspection.components:
        total += component.num_params
        dtypes = ", ".join(f"{d} x{n}" for d, n in sorted(component.dtypes.items()))
        lines.append(f"    {component.name:12} {component.class_name:30} {component.num_params:>16,} params  {dtypes}")
    lines.append(f"    {'total':12} {'':30} {total:>16,} params")
    lines.append("  config:")
    lines += [f"    {key}: {value}" for key, value in inspection.config.items()]
    lines += [f"  note: {note}" for note in inspection.notes]
    return "\n".join(lines)


@dataclass(frozen=True)
class Converted:
    directory: Path
    missing: tuple[str, ...]  # components not written (text_encoder / tokenizer without a Gemma)
    message: str | None  # why they are missing and what to set


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                    "added_tokens.json", "chat_template.json", "chat_template.jinja")


def convert_checkpoint(path: str | os.PathLike, out_dir: str | os.PathLike) -> Converted:
    """Write the diffusers-format pipeline directory of an original single file at `out_dir` (atomically)."""
    from .single_file import OriginalCheckpoint, model_index, write_converted
    from .sources import resolve_gemma

    path, out_dir = Path(path).expanduser(), Path(out_dir).expanduser()
    if path.is_dir():
        raise ModelNotAvailable(f"{path} is a directory; `models convert` takes an original single-file checkpoint (.safetensors)")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ModelNotAvailable(f"{out_dir} already exists and is not empty; choose a new output directory")
    checkpoint = OriginalCheckpoint.open(path)
    checkpoint.check_against_classes()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-convert-", dir=out_dir.parent))
    try:
        pipeline = scratch / "pipeline"
        write_converted(checkpoint, pipeline)
        index = model_index(checkpoint.vocoder_class)
        try:
            gemma, message = resolve_gemma(), None
        except ModelNotAvailable as error:
            gemma, message = None, str(error)
        if gemma is None:
            index["text_encoder"] = index["tokenizer"] = [None, None]
            missing = ("text_encoder", "tokenizer")
        else:
            _copy_gemma(gemma, pipeline)
            missing = ()
        (pipeline / "model_index.json").write_text(json.dumps(index, indent=2))
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(pipeline, out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Converted(out_dir, missing, message)


def _copy_gemma(gemma: Path, pipeline: Path) -> None:
    if (gemma / "text_encoder").is_dir():
        shutil.copytree(gemma / "text_encoder", pipeline / "text_encoder", copy_function=_link_or_copy)
        shutil.copytree(gemma / "tokenizer", pipeline / "tokenizer", copy_function=_link_or_copy)
        return
    (pipeline / "text_encoder").mkdir()
    (pipeline / "tokenizer").mkdir()
    for file in gemma.iterdir():
        if not file.is_file():
            continue
        if file.name in _TOKENIZER_FILES:
            _link_or_copy(file, pipeline / "tokenizer" / file.name)
        elif file.suffix in (".safetensors", ".json"):
            _link_or_copy(file, pipeline / "text_encoder" / file.name)


def _link_or_copy(source, target) -> None:
    """Hard-link the (multi-GB) Gemma files when on the same filesystem, else copy them."""
    try:
        os.link(os.path.realpath(source), target)
    except OSError:
        shutil.copy2(source, target)
