"""Dataset preparation: fetch, safely extract, match, probe and fit training media.

    from ltxtune.data import prepare_dataset, summarise, PreparedDataset, DatasetError

For the trainer: `read_video(path)` gives a fitted clip's frames (F, H, W, 3) uint8 RGB, and
`read_wav(path)` its audio (2, n) float32 with the sample rate.
"""

from __future__ import annotations

import importlib

# Names resolve on first use, so a fitting worker that imports `ltxtune.data.fit` does not load the
# whole preparation stack (archive handling, scene detection, request models) it never runs.
_EXPORTS = {
    "DEBUG_ARCHIVE": "ltxtune.data.debug",
    "write_debug_archive": "ltxtune.data.debug",
    "DatasetError": "ltxtune.data.errors",
    "PreparedDataset": "ltxtune.data.manifest",
    "Sample": "ltxtune.data.manifest",
    "Skipped": "ltxtune.data.manifest",
    "TOO_SHORT": "ltxtune.data.prepare",
    "prepare_dataset": "ltxtune.data.prepare",
    "summarise": "ltxtune.data.summary",
    "read_video": "ltxtune.data.video",
    "read_wav": "ltxtune.data.audio",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ltxtune.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
