"""Peak host memory and speed of converting an original LTX-2.x single file to diffusers components.

    .venv/bin/python scripts/bench_convert.py --layers 1 --work /tmp/bench-convert    # ~9 GB file
    .venv/bin/python scripts/bench_convert.py --release ltx-2-19b-dev --layers 2

Writes a checkpoint with the official release's real keys, shapes, dtypes and metadata (from
`shared/fixtures/ltx-checkpoints/<release>.manifest.json.gz`), keeping the first `--layers`
transformer blocks (the metadata says so), with zero-filled tensors (a sparse file, so it is written
at once). Then converts it with `ltxtune.models.single_file.converted_pipeline` in a fresh
subprocess, twice (the second run must hit the cache), and prints file size, seconds, MB/s and the
converting process's peak RSS beside the RSS after importing torch and diffusers alone.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"BF16": 2, "F16": 2, "F32": 4}

CHILD = r"""
import json, resource, sys, time
import torch, diffusers  # the baseline every ltxtune process pays
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from ltxtune.models.single_file import converted_pipeline
started = time.monotonic()
out = converted_pipeline(sys.argv[1])
print(json.dumps({"seconds": time.monotonic() - started, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "baseline_kb": base, "out": str(out)}))
"""


def fixtures() -> Path:
    for folder in (ROOT, *ROOT.parents):
        if (folder / "shared" / "fixtures" / "ltx-checkpoints").is_dir():
            return folder / "shared" / "fixtures" / "ltx-checkpoints"
    sys.exit("shared/fixtures/ltx-checkpoints not found above the repository")


def write_checkpoint(release: str, layers: int, path: Path) -> int:
    manifest = json.loads(gzip.open(fixtures() / f"{release}.manifest.json.gz").read())
    config = manifest["metadata"]["config"]
    config["transformer"]["num_layers"] = layers
    table, offset = {}, 0
    for group in manifest["components"].values():
        for key, entry in group["tensors"].items():
            block = re.match(r"model\.diffusion_model\.transformer_blocks\.(\d+)\.", key)
            if block and int(block.group(1)) >= layers:
                continue
            count = 1
            for n in entry["shape"]:
                count *= n
            size = count * SIZES[entry["dtype"]]
            table[key] = {"dtype": entry["dtype"], "shape": entry["shape"], "data_offsets": [offset, offset + size]}
            offset += size
    table["__metadata__"] = {"config": json.dumps(config), "model_version": "2.3.0" if "2.3" in release else "2.0.0"}
    header = json.dumps(table).encode()
    header += b" " * (-len(header) % 8)
    with path.open("wb") as handle:
        handle.write(len(header).to_bytes(8, "little"))
        handle.write(header)
        handle.truncate(8 + len(header) + offset)  # zeros, without writing them
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", default="ltx-2.3-22b-dev", choices=["ltx-2.3-22b-dev", "ltx-2-19b-dev"])
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-convert"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    checkpoint = args.work / f"{args.release}-{args.layers}-layers.safetensors"
    size = write_checkpoint(args.release, args.layers, checkpoint)
    print(f"{checkpoint}: {size / 1e9:.2f} GB, {args.layers} of 48 transformer blocks")
    env = {**os.environ, "LTXTUNE_CACHE_DIR": str(args.work / "cache"), "PYTHONPATH": str(ROOT / "src")}
    for attempt in ("first (hash + convert)", "second (cached)"):
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-c", CHILD, str(checkpoint)], env=env, check=True,
                                capture_output=True, text=True)
        report = json.loads(result.stdout.strip().splitlines()[-1])
        wall = time.monotonic() - started
        print(f"{attempt}: {report['seconds']:.1f} s in converted_pipeline ({size / 1e6 / max(report['seconds'], 1e-6):.0f} MB/s), "
              f"{wall:.1f} s with the process start; peak RSS {report['peak_kb'] / 1024:.0f} MiB "
              f"(torch + diffusers imported: {report['baseline_kb'] / 1024:.0f} MiB); file {size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
