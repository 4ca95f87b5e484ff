"""The prepared dataset's fitted media as tensors for encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ltxtune.data import read_video, read_wav

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_media(path: Path) -> torch.Tensor:
    """A fitted clip or image as (3, F, H, W) float32 in [-1, 1] (an image is one frame)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        with Image.open(path) as image:
            frames = np.asarray(image.convert("RGB"))[None]
    else:
        frames = read_video(path)
    return torch.from_numpy(np.array(frames)).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def read_audio(path: Path) -> tuple[torch.Tensor, int]:
    """A fitted clip's audio as (2, samples) float32 and its sample rate."""
    waveform, rate = read_wav(path)
    return torch.from_numpy(np.array(waveform, dtype=np.float32)), rate
