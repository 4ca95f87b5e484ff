"""Benchmark dataset preparation on generated clips.

    .venv/bin/python scripts/bench_prepare.py                         # 20 clips, 10 s, 1920x1080, audio
    .venv/bin/python scripts/bench_prepare.py --clips 6 --seconds 4   # quicker

Generates `--distinct` different clips (textured background panning behind moving shapes, a sine
tone; x264 at --crf, AAC 48 kHz) and zips them as `--clips` files, then runs
`prepare_dataset` for a fal t2v request (default: 89 frames at 24 fps into the 768x448 bucket,
audio on) in a fresh subprocess, and prints clips per second, seconds per clip, CPU use and peak
RSS of the preparing process and of its largest worker. Preparation uses every core.
Generated media is cached under --cache so repeated runs skip generation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.data.media makes the clips


def _make_clip(args: tuple[str, int, int, float, int, int, int]) -> str:
    from tests.data.media import make_video

    path, width, height, seconds, fps, crf, seed = args
    make_video(
        Path(path), width, height, frames=round(seconds * fps), fps=fps, textured=True, crf=crf, tone_hz=220 + 40 * seed
    )
    return path


def build_dataset(options: argparse.Namespace) -> Path:
    size = f"{options.width}x{options.height}_{options.seconds}s_{options.fps}fps_crf{options.crf}"
    key = f"{size}_{options.distinct}of{options.clips}"
    folder = Path(options.cache) / key
    archive = folder / "dataset.zip"
    if archive.exists():
        return archive
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [
        (str(folder / f"source{n}.mp4"), options.width, options.height, options.seconds, options.fps, options.crf, n)
        for n in range(options.distinct)
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        sources = list(pool.map(_make_clip, jobs))
    print(f"generated {len(sources)} distinct clips in {time.perf_counter() - started:.1f} s", flush=True)
    partial = archive.with_suffix(".part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as out:
        for n in range(options.clips):
            out.write(sources[n % len(sources)], f"clips/clip{n:02d}.mp4")
            out.writestr(f"clips/clip{n:02d}.txt", f"a textured clip number {n}")
    partial.replace(archive)
    return archive


def measure(archive: Path, work: Path, options: argparse.Namespace) -> dict:
    """Runs in a fresh process: prepare the archive and report time and memory."""
    from ltxtune.data import prepare_dataset
    from ltxtune.protocols import build_plan

    plan = build_plan(
        "fal-ai/ltx23-trainer-v2/t2v",
        {
            "training_data_url": str(archive),
            "number_of_frames": options.frames,
            "frame_rate": options.fps_out,
            "resolution": options.resolution,
            "aspect_ratio": options.aspect,
        },
    )
    cpu_before = os.times()
    started = time.perf_counter()
    prepared = prepare_dataset(plan, work, allow_local_files=True, workers=options.workers)
    wall = time.perf_counter() - started
    cpu_after = os.times()
    cpu = sum(cpu_after[:4]) - sum(cpu_before[:4])
    return {
        "samples": len(prepared.samples),
        "skipped": len(prepared.skipped),
        "audio": prepared.audio,
        "bucket": sorted(prepared.buckets),
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_worker_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "prepared_mib": sum(p.stat().st_size for p in (work / "prepared").rglob("*") if p.is_file()) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--distinct", type=int, default=4, help="different clips generated (repeated to --clips)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=int, default=30, help="source frame rate")
    parser.add_argument("--crf", type=int, default=16, help="source quality")
    parser.add_argument("--frames", type=int, default=89, help="number_of_frames")
    parser.add_argument("--fps-out", type=int, default=24, help="frame_rate")
    parser.add_argument("--resolution", default="medium")
    parser.add_argument("--aspect", default="16:9")
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    parser.add_argument("--cache", default="/tmp/ltxtune-bench")
    parser.add_argument("--measure", nargs=2, metavar=("ARCHIVE", "WORK"), help=argparse.SUPPRESS)
    options = parser.parse_args()

    if options.measure:
        print(json.dumps(measure(Path(options.measure[0]), Path(options.measure[1]), options)))
        return

    archive = build_dataset(options)
    work = Path(options.cache) / "work"
    command = [sys.executable, __file__, "--measure", str(archive), str(work), *sys.argv[1:]]
    result = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    wall, clips = figures["wall_s"], options.clips
    print(
        f"prepared {clips} clips of {options.seconds:g} s at {options.width}x{options.height} {options.fps} fps "
        f"-> {figures['samples']} samples of {options.frames} frames at {options.fps_out} fps, "
        f"bucket {', '.join(figures['bucket'])}, audio {'on' if figures['audio'] else 'off'}, "
        f"{figures['skipped']} skipped, on {os.cpu_count()} cores"
    )
    print(f"  wall time        {wall:.1f} s")
    print(f"  clips per second {clips / wall:.2f}")
    print(f"  seconds per clip {wall / clips:.2f}")
    print(f"  CPU use          {figures['cpu_s'] / wall:.2f} cores, {figures['cpu_s'] / clips:.2f} CPU-seconds per clip")
    main_rss, worker_rss = figures["peak_rss_mib"], figures["peak_worker_rss_mib"]
    print(f"  peak RSS         {main_rss:.0f} MiB (main), {worker_rss:.0f} MiB (largest worker)")
    print(f"  prepared size    {figures['prepared_mib']:.1f} MiB")


if __name__ == "__main__":
    main()
