"""float8 compute for the frozen base's linear layers (CUDA, compute capability 8.9 and up).

A LoRA step needs the base's *input* gradients but never its weight gradients. torchao's float8
training (`convert_to_float8_training`) computes the weight gradient of every converted layer
whatever `requires_grad` says, a third more matmuls than needed; so ltxtune uses torch's own scaled
matmul (`torch._scaled_mm`, the kernel torchao's float8 also calls) with the recipe torchao calls
"tensorwise": one scale per tensor, e4m3 for weights and activations, e5m2 for gradients.

- The weight is frozen, so it is quantised once, at conversion (a non-persistent buffer: the
  state dict, and the LoRA file, stay as they were).
- forward: y = (x / s_x)_e4m3 @ (W / s_w)_e4m3^T * s_x s_w (+ bias), out in bf16.
- backward: dx = (dy / s_dy)_e5m2 @ (W / s_w)_e4m3 * s_dy s_w; no dW, and x is not saved.
- The LoRA layers (peft's lora_A / lora_B) are left in full precision.
"""

from __future__ import annotations

import torch

E4M3 = torch.float8_e4m3fn
E5M2 = torch.float8_e5m2
MIN_CAPABILITY = (8, 9)


class Fp8Unavailable(RuntimeError):
    """fp8 compute asked for where the device cannot do it; the message says what to do."""


def fp8_unavailable(device: torch.device) -> str | None:
    """Why fp8 compute cannot run on `device`, or None."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return f"fp8 compute needs a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper, Blackwell); this run is on {device.type}"
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        return f"fp8 compute needs compute capability 8.9 or newer (Ada, Hopper, Blackwell); {name} is {capability[0]}.{capability[1]}"
    if not hasattr(torch, "_scaled_mm"):
        return f"fp8 compute needs torch._scaled_mm, which torch {torch.__version__} lacks"
    return None


def _dequant_scale(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """amax / the format's largest value, as float32: x / scale fits the format."""
    return (tensor.detach().abs().amax().float() / torch.finfo(dtype).max).clamp(min=1e-12)


def _quantise(tensor: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    limit = torch.finfo(dtype).max
    return (tensor.float() / scale).clamp(-limit, limit).to(dtype)


class _Float8FrozenMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight_fp8, weight_scale, bias):
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        x_scale = _dequant_scale(flat, E4M3)
        out = torch._scaled_mm(_quantise(flat, x_scale, E4M3), weight_fp8.t(), scale_a=x_scale, scale_b=weight_scale,
                               bias=None if bias is None else bias.to(torch.bfloat16), out_dtype=torch.bfloat16,
                               use_fast_accum=True)
        ctx.save_for_backward(weight_fp8, weight_scale)
        ctx.input_shape, ctx.input_dtype = shape, x.dtype
        return out.reshape(*shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        weight_fp8, weight_scale = ctx.saved_tensors
        flat = grad_out.reshape(-1, grad_out.shape[-1])
        grad_scale = _dequant_scale(flat, E5M2)
        # _scaled_mm wants its second operand column-major: W (out, in) laid out transposed.
        weight_column_major = weight_fp8.t().contiguous().t()
        grad_in = torch._scaled_mm(_quantise(flat, grad_scale, E5M2), weight_column_major, scale_a=grad_scale,
                                   scale_b=weight_scale, out_dtype=torch.bfloat16)
        return grad_in.reshape(ctx.input_shape).to(ctx.input_dtype), None, None, None


class Float8FrozenLinear(torch.nn.Linear):
    """A frozen `nn.Linear` whose matmuls run in float8; shares the original weight and bias."""

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear) -> "Float8FrozenLinear":
        new = cls.__new__(cls)
        torch.nn.Module.__init__(new)
        new.in_features, new.out_features = linear.in_features, linear.out_features
        new.weight, new.bias = linear.weight, linear.bias
        scale = _dequant_scale(linear.weight, E4M3)
        new.register_buffer("weight_fp8", _quantise(linear.weight.detach(), scale, E4M3), persistent=False)
        new.register_buffer("weight_scale", scale, persistent=False)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Float8FrozenMatmul.apply(x, self.weight_fp8, self.weight_scale, self.bias)


def _convertible(name: str, module: torch.nn.Module, min_features: int) -> bool:
    if type(module) is not torch.nn.Linear or "lora_" in name or module.weight.requires_grad:
        return False
    features = (module.in_features, module.out_features)
    return all(size % 16 == 0 and size >= min_features for size in features)


def convert_to_fp8(transformer: torch.nn.Module, device: torch.device, *, min_features: int = 256) -> int:
    """Swap every frozen linear layer of the transformer blocks (both sizes multiples of 16 and at
    least `min_features`) for a `Float8FrozenLinear`; returns how many. Raises `Fp8Unavailable`."""
    reason = fp8_unavailable(device)
    if reason:
        raise Fp8Unavailable(reason)
    count = 0
    for block in transformer.transformer_blocks:
        for name, module in list(block.named_modules()):
            if not _convertible(name, module, min_features):
                continue
            parent_name, _, child = name.rpartition(".")
            parent = block.get_submodule(parent_name) if parent_name else block
            setattr(parent, child, Float8FrozenLinear.from_linear(module))
            count += 1
    return count


def revert_fp8(transformer: torch.nn.Module) -> int:
    """Put plain `nn.Linear` layers (the same weights) back where `convert_to_fp8` put float8 ones."""
    count = 0
    for block in transformer.transformer_blocks:
        for name, module in list(block.named_modules()):
            if isinstance(module, Float8FrozenLinear):
                linear = torch.nn.Linear.__new__(torch.nn.Linear)
                torch.nn.Module.__init__(linear)
                linear.in_features, linear.out_features = module.in_features, module.out_features
                linear.weight, linear.bias = module.weight, module.bias
                parent_name, _, child = name.rpartition(".")
                setattr(block.get_submodule(parent_name) if parent_name else block, child, linear)
                count += 1
    return count
