"""Original LTX-2 / LTX-2.3 single-file checkpoints: read, identify, convert to diffusers, cache.

`OriginalCheckpoint.open(path)` reads only the safetensors header (8-byte length, JSON table of
tensors, `__metadata__`), checks that it is complete and consistent with the file's size, maps every
key to its diffusers component (`ltxtune.models.keymap`) and derives the five diffusers configs
from the metadata (`ltxtune.models.checkpoint_config`).

`converted_pipeline(path)` returns a diffusers-format pipeline directory of the file's components
(transformer, connectors, vae, audio_vae, vocoder, scheduler; Gemma 3 is not in the file). The
conversion streams tensor bytes from the file into one safetensors file per component, a few MiB at
a time, so host memory stays flat whatever the checkpoint's size. It is cached under
`$LTXTUNE_CACHE_DIR/converted/` (default `~/.cache/ltxtune/converted/`) by the file's sha256, which
is computed once per (path, size, mtime) and remembered; each entry is written into a hidden
temporary directory and renamed into place, so a half-written entry is never visible.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .checkpoint_config import ArchitectureError, diffusers_configs, is_ltx23
from .families import ModelNotAvailable, component_class
from .keymap import COMPONENTS, IGNORED_KEYS, KeyMap, UnknownKey, VaeBlocks, VaeLayoutError

_logger = logging.getLogger("ltxtune.models")
Log = Callable[[str], None]  # a progress line sink; the module logger when None

CONVERTER_VERSION = "1"  # bump when the converted layout changes, so cached entries are rebuilt
_CHUNK = 16 << 20
_MAX_HEADER = 100 << 20
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


class CheckpointError(ModelNotAvailable):
    """A single-file checkpoint that cannot be used: unreadable, truncated, corrupt or not LTX-2."""


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    shape: list[int]
    start: int  # byte offsets relative to the data section
    end: int


@dataclass(frozen=True)
class Header:
    path: Path
    size: int
    data_start: int
    metadata: dict[str, str]
    tensors: dict[str, TensorEntry]


def looks_like_single_file(path: Path) -> bool:
    return path.suffix == ".safetensors" and not path.is_dir()


def read_header(path: Path) -> Header:
    """The safetensors header of `path`, checked against the file's size; raises CheckpointError."""
    path = Path(path)
    what = f"checkpoint {path}"
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            raw_length = handle.read(8)
            if len(raw_length) < 8:
                raise CheckpointError(f"{what} is not a safetensors file ({size} bytes; empty or truncated)")
            length = int.from_bytes(raw_length, "little")
            if length <= 1 or length > min(_MAX_HEADER, size - 8):
                raise CheckpointError(f"{what} is not a safetensors file or is truncated (header length {length}, file {size} bytes)")
            raw = handle.read(length)
    except OSError as error:
        raise CheckpointError(f"{what} cannot be read: {error.strerror or error}") from None
    try:
        table = json.loads(raw.decode("utf-8"))
        if not isinstance(table, dict):
            raise ValueError("not an object")
    except (UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{what} is corrupt: its safetensors header is not valid JSON ({error})") from None
    metadata = table.pop("__metadata__", None) or {}
    data_start = 8 + length
    tensors: dict[str, TensorEntry] = {}
    end_of_data = 0
    for key, entry in table.items():
        try:
            dtype, shape, (start, end) = entry["dtype"], [int(n) for n in entry["shape"]], entry["data_offsets"]
            count = 1
            for n in shape:
                count *= n
            if dtype not in DTYPE_BYTES or end - start != count * DTYPE_BYTES[dtype] or start < 0:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{what} is corrupt: tensor {key!r} has an invalid header entry") from None
        tensors[key] = TensorEntry(dtype, shape, int(start), int(end))
        end_of_data = max(end_of_data, int(end))
    if data_start + end_of_data > size:
        raise CheckpointError(
            f"{what} is truncated: its header describes {data_start + end_of_data} bytes but the file has {size}. "
            "Download it again."
        )
    return Header(path=path, size=size, data_start=data_start, metadata=metadata, tensors=tensors)


@dataclass
class OriginalCheckpoint:
    """An original-layout LTX-2.x file: its metadata, diffusers configs and per-component key plan."""

    header: Header
    config: dict[str, Any]
    model_version: str | None
    configs: dict[str, tuple[str, dict[str, Any]]]
    plan: dict[str, list[tuple[str, str]]]  # component -> [(original key, diffusers key)]
    ignored: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.header.path

    @property
    def is_ltx23(self) -> bool:
        return is_ltx23(self.config["transformer"])

    @property
    def vocoder_class(self) -> str:
        return self.configs["vocoder"][0]

    @classmethod
    def open(cls, path: str | os.PathLike) -> "OriginalCheckpoint":
        header = read_header(Path(path))
        return cls.from_header(header)

    @classmethod
    def from_header(cls, header: Header) -> "OriginalCheckpoint":
        where = f"checkpoint {header.path}"
        raw_config = header.metadata.get("config")
        if raw_config is None:
            raise CheckpointError(
                f"{where} has no 'config' in its safetensors metadata, so it is not an original LTX-2 single-file "
                "release (a diffusers-format model is a directory with model_index.json)"
            )
        try:
            config = json.loads(raw_config) if isinstance(raw_config, str) else raw_config
        except ValueError as error:
            raise CheckpointError(f"{where} is corrupt: its metadata 'config' is not valid JSON ({error})") from None
        shapes = {key: entry.shape for key, entry in header.tensors.items()}
        try:
            configs = diffusers_configs(config, shapes)
            keymap = KeyMap(VaeBlocks.from_metadata(config["vae"]), bwe_vocoder=configs["vocoder"][0] == "LTX2VocoderWithBWE")
        except (ArchitectureError, VaeLayoutError) as error:
            raise CheckpointError(f"{where}: {error}") from None
        except (KeyError, TypeError, IndexError, ValueError) as error:
            raise CheckpointError(f"{where}: its metadata 'config' is incomplete or malformed ({error!r})") from None
        plan: dict[str, list[tuple[str, str]]] = {component: [] for component in COMPONENTS}
        ignored, unknown = [], []
        for key in header.tensors:
            if key in IGNORED_KEYS:
                ignored.append(key)
                continue
            try:
                component, new_key = keymap.to_diffusers(key)
            except (UnknownKey, ValueError):
                unknown.append(key)
                continue
            plan[component].append((key, new_key))
        if unknown:
            shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise CheckpointError(f"{where} has {len(unknown)} tensor(s) no LTX-2 component owns: {shown}")
        missing = [component for component, keys in plan.items() if not keys]
        if missing:
            raise CheckpointError(f"{where} has no tensors for: {', '.join(missing)} (a partial or different model)")
        version = header.metadata.get("model_version")
        return cls(header=header, config=config, model_version=version, configs=configs, plan=plan, ignored=ignored)

    def num_params(self, component: str) -> int:
        total = 0
        for key, _ in self.plan[component]:
            count = 1
            for n in self.header.tensors[key].shape:
                count *= n
            total += count
        return total

    def dtypes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.header.tensors.values():
            counts[entry.dtype] = counts.get(entry.dtype, 0) + 1
        return counts

    def write_component(self, component: str, directory: Path, on_bytes=None) -> None:
        """Stream one component's tensors (renamed, bytes unchanged) into `directory`/{config.json, weights}."""
        import diffusers

        class_name, config = self.configs[component]
        directory.mkdir(parents=True)
        (directory / "config.json").write_text(
            json.dumps({"_class_name": class_name, "_diffusers_version": diffusers.__version__, **config}, indent=2)
        )
        entries = [(new, self.header.tensors[old]) for old, new in self.plan[component]]
        table: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for new, entry in entries:
            table[new] = {"dtype": entry.dtype, "shape": entry.shape, "data_offsets": [offset, offset + entry.end - entry.start]}
            offset += entry.end - entry.start
        raw = json.dumps(table, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        with self.path.open("rb") as source, (directory / WEIGHTS_NAME).open("wb") as target:
            target.write(len(raw).to_bytes(8, "little"))
            target.write(raw)
            for _, entry in entries:
                source.seek(self.header.data_start + entry.start)
                remaining = entry.end - entry.start
                while remaining:
                    got = source.readinto(view[: min(_CHUNK, remaining)])
                    if not got:
                        raise CheckpointError(f"checkpoint {self.path} is truncated (it ended while being read)")
                    target.write(view[:got])
                    remaining -= got
                    if on_bytes is not None:
                        on_bytes(got)

    def check_against_classes(self) -> None:
        """Build each diffusers class on the meta device from the derived config and require every key and
        shape to match (catches layouts this converter does not know, e.g. scaled-fp8 extra tensors)."""
        import torch


        index = model_index(self.vocoder_class)
        for component in COMPONENTS:
            class_name, config = self.configs[component]
            library = index[component][0]
            with torch.device("meta"):
                module = component_class(library, class_name)(**config)
            wanted = {key: list(t.shape) for key, t in module.state_dict().items()}
            got = {new: self.header.tensors[old].shape for old, new in self.plan[component]}
            problems = [f"missing {key}" for key in sorted(set(wanted) - set(got))]
            problems += [f"unexpected {old}" for old, new in self.plan[component] if new not in wanted]
            problems += [f"{key} is {got[key]}, {class_name} expects {wanted[key]}"
                         for key in sorted(set(wanted) & set(got)) if wanted[key] != got[key]]
            if problems:
                shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
                raise CheckpointError(f"checkpoint {self.path}: its {component} tensors do not fit the architecture its "
                                      f"metadata describes ({len(problems)} problem(s): {shown})")

    def total_bytes(self) -> int:
        return sum(self.header.tensors[old].end - self.header.tensors[old].start
                   for keys in self.plan.values() for old, _ in keys)


# ----- content ids and the conversion cache -----

def cache_root() -> Path:
    base = os.environ.get("LTXTUNE_CACHE_DIR") or Path.home() / ".cache" / "ltxtune"
    return Path(base) / "converted"


def file_sha256(path: Path, log: Log | None = None) -> str:
    """sha256 of a file's bytes, remembered by (real path, size, mtime) in the cache root's hashes.json."""
    path = Path(path)
    stat = path.stat()
    memo_path = cache_root() / "hashes.json"
    key = str(path.resolve())
    memo = _read_json(memo_path)
    known = memo.get(key)
    if known and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
        return known["sha256"]
    digest = hashlib.sha256()
    _say(log, f"hashing {path.name} ({stat.st_size / 1e9:.1f} GB) once, to key the conversion cache")
    done, started, last = 0, time.monotonic(), time.monotonic()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with path.open("rb") as handle:
        while got := handle.readinto(view):
            digest.update(view[:got])
            done += got
            if time.monotonic() - last > 10:
                last = time.monotonic()
                _log_rate(log, "hashing", path, done, stat.st_size, started)
    value = digest.hexdigest()
    memo = _read_json(memo_path)  # re-read: another process may have added entries meanwhile
    memo[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": value}
    _write_json_atomic(memo_path, memo)
    return value


def _say(log: Log | None, line: str) -> None:
    (log or _logger.info)(line)


def _log_rate(log: Log | None, what: str, path: Path, done: int, total: int, started: float) -> None:
    elapsed = max(time.monotonic() - started, 1e-6)
    rate = done / elapsed
    eta = (total - done) / rate if rate else 0.0
    _say(log, f"{what} {path.name}: {done / 1e9:.1f} of {total / 1e9:.1f} GB, {rate / 1e6:.0f} MB/s, about {eta:.0f} s left")


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_json_atomic(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(handle, "w") as out:
        json.dump(value, out)
    os.replace(scratch, path)


def model_index(vocoder_class: str) -> dict[str, Any]:
    """`model_index.json` of an LTX-2 pipeline directory (the layout `LTX2Pipeline.save_pretrained` writes)."""
    import diffusers

    return {
        "_class_name": "LTX2Pipeline", "_diffusers_version": diffusers.__version__,
        "audio_vae": ["diffusers", "AutoencoderKLLTX2Audio"], "connectors": ["ltx2", "LTX2TextConnectors"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "Gemma3ForConditionalGeneration"], "tokenizer": ["transformers", "GemmaTokenizer"],
        "transformer": ["diffusers", "LTX2VideoTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLLTX2Video"],
        "vocoder": ["ltx2", vocoder_class],
    }


def write_converted(checkpoint: OriginalCheckpoint, directory: Path, log: Log | None = None) -> None:
    """Write the checkpoint's components as a diffusers pipeline directory without text encoder/tokenizer."""
    import diffusers

    from .tiny import scheduler_config

    directory.mkdir(parents=True, exist_ok=True)
    total, done, started = checkpoint.total_bytes(), [0], time.monotonic()
    last = [started]

    def on_bytes(count: int) -> None:
        done[0] += count
        if time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            _log_rate(log, "converting", checkpoint.path, done[0], total, started)

    for component in COMPONENTS:
        checkpoint.write_component(component, directory / component, on_bytes)
    (directory / "scheduler").mkdir()
    (directory / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": diffusers.__version__, **scheduler_config()},
        indent=2))
    (directory / "model_index.json").write_text(json.dumps(model_index(checkpoint.vocoder_class), indent=2))
    _verify(directory)


def _verify(directory: Path) -> None:
    """Every written weights file opens and its config parses (cheap: headers only)."""
    from safetensors import safe_open

    for component in COMPONENTS:
        with safe_open(str(directory / component / WEIGHTS_NAME), framework="pt") as handle:
            handle.keys()
        json.loads((directory / component / "config.json").read_text())


def converted_pipeline(path: str | os.PathLike, log: Log | None = None) -> Path:
    """The cached diffusers-format directory of an original checkpoint, converting it on first use.

    Raises CheckpointError (naming the file) for anything unreadable; nothing is left in the cache then.
    """
    path = Path(path)
    checkpoint = OriginalCheckpoint.open(path)  # validates before any hashing or writing
    root = cache_root()
    target = root / f"{file_sha256(path, log)[:32]}-v{CONVERTER_VERSION}"
    if (target / "model_index.json").is_file():
        return target
    checkpoint.check_against_classes()
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    started = time.monotonic()
    _say(log, f"converting {path.name} ({checkpoint.total_bytes() / 1e9:.1f} GB) to diffusers components in {target}")
    try:
        write_converted(checkpoint, scratch / "pipeline", log)
        try:
            os.replace(scratch / "pipeline", target)
        except OSError:  # another process converted it first
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _say(log, f"converted {path.name} in {time.monotonic() - started:.1f} s")
    return target
