"""The debug archive (`debug_dataset`): the preprocessed data as the trainer sees it.

debug_dataset.zip
  manifest.json              the prepared manifest
  samples/<id>.mp4           each fitted clip, playable, with its fitted audio (AAC)
  samples/<id>.png           each fitted still
  samples/<id>_ref.mp4|png   v2v references
  samples/<id>.wav           the training audio
  samples/<id>.txt           the first caption (trigger included); all variants are in the manifest
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ltxtune.data.manifest import MANIFEST, PreparedDataset

DEBUG_ARCHIVE = "debug_dataset.zip"


def write_debug_archive(prepared: PreparedDataset, dest_zip: Path) -> Path:
    dest_zip = Path(dest_zip)
    dest_zip.parent.mkdir(parents=True, exist_ok=True)
    temporary = dest_zip.with_name(dest_zip.name + ".part")
    with zipfile.ZipFile(temporary, "w") as archive:
        archive.writestr(
            MANIFEST, json.dumps(prepared.to_dict(), indent=2, ensure_ascii=False) + "\n", zipfile.ZIP_DEFLATED
        )
        for sample in prepared.samples:
            for relative in (sample.media, sample.reference, sample.audio):
                if relative is not None:
                    method = zipfile.ZIP_DEFLATED if relative.endswith(".wav") else zipfile.ZIP_STORED
                    archive.write(prepared.path(relative), relative, compress_type=method)
            caption_name = str(Path(sample.media).with_suffix(".txt"))
            archive.writestr(caption_name, sample.captions[0] + "\n", zipfile.ZIP_DEFLATED)
    temporary.replace(dest_zip)
    return dest_zip
