"""Media work side by side: dataset preparation vs the ffmpeg CLI, and where a tiny job's time goes.

    .venv/bin/python scripts/bench_media.py                       # 8 clips of 10 s 1080p -> 768x768x89; 100-step job
    .venv/bin/python scripts/bench_media.py --clips 4 --steps 20  # quicker
    .venv/bin/python scripts/bench_media.py --skip-job            # preparation only
    .venv/bin/python scripts/bench_media.py --skip-prepare --validation-resolution low --validation-frames 49

1. `prepare_dataset` (what `ltxtune prepare` runs) on generated 1080p clips (textured, moving,
   with a tone) for a fal t2v request into the 768x768 bucket, 89 frames at 24 fps with audio;
   then the ffmpeg CLI doing the same fit (frame at each output time, scale to fill, centre crop,
   x264 CRF 10 veryfast, AAC, and the WAV at the audio encoder's rate), as many clips at once as
   preparation uses workers. Both run in a fresh process tree whose summed RSS is sampled.
2. A default-validation tiny job (`run_job`, family `tiny`, fal t2v defaults: 960x960x89
   previews for two prompts at four steps, the reel): seconds in training steps, previews and the
   reel, and the peak RSS while each ran (`--validation-resolution/--validation-frames` shrink the
   previews for a quicker run).
Install ffmpeg (`apt-get install -y ffmpeg`) for the comparison; without it the script says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_prepare import build_dataset  # noqa: E402  (generates and caches the clips)


class TreeRss:
    """Samples the summed RSS of a process and its descendants (Linux /proc) every 20 ms."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(0.02)


def tree_rss(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def run_measured(command: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak summed RSS in bytes, stdout) of a command and its children."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    with TreeRss(process.pid) as sampler:
        out, err = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(f"{command[:3]} failed:\n{err[-3000:]}")
    return wall, sampler.peak, out


def plan_body(archive: Path, options) -> dict:
    return {"training_data_url": str(archive), "number_of_frames": options.frames, "frame_rate": options.fps_out,
            "resolution": "medium", "aspect_ratio": "1:1"}


def prepare_child(archive: Path, work: Path, options) -> None:
    from ltxtune.data import prepare_dataset
    from ltxtune.specs import build_plan

    plan = build_plan("fal-ai/ltx23-trainer-v2/t2v", plan_body(archive, options))
    shutil.rmtree(work, ignore_errors=True)
    prepared = prepare_dataset(plan, work, allow_local_files=True, workers=options.workers)
    bucket = plan.dataset.bucket
    print(json.dumps({"samples": len(prepared.samples), "bucket": [bucket.width, bucket.height]}))


def ffmpeg_child(archive: Path, work: Path, options) -> None:
    """The same fit with the ffmpeg CLI: one process per clip, `workers` at a time."""
    from ltxtune.models.families import get_family

    shutil.rmtree(work, ignore_errors=True)
    (work / "src").mkdir(parents=True)
    with zipfile.ZipFile(archive) as source:
        source.extractall(work / "src")
    clips = sorted((work / "src").rglob("*.mp4"))
    side, frames, fps = options.bucket, options.frames, options.fps_out
    rate = get_family("ltx23").audio_sample_rate
    seconds = frames / fps
    (work / "out").mkdir()

    def fit(clip: Path) -> None:
        out = work / "out" / clip.stem
        command = [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(clip),
            "-filter_complex",
            f"[0:v]fps={fps}:round=down,scale={side}:{side}:force_original_aspect_ratio=increase:flags=area+accurate_rnd,"
            f"crop={side}:{side},format=yuv420p[v];[0:a]atrim=0:{seconds},asplit[a1][a2]",
            "-map", "[v]", "-map", "[a1]", "-frames:v", str(frames), "-c:v", "libx264", "-crf", "10", "-preset", "veryfast",
            "-colorspace", "bt709", "-c:a", "aac", "-b:a", "192k", "-ac", "2", f"{out}.mp4",
            "-map", "[a2]", "-ar", str(rate), "-ac", "2", "-c:a", "pcm_s16le", f"{out}.wav",
        ]
        subprocess.run(command, check=True)

    with ThreadPoolExecutor(max_workers=options.workers or os.cpu_count()) as pool:
        list(pool.map(fit, clips))
    print(json.dumps({"clips": len(clips)}))


def job_child(work: Path, options) -> None:
    """A tiny job with the fal t2v validation defaults; prints seconds and peak RSS per phase."""
    import torch

    import ltxtune.training.job as job_module
    from ltxtune.events import RunSettings
    from ltxtune.specs import build_plan
    from ltxtune.specs.common import Family
    from ltxtune.training.previews import Previews
    from tests.data.media import make_video, make_zip

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    shutil.rmtree(work, ignore_errors=True)
    clips = {}
    for n in range(2):
        clip = make_video(work / "src" / f"clip{n}.mp4", 128, 128, frames=17, fps=24, tone_hz=300 + 100 * n)
        clips[f"clip{n}.mp4"], clips[f"clip{n}.txt"] = clip, f"a small test clip {n}"
    archive = make_zip(work / "data.zip", clips)
    body = {"training_data_url": str(archive), "number_of_steps": options.steps, "number_of_frames": 17,
            "resolution": "low", "validation_resolution": options.validation_resolution,
            "validation_number_of_frames": options.validation_frames, "validation": [{"prompt": "a red ball bouncing on a wooden floor"}, {"prompt": "a cat"}]}
    plan = build_plan("fal-ai/ltx23-trainer-v2/t2v", body)
    plan = plan.with_family(Family.TINY if hasattr(Family, "TINY") else Family("tiny"))

    phases: dict[str, list[float]] = {}
    peaks: dict[str, int] = {}
    me = os.getpid()

    def timed(name, function):
        def wrapper(*args, **kwargs):
            with TreeRss(me) as sampler:
                started = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    phases.setdefault(name, []).append(time.perf_counter() - started)
                    peaks[name] = max(peaks.get(name, 0), sampler.peak)
        return wrapper

    Previews.render = timed("previews", Previews.render)
    Previews.reel = timed("reel", Previews.reel)
    job_module.train = timed("loop", job_module.train)
    settings = RunSettings(cache_dir=work / "cache", allow_local_files=True, device="cpu")
    started = time.perf_counter()
    job_module.run_job(plan, work / "job", settings=settings)
    total = time.perf_counter() - started
    rules = plan.validation
    print(json.dumps({
        "total_s": total, "loop_s": sum(phases["loop"]), "previews_s": sum(phases.get("previews", [])),
        "preview_rounds": len(phases.get("previews", [])), "reel_s": sum(phases.get("reel", [])),
        "peak_previews_mib": peaks.get("previews", 0) / 2**20, "peak_loop_mib": peaks.get("loop", 0) / 2**20,
        "preview_size": [rules.bucket.width, rules.bucket.height, rules.frames], "prompts": len(rules.prompts),
        "steps": plan.optimisation.steps,
    }))


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--distinct", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=int, default=30, help="source frame rate")
    parser.add_argument("--crf", type=int, default=16, help="source quality")
    parser.add_argument("--frames", type=int, default=89)
    parser.add_argument("--fps-out", type=int, default=24)
    parser.add_argument("--bucket", type=int, default=768, help="square bucket side (fal medium 1:1)")
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    parser.add_argument("--steps", type=int, default=100, help="training steps of the tiny job (a multiple of 100)")
    parser.add_argument("--validation-resolution", default="high", help="fal default: high (960x960 at 1:1)")
    parser.add_argument("--validation-frames", type=int, default=89, help="fal default: 89")
    parser.add_argument("--skip-job", action="store_true")
    parser.add_argument("--skip-prepare", action="store_true")
    parser.add_argument("--cache", default="/tmp/ltxtune-bench")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "ARCHIVE", "WORK"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        kind, archive, work = options.child
        {"prepare": lambda: prepare_child(Path(archive), Path(work), options),
         "ffmpeg": lambda: ffmpeg_child(Path(archive), Path(work), options),
         "job": lambda: job_child(Path(work), options)}[kind]()
        return

    cache = Path(options.cache)
    me = [sys.executable, __file__, *sys.argv[1:]]
    print(f"on {len(os.sched_getaffinity(0))} cores", flush=True)
    if not options.skip_prepare:
        archive = build_dataset(options)
        prep_s, prep_rss, prep_out = run_measured([*me, "--child", "prepare", str(archive), str(cache / "prep")])
        figures = last_json(prep_out)
        print(f"\n{options.clips} clips of {options.seconds:g} s {options.width}x{options.height} {options.fps} fps -> "
              f"{figures['samples']} samples {options.bucket}x{options.bucket}x{options.frames} at {options.fps_out} fps, audio")
        print(f"  {'':22}{'time':>9}{'peak RSS':>12}")
        print(f"  {'ltxtune prepare':22}{prep_s:8.1f}s{prep_rss / 2**20:9.0f} MiB")
        if shutil.which("ffmpeg") is None:
            print("  ffmpeg CLI            not installed (apt-get install -y ffmpeg), no comparison")
        else:
            ff_s, ff_rss, _ = run_measured([*me, "--child", "ffmpeg", str(archive), str(cache / "ffmpeg")])
            print(f"  {'ffmpeg CLI':22}{ff_s:8.1f}s{ff_rss / 2**20:9.0f} MiB")
            print(f"  {'ratio':22}{prep_s / ff_s:8.2f}x{prep_rss / ff_rss:9.2f}x   (goal <= 1.2x each)")
    if not options.skip_job:
        _, _, out = run_measured([*me, "--child", "job", "-", str(cache / "job")])
        job = last_json(out)
        steps_s = job["loop_s"] - job["previews_s"]
        w, h, f = job["preview_size"]
        print(f"\ntiny job, {job['steps']} steps, {job['prompts']} prompts x {job['preview_rounds']} rounds of "
              f"{w}x{h}x{f} previews + the reel (total {job['total_s']:.1f} s)")
        print(f"  training steps        {steps_s:8.1f} s   peak RSS {job['peak_loop_mib']:6.0f} MiB (whole loop)")
        print(f"  previews              {job['previews_s']:8.1f} s   peak RSS {job['peak_previews_mib']:6.0f} MiB")
        print(f"  reel                  {job['reel_s']:8.1f} s")
        print(f"  previews + reel       {job['previews_s'] + job['reel_s']:8.1f} s = "
              f"{(job['previews_s'] + job['reel_s']) / max(steps_s, 1e-9):.2f}x the training steps (goal < 1)")


if __name__ == "__main__":
    main()
