"""Count the bytes a real training step holds, on the meta device (no FLOPs, no memory).

`LiveBytes` is a `TorchDispatchMode` that sees every tensor an operator returns, registers each new
storage once (by a weak reference to the storage object, so views and in-place results are not
counted twice) and subtracts its bytes when the storage is freed. Meta storages carry their real
size, so a full-size step traced on meta gives the live-byte curve a CUDA step would have, minus
what the CUDA caching allocator adds (fragmentation, workspaces) and the CUDA context.

Why not `torch.distributed._tools.mem_tracker.MemTracker`: it attributes memory to modules and
needs a real device for its snapshots; on meta tensors all we need is the storage bookkeeping it
is built on, which this module does in a few lines and can start/stop around any phase.

`efficient_attention()` routes `F.scaled_dot_product_attention` through the memory-efficient
kernel's meta implementation: on meta (and on CPU) SDPA would otherwise pick the math backend and
materialise the S x S score matrix, which CUDA's flash / memory-efficient kernels never do.
"""

from __future__ import annotations

import contextlib
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveBytes(TorchDispatchMode):
    """Live and peak bytes of the storages created while the mode is active.

    `existing` are tensors that already live (weights, LoRA, optimiser state): they count from the
    start, and an operator that returns a view of one (`weight.t()` inside `linear`) adds nothing.
    `ignored` tensors (weights held in host memory by block offload) count nothing, views included.
    `mark(label)` records the live bytes at a point of the step (e.g. "forward").
    """

    def __init__(self, existing=(), ignored=()):
        super().__init__()
        self.live = self.peak = 0
        self.marks: dict[str, int] = {}
        self._seen: dict[int, weakref.ref] = {}
        for tensor in ignored:
            self._track(tensor, counted=False)
        for tensor in existing:
            self._track(tensor)
        self.baseline = self.peak = self.live

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self._track(leaf)
        return out

    def _track(self, tensor: torch.Tensor, counted: bool = True) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)
        known = self._seen.get(key)
        if known is not None and known() is storage:
            return
        size = storage.nbytes() if counted else 0
        self._seen[key] = weakref.ref(storage, lambda _ref, key=key, size=size: self._free(key, size))
        self.live += size
        self.peak = max(self.peak, self.live)

    def _free(self, key: int, size: int) -> None:
        self.live -= size
        self._seen.pop(key, None)

    def mark(self, label: str) -> None:
        self.marks[label] = self.live


def _efficient_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype, device=query.device).masked_fill(~attn_mask, float("-inf"))
        attn_mask = attn_mask.to(query.dtype).expand(query.shape[0], query.shape[1], query.shape[2], key.shape[2])
    out, *_ = torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, attn_mask, True, dropout_p, is_causal, scale=scale
    )
    return out


@contextlib.contextmanager
def efficient_attention():
    """Within the block, SDPA uses the memory-efficient kernel's memory behaviour (see module doc)."""
    original = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = _efficient_sdpa
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
