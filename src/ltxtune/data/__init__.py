"""Dataset preparation: fetch, safely extract, match, probe and fit training media.

    from ltxtune.data import prepare_dataset, summarise, PreparedDataset, DatasetError

For the trainer: `read_video(path)` gives a fitted clip's frames (F, H, W, 3) uint8 RGB, and
`read_wav(path)` its audio (2, n) float32 with the sample rate.
"""

from __future__ import annotations

from ltxtune.data.audio import read_wav
from ltxtune.data.debug import DEBUG_ARCHIVE, write_debug_archive
from ltxtune.data.errors import DatasetError
from ltxtune.data.manifest import PreparedDataset, Sample, Skipped
from ltxtune.data.prepare import TOO_SHORT, prepare_dataset
from ltxtune.data.summary import summarise
from ltxtune.data.video import read_video

__all__ = [
    "DEBUG_ARCHIVE",
    "DatasetError",
    "PreparedDataset",
    "Sample",
    "Skipped",
    "TOO_SHORT",
    "prepare_dataset",
    "read_video",
    "read_wav",
    "summarise",
    "write_debug_archive",
]
