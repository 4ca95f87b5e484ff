"""Check a LoRA file against a family's real architecture: `ltxtune lora check` and the end of every job.

Checks (a failed one makes the verdict `failed`, with one reason per check):
- every key is `diffusion_model.<module>.lora_A.weight` / `.lora_B.weight` (ComfyUI layout, see
  `ltxtune.models.lora`; `transformer.` diffusers keys are read too), both halves present;
- every module is a Linear of the family's full-size transformer (`architecture.transformer_facts`,
  derived from the meta-built model), lora_A is [rank, in] and lora_B [out, rank] for its real
  in/out features, one rank throughout;
- no NaN or Inf;
- not every adapter is zero. An adapter is zero when its weight change B @ A is zero (a lora_B
  left at its zero initialisation is the usual cause); some zero adapters are normal (a video-only
  run never trains the audio layers) and are reported without failing;
- the metadata agrees: `rank` equals the file's rank, `alpha` is a positive number, `family`
  names the family checked against.

It also reports the size of the weight change per block, sqrt(sum over the block's modules of
||B @ A||_F^2), computed without forming B @ A: ||B A||_F^2 = sum((B^T B) * (A A^T)), two
rank x rank products.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ltxtune.errors import ErrorKind, JobError
from ltxtune.models.architecture import transformer_facts
from ltxtune.models.families import get_family
from ltxtune.models.lora import COMFY_PREFIX, DIFFUSERS_PREFIX

_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])\.weight$")
_BLOCK = re.compile(r"^transformer_blocks\.(\d+)\.")
EXAMPLES = 3  # offending names quoted per reason


class LoraCheckInputError(ValueError):
    """The file cannot be read as a LoRA at all, or no family is known to check it against."""


class LoraCheckFailed(JobError):
    """A trained LoRA that fails its check: the job fails (not retried: training is deterministic, so a
    second run would end the same way; billed nothing)."""

    def __init__(self, report: "LoraReport"):
        super().__init__(f"the trained LoRA failed its check: {'; '.join(report.problems)}", ErrorKind.INTERNAL)
        self.report = report


@dataclass(frozen=True)
class LoraReport:
    family: str
    source: str
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    modules: int
    expected_modules: int  # the LoRA targets ltxtune trains on this family
    rank: int | None
    alpha: float | None
    block_change: dict[int, float] = field(default_factory=dict)  # block -> sqrt(sum ||B@A||_F^2)
    zero_adapters: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        return "ok" if self.ok else "failed"

    def as_json(self) -> dict[str, Any]:
        changes = list(self.block_change.values())
        return {
            "verdict": self.verdict,
            "family": self.family,
            "source": self.source,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "modules": self.modules,
            "expected_modules": self.expected_modules,
            "rank": self.rank,
            "alpha": self.alpha,
            "zero_adapters": self.zero_adapters,
            "block_change": {str(k): round(v, 6) for k, v in self.block_change.items()},
            "block_change_max": round(max(changes), 6) if changes else None,
            "block_change_mean": round(sum(changes) / len(changes), 6) if changes else None,
        }

    def summary_lines(self) -> list[str]:
        lines = [f"LoRA check of {self.source} against {self.family}: {self.verdict.upper()}",
                 f"  {self.modules} modules (ltxtune trains {self.expected_modules}), rank {self.rank}, alpha {self.alpha}"]
        if self.block_change:
            top = max(self.block_change, key=self.block_change.get)
            changes = list(self.block_change.values())
            lines.append(f"  weight change per block ||B@A||_F: mean {sum(changes) / len(changes):.4g}, "
                         f"max {self.block_change[top]:.4g} (block {top}), {len(changes)} blocks")
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  warning: {w}" for w in self.warnings]
        return lines


def _examples(names: list[str]) -> str:
    shown = ", ".join(names[:EXAMPLES])
    return shown + (f" and {len(names) - EXAMPLES} more" if len(names) > EXAMPLES else "")


def _read(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise LoraCheckInputError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise LoraCheckInputError(f"{path} is not a readable safetensors file: {error}") from None


def _module_path(key: str) -> str | None:
    for prefix in (COMFY_PREFIX, DIFFUSERS_PREFIX):
        if key.startswith(prefix):
            return key[len(prefix):]
    return None


def _delta_norm(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.to(torch.float64), b.to(torch.float64)
    return math.sqrt(max(0.0, float(((b.T @ b) * (a @ a.T)).sum())))


def check_lora(path_or_state: str | os.PathLike | Mapping[str, torch.Tensor], *, family: str | None = None,
               metadata: Mapping[str, str] | None = None) -> LoraReport:
    """Check a LoRA file (or state dict) against `family` (default: the file's `family` metadata)."""
    if isinstance(path_or_state, Mapping):
        state, meta, source = dict(path_or_state), dict(metadata or {}), "LoRA state dict"
    else:
        state, meta = _read(path_or_state)
        meta.update(metadata or {})
        source = Path(path_or_state).name
    name = family or meta.get("family")
    if not name:
        raise LoraCheckInputError(f"{source} names no family in its metadata: say which one to check against (--family ltx2, ltx23 or tiny)")
    try:
        family_name = get_family(name).name
    except ValueError as error:
        raise LoraCheckInputError(str(error)) from None
    facts = transformer_facts(family_name)
    linears = {name: (fan_in, fan_out) for name, fan_in, fan_out in facts["block_linears"]}
    targets = {name for name, _, _ in facts["lora_targets"]}
    layers = facts["num_layers"]
    if not state:
        raise LoraCheckInputError(f"{source} holds no tensors")

    problems: list[str] = []
    warnings: list[str] = []
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    not_lora = []
    for key, tensor in state.items():
        module = _module_path(key)
        match = _KEY.match(module) if module is not None else None
        if match is None:
            not_lora.append(key)
            continue
        pairs.setdefault(match["module"], {})[match["which"]] = tensor
    if not_lora:
        problems.append(f"{len(not_lora)} keys are not '{COMFY_PREFIX}<module>.lora_A/lora_B.weight' LoRA weights: {_examples(sorted(not_lora))}")
    incomplete = sorted(m for m, d in pairs.items() if len(d) != 2)
    if incomplete:
        problems.append(f"{len(incomplete)} modules lack lora_A or lora_B: {_examples(incomplete)}")

    unknown, misshaped, ranks = [], [], {}
    for module, halves in sorted(pairs.items()):
        if len(halves) != 2:
            continue
        block = _BLOCK.match(module)
        relative = module[block.end():] if block else None
        if block is None or int(block[1]) >= layers or relative not in linears:
            unknown.append(module)
            continue
        fan_in, fan_out = linears[relative]
        a, b = halves["A"], halves["B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != fan_in or b.shape[0] != fan_out or b.shape[1] != a.shape[0]:
            misshaped.append(f"{module} (lora_A {list(a.shape)}, lora_B {list(b.shape)}; the model's Linear is {fan_in} -> {fan_out})")
            continue
        ranks[module] = a.shape[0]
    if unknown:
        problems.append(f"{len(unknown)} modules are not Linear layers of {family_name}'s transformer "
                        f"({layers} blocks): {_examples(unknown)}")
    if misshaped:
        problems.append(f"{len(misshaped)} modules have the wrong shape for {family_name}: {_examples(misshaped)}")
    distinct = sorted(set(ranks.values()))
    if len(distinct) > 1:
        problems.append(f"mixed ranks {distinct}: one rank throughout is expected")
    rank = distinct[0] if len(distinct) == 1 else None

    nonfinite = sorted(key for key, tensor in state.items() if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()))
    if nonfinite:
        problems.append(f"{len(nonfinite)} tensors hold NaN or Inf: {_examples(nonfinite)}")

    block_squares: dict[int, float] = {}
    zero = []
    if not nonfinite:
        for module in ranks:
            norm = _delta_norm(pairs[module]["A"], pairs[module]["B"])
            block = int(_BLOCK.match(module)[1])
            block_squares[block] = block_squares.get(block, 0.0) + norm * norm
            if norm == 0.0:
                zero.append(module)
    if ranks and len(zero) == len(ranks):
        problems.append(f"every adapter is zero (B @ A = 0 for all {len(zero)} modules): the LoRA changes nothing")
    elif zero:
        warnings.append(f"{len(zero)} of {len(ranks)} adapters are zero (B @ A = 0), e.g. {_examples(zero)}")
    missing = len(targets) * layers - sum(1 for m in ranks if m[_BLOCK.match(m).end():] in targets)
    if ranks and missing:
        warnings.append(f"{missing} of the {len(targets) * layers} modules ltxtune trains have no adapter in the file")

    alpha = None
    if "rank" in meta:
        try:
            meta_rank = int(meta["rank"])
        except ValueError:
            problems.append(f"metadata rank={meta['rank']!r} is not a whole number")
        else:
            if rank is not None and meta_rank != rank:
                problems.append(f"metadata says rank {meta_rank} but the weights have rank {rank}")
    if "alpha" in meta:
        try:
            alpha = float(meta["alpha"])
        except ValueError:
            problems.append(f"metadata alpha={meta['alpha']!r} is not a number")
        else:
            if not alpha > 0 or not math.isfinite(alpha):
                problems.append(f"metadata alpha={meta['alpha']} must be a positive number")
    if meta.get("family") and meta["family"] != family_name:
        problems.append(f"metadata says family {meta['family']!r}, checked against {family_name!r}")

    return LoraReport(
        family=family_name, source=source, problems=tuple(problems), warnings=tuple(warnings), modules=len(pairs),
        expected_modules=len(targets) * layers, rank=rank, alpha=alpha,
        block_change={b: math.sqrt(v) for b, v in sorted(block_squares.items())}, zero_adapters=len(zero),
    )
