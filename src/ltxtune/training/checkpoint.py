"""The full training state, saved so a killed run continues exactly where it stopped.

Saved: the step, the LoRA weights, the optimiser state and the losses so far. Not saved, because
they are pure functions of (seed, step): the learning rate, the data order, the noise and the
timesteps. So a run resumed at step k draws exactly what the uninterrupted run drew at step k.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

STATE_FILE = "state.pt"


@dataclass(frozen=True)
class TrainingState:
    step: int  # steps completed
    losses: list[float]


def save_state(directory: Path, step: int, losses: list[float], lora: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, fingerprint: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / STATE_FILE
    temporary = target.with_suffix(".tmp")
    torch.save(
        {
            "step": step,
            "losses": losses,
            "lora": {name: tensor.detach().to("cpu").clone() for name, tensor in lora.items()},
            "optimizer": optimizer.state_dict(),
            "fingerprint": fingerprint,
        },
        temporary,
    )
    temporary.replace(target)
    return target


def load_state(directory: Path, parameters: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer, fingerprint: str) -> TrainingState | None:
    """Restore the LoRA and optimiser from `directory` if it holds the state of this same run."""
    path = directory / STATE_FILE
    if not path.exists():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get("fingerprint") != fingerprint:
        return None
    with torch.no_grad():
        for name, parameter in parameters.items():
            parameter.copy_(saved["lora"][name].to(parameter.device, parameter.dtype))
    optimizer.load_state_dict(saved["optimizer"])
    return TrainingState(step=saved["step"], losses=list(saved["losses"]))
