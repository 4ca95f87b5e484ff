"""Block offload: some blocks of a ModuleList keep their frozen weights in pinned host memory and are
copied to the device one block ahead of use on a side CUDA stream, so the copy hides behind compute.

How it runs, per block `i` (forward pre-hook / forward hook):

- before block `i`: if it is offloaded and not yet on the device, copy it now; make the compute stream
  wait for its copy; then start the copy of the next block in the current direction (`i + 1` going
  forward, `i - 1` during the backward pass) so it overlaps block `i`'s compute;
- after block `i` (or, during the backward pass, before the next one): an offloaded block is parked
  again (its modules point back at the host tensors; the device copy is freed as soon as nothing else
  holds it). At most two offloaded blocks are on the device at a time.

The direction comes from the order blocks run in: with gradient checkpointing the backward pass
recomputes each block's forward in reverse order, so the hooks bring the weights back last block first
and prefetch downwards. Without checkpointing autograd keeps what each block saved for the backward
pass (weights included) alive until then, so offload only saves device memory with checkpointing on.

The copy stream first waits for the compute queued so far: memory freed by a parked block is then
reused by a later copy only after the kernels that read it have run (no `record_stream` needed).

On a CPU device the same mechanics run without streams: "loading" clones the host tensors, so tests
can check that blocks are loaded, parked and prefetched in the right order and that gradients match.

Only the tensors present when the offloader is attached (the frozen base) move; parameters added
later (the LoRA, see `ltxtune.models.memory.place_trainable`) stay on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class _Slot:
    module: torch.nn.Module
    kind: str  # "_parameters" or "_buffers"
    name: str
    host: torch.Tensor


@dataclass
class OffloadStats:
    loads: list[tuple[int, str]] = field(default_factory=list)  # (block, "prefetch" | "on demand"), in order
    waits: int = 0  # blocks whose weights the compute stream had to wait for


class BlockOffloader:
    def __init__(self, blocks: torch.nn.ModuleList, offloaded: list[int], device: torch.device, *,
                 root: torch.nn.Module | None = None, pin: bool = True):
        self.blocks = blocks
        self.offloaded = sorted(set(offloaded))
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.stats = OffloadStats()
        self.trace: list[tuple[str, int, torch.cuda.Event]] | None = None  # set to [] to record CUDA events
        self._slots: dict[int, list[_Slot]] = {}
        self._ready: dict[int, torch.cuda.Event | None] = {}  # on the device (copy done or in flight)
        self._last: int | None = None
        for index in self.offloaded:
            self._slots[index] = self._park_to_host(blocks[index], pin and self.cuda)
        self._handles = []
        for index, block in enumerate(blocks):
            self._handles.append(block.register_forward_pre_hook(self._pre_hook(index)))
            self._handles.append(block.register_forward_hook(self._post_hook(index)))
        if root is not None:
            self._handles.append(root.register_forward_pre_hook(self._root_pre_hook))

    # -- what is where -------------------------------------------------------------------------

    def is_parked(self, index: int) -> bool:
        return index in self._slots and index not in self._ready

    def parked_tensors(self) -> list[torch.Tensor]:
        """The host copies of every block that is parked now."""
        return [slot.host for index in self.offloaded if self.is_parked(index) for slot in self._slots[index]]

    def remove(self) -> None:
        """Detach the hooks and leave every block on the device (for tests and tear-down)."""
        for index in self.offloaded:
            self._ensure(index)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # -- hooks ---------------------------------------------------------------------------------

    def _root_pre_hook(self, module, args):
        self._last = None  # a new forward pass starts at block 0
        self._park_all_but(0)
        if 0 in self._slots and 0 not in self._ready:
            self._prefetch(0, "prefetch")

    def _pre_hook(self, index: int):
        def hook(module, args):
            backward = self._last is not None and self._last in (index, index + 1)
            self._last = index
            nxt = index - 1 if backward else index + 1
            self._park_all_but(index, nxt)
            if index in self._slots:
                self._ensure(index)
            if nxt in self._slots and nxt not in self._ready:
                self._prefetch(nxt, "prefetch")
            self._record("compute_start", index)
        return hook

    def _post_hook(self, index: int):
        def hook(module, args, output):
            self._record("compute_end", index)
            if index in self._slots:
                self._park(index)
        return hook

    def _park_all_but(self, *keep: int) -> None:
        """Park loaded blocks that are not needed now. The recomputed forward of a checkpointed block stops
        as soon as the backward pass has what it needs (torch's early stop), so its forward hook does not
        run then; the next block's pre-hook parks it instead (its backward has run by then: autograd runs
        a later block's nodes before an earlier block's)."""
        for index in [i for i in self._ready if i not in keep]:
            self._park(index)

    # -- moving --------------------------------------------------------------------------------

    @staticmethod
    def _park_to_host(block: torch.nn.Module, pin: bool) -> list[_Slot]:
        slots = []
        for module in block.modules():
            for kind in ("_parameters", "_buffers"):
                for name, tensor in getattr(module, kind).items():
                    if tensor is None:
                        continue
                    host = _host_copy(tensor, pin)
                    getattr(module, kind)[name] = host
                    slots.append(_Slot(module, kind, name, host))
        return slots

    def _prefetch(self, index: int, how: str) -> None:
        self.stats.loads.append((index, how))
        slots = self._slots[index]
        if not self.cuda:
            for slot in slots:
                getattr(slot.module, slot.kind)[slot.name] = _device_copy(slot.host, self.device, clone=True)
            self._ready[index] = None
            return
        self.copy_stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.copy_stream):
            self._record("copy_start", index, self.copy_stream)
            copies = [_device_copy(slot.host, self.device) for slot in slots]
            done = torch.cuda.Event(enable_timing=self.trace is not None)
            done.record(self.copy_stream)
            self._record("copy_end", index, self.copy_stream)
        for slot, copy in zip(slots, copies):
            getattr(slot.module, slot.kind)[slot.name] = copy
        self._ready[index] = done

    def _ensure(self, index: int) -> None:
        if index not in self._ready:
            self._prefetch(index, "on demand")
        event = self._ready[index]
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)
            self.stats.waits += 1
            self._ready[index] = None  # waited once; later uses are ordered behind that wait

    def _park(self, index: int) -> None:
        for slot in self._slots[index]:
            getattr(slot.module, slot.kind)[slot.name] = slot.host
        self._ready.pop(index, None)

    def _record(self, what: str, index: int, stream: torch.cuda.Stream | None = None) -> None:
        if self.trace is None or not self.cuda:
            return
        event = torch.cuda.Event(enable_timing=True)
        event.record(stream or torch.cuda.current_stream(self.device))
        self.trace.append((what, index, event))


def _host_copy(tensor: torch.Tensor, pin: bool) -> torch.Tensor:
    """The tensor on the host (pinned when asked and possible), keeping its Parameter-ness."""
    host = _device_copy(tensor, torch.device("cpu"))
    return _pinned(host) if pin else host


def _pinned(tensor: torch.Tensor) -> torch.Tensor:
    """Pinned host memory makes the copy asynchronous. Plain tensors and tensor subclasses that expose
    their parts (torchao) are pinned part by part; others (bitsandbytes' Params4bit) pin their data."""
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    is_parameter = isinstance(tensor, torch.nn.Parameter)
    data = tensor.data if is_parameter else tensor
    if hasattr(tensor, "quant_state"):  # bitsandbytes: a Parameter subclass holding its own state
        tensor.data = data.pin_memory()
        return tensor
    if is_traceable_wrapper_subclass(data):
        names, context = data.__tensor_flatten__()
        parts = {name: getattr(data, name).pin_memory() for name in names}
        pinned = type(data).__tensor_unflatten__(parts, context, data.size(), data.stride())
    else:
        pinned = data.pin_memory()
    return torch.nn.Parameter(pinned, requires_grad=False) if is_parameter else pinned


def _device_copy(tensor: torch.Tensor, device: torch.device, *, clone: bool = False) -> torch.Tensor:
    if hasattr(tensor, "quant_state"):  # bitsandbytes moves its quantisation state itself
        return tensor.to(device, non_blocking=True)
    is_parameter = isinstance(tensor, torch.nn.Parameter)
    data = tensor.data if is_parameter else tensor
    moved = data.to(device, non_blocking=True, copy=clone)
    return torch.nn.Parameter(moved, requires_grad=False) if is_parameter else moved


def spread(count: int, total: int) -> list[int]:
    """`count` of `total` block indices, evenly spread (so a copy overlaps a resident block's compute
    where there is one); `count == total` is every block."""
    if not 0 <= count <= total:
        raise ValueError(f"cannot offload {count} of {total} blocks")
    return sorted({(i * total) // count for i in range(count)}) if count else []
