"""ltxtune: self-hosted LoRA training for LTX-2 and LTX-2.3."""

import logging as _logging

__version__ = "0.1.0"

# torchao (the int8 memory preset) is imported by diffusers whenever it is installed, and on import logs
# warnings about optional CUDA kernels a CPU build lacks and about its own deprecated pytree and tensor
# registrations. None of them concern ltxtune, which only uses its weight-only int8 layers.
for _name in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)
