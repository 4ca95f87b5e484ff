"""Weight-only quantisation of a frozen base's Linear layers, one weight format per memory preset.

- fp8:  `Fp8Linear`, float8 e4m3 weights with one float32 scale per output channel, dequantised to the
        compute dtype inside the matmul. Our own small module: it runs wherever torch has float8 casts
        (CPU included).
- int8: torchao's `Int8WeightOnlyConfig` (symmetric per-channel int8 weights as an `Int8Tensor` on a
        plain `nn.Linear`). torchao rather than optimum-quanto: torchao is maintained alongside torch
        (0.18 targets the torch 2.13 line we pin), works on CPU and CUDA, and peft wraps its layers
        natively (`TorchaoLoraLinear`), while quanto's last release predates torch 2.7 and peft has no
        dispatch for its `QLinear`.
- nf4:  bitsandbytes `Linear4bit` with `Params4bit` (NormalFloat 4-bit, CUDA only); peft wraps it with
        its own bnb LoRA layer.

Every format keeps the LoRA in full precision: peft adds the adapter beside the quantised layer and only
the frozen base weight is stored in fewer bits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ltxtune.specs.memory import WeightFormat

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448


class _Fp8Matmul(torch.autograd.Function):
    """x @ dequantised(W).T + b, saving the float8 weight (not a dequantised copy) for the backward pass,
    so a quantised layer keeps only its 1-byte weight alive between forward and backward."""

    @staticmethod
    def forward(ctx, x, weight, scale, bias):
        ctx.save_for_backward(weight, scale)
        return F.linear(x, _dequantise(weight, scale, x.dtype), bias)

    @staticmethod
    def backward(ctx, grad_output):
        weight, scale = ctx.saved_tensors
        grad_input = grad_output @ _dequantise(weight, scale, grad_output.dtype)
        return grad_input, None, None, None


def _dequantise(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return weight.to(dtype) * scale.to(dtype)[:, None]


class Fp8Linear(torch.nn.Linear):
    """A frozen Linear whose weight is float8 e4m3 with a per-output-channel scale.

    A subclass of `nn.Linear` (same `in_features` / `out_features` / `weight` / `bias`), so peft's
    default LoRA dispatch wraps it like any Linear; `compute_dtype` tells peft (which reads it, as for
    bitsandbytes layers) to create the adapter in the compute dtype rather than in float8.
    """

    def __init__(self, linear: torch.nn.Linear, compute_dtype: torch.dtype):
        torch.nn.Module.__init__(self)  # not Linear.__init__: it would allocate and initialise a weight
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype = compute_dtype
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / FP8_MAX
        self.weight = torch.nn.Parameter((weight / scale[:, None]).to(FP8), requires_grad=False)
        self.register_buffer("weight_scale", scale)
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.compute_dtype)
        bias = None if self.bias is None else self.bias.to(self.compute_dtype)
        return _Fp8Matmul.apply(x, self.weight, self.weight_scale, bias)

    def dequantised_weight(self) -> torch.Tensor:
        return _dequantise(self.weight, self.weight_scale, self.compute_dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, fp8 e4m3"


def quantise_linears(module: torch.nn.Module, weights: WeightFormat, compute_dtype: torch.dtype) -> int:
    """Replace every `nn.Linear` under `module` (in place) by its `weights`-format counterpart; returns
    how many were replaced. bf16 leaves the module as it is.

    fp8 and int8 quantise where the weights are (move the module to the GPU first: it is much faster);
    nf4 builds bitsandbytes layers that quantise when moved to a CUDA device (`module.to("cuda")`).
    """
    if weights is WeightFormat.bf16:
        return 0
    if weights is WeightFormat.int8:
        return _int8_linears(module)
    convert = (lambda linear: Fp8Linear(linear, compute_dtype)) if weights is WeightFormat.fp8 else (
        lambda linear: _nf4_linear(linear, compute_dtype))
    targets = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
               if type(child) is torch.nn.Linear]
    for parent, name, child in targets:
        setattr(parent, name, convert(child))
    return len(targets)


def _int8_linears(module: torch.nn.Module) -> int:
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    count = sum(1 for m in module.modules() if type(m) is torch.nn.Linear)
    quantize_(module, Int8WeightOnlyConfig(), filter_fn=lambda m, _name: type(m) is torch.nn.Linear)
    return count


def _nf4_linear(linear: torch.nn.Linear, compute_dtype: torch.dtype) -> torch.nn.Module:
    import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                              compute_dtype=compute_dtype, quant_type="nf4", device="cpu")
    layer.weight = bnb.nn.Params4bit(linear.weight.detach().to("cpu"), requires_grad=False, quant_type="nf4")
    if linear.bias is not None:
        layer.bias = torch.nn.Parameter(linear.bias.detach().to("cpu"), requires_grad=False)
    return layer.requires_grad_(False)


def bitsandbytes_available() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False
    return True
