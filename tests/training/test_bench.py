"""The GPU benchmark's smoke run: the whole script at tiny size on CPU, and its pieces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ltxtune.training import bench
from ltxtune.training.bench import OutOfTime, full_size_config, time_limit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_benchmark_writes_every_configuration(tmp_path):
    output = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "LTXTUNE_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_gpu.py"), "--tiny", "--device", "cpu",
                           "--steps", "2", "--warmup", "1", "--families", "ltx23", "--only", "64x64x17+audio",
                           "--output", str(output)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["device_type"] == "cpu" and report["tiny"] and report["matmul_flops"] > 0
    runs = {r["name"]: r for r in report["configurations"]}
    main = runs["ltx23 64x64x17+audio ltxtune"]
    reference = runs["ltx23 64x64x17+audio reference"]
    for result in (main, reference):
        assert result["status"] == "ok", result
        assert result["steps"] == 2 and len(result["seconds"]) == 2 and result["median_s"] > 0
        assert result["tokens"] == {"video": 3 * 2 * 2, "audio": 18, "text": 64, "batch": 1}
        assert result["tokens_per_s"] == pytest.approx(30 / result["median_s"])
        assert result["executed_flop"] >= result["model_flop"] > 0
        assert result["mfu"] == pytest.approx(result["model_flop"] / result["median_s"] / report["matmul_flops"])
        assert result["peak_memory_gib"] is None  # CPU
        assert result["attention"].startswith("attention (")
    assert main["speed"] == {"attention": "auto", "compile": False, "checkpoint_blocks": 0, "fp8": False, "fused_optimizer": True}
    assert reference["speed"]["attention"] == "default"
    assert list(report["speedups"]) == ["ltx23 64x64x17+audio"]
    assert report["speedups"]["ltx23 64x64x17+audio"] == pytest.approx(reference["median_s"] / main["median_s"])
    assert [r["label"] for r in report["configurations"]] == [
        "default", "default", "compile off", "fp8 compute", "attention default", "checkpoint 1 blocks",
        "preset fp8", "preset int8", "preset nf4", "preset fp8+offload", "preset nf4+offload", "preset bf16+offload",
        "preset int8+offload"]
    for name in ("fp8", "int8", "fp8+offload", "bf16+offload", "int8+offload"):
        assert runs[f"ltx23 64x64x17+audio ltxtune (preset {name})"]["status"] == "ok"
    nf4 = runs["ltx23 64x64x17+audio ltxtune (preset nf4)"]
    assert nf4["status"] == "error" and "memory preset nf4 needs a CUDA GPU" in nf4["error"]
    fp8 = runs["ltx23 64x64x17+audio ltxtune (fp8 compute)"]
    assert fp8["status"] == "error" and fp8["error"].startswith("Fp8Unavailable: fp8 compute needs a CUDA GPU")
    assert "fp8 compute" in done.stdout and "FAILED" in done.stdout  # said per configuration, the run went on
    assert "| ltx23 64x64x17+audio ltxtune |" in done.stdout  # the BENCHMARKS.md table


def test_configurations_put_the_main_shape_and_its_reference_first():
    runs = bench.configurations(["ltx23", "ltx2"], bench.FULL_SHAPES, {"ltx23": 48, "ltx2": 48}, ["fp8", "nf4+offload"])
    names = [run.name for run in runs]
    assert names[:4] == ["ltx23 768x768x89+audio ltxtune", "ltx23 768x768x89+audio reference",
                         "ltx23 768x768x89+audio ltxtune (compile off)", "ltx23 768x768x89+audio ltxtune (fp8 compute)"]
    assert names[4:8] == ["ltx23 512x512x49 ltxtune", "ltx23 512x512x49 reference",
                          "ltx23 image 1024x1024 x4 ltxtune", "ltx23 image 1024x1024 x4 reference"]
    assert "ltx23 768x768x89+audio ltxtune (checkpoint 24 blocks)" in names
    assert "ltx23 768x768x89+audio ltxtune (preset nf4+offload)" in names
    assert names[-2:] == ["ltx2 768x768x89+audio ltxtune", "ltx2 768x768x89+audio reference"]


def test_full_size_shapes_give_the_issue_token_counts():
    transformer_config = full_size_config("ltx23")
    assert transformer_config["num_layers"] == 48 and transformer_config["attention_head_dim"] == 128

    class Stub:  # make_batch reads only the config
        config = type("C", (), {**transformer_config, "get": lambda self, key, default=None: transformer_config.get(key, default)})()

    shape = bench.FULL_SHAPES[0]
    batch = bench.make_batch(Stub(), bench.Shape("probe", 64, 64, shape.frames, True), torch.device("cpu"), torch.float32, text_tokens=8)
    assert batch.video.shape[2] == 12  # 89 frames -> 12 latent frames; 768/32 = 24 -> 12 x 24 x 24 = 6,912 tokens
    assert batch.audio.shape[1:] == (8, 93, 16)  # 89 frames at 24 fps -> 93 audio latents, 8 channels x 16 mel bins


def test_full_size_config_names_a_family_it_lacks():
    with pytest.raises(FileNotFoundError, match="no full-size transformer config for 'nope'"):
        full_size_config("nope")


def test_time_limit_interrupts_a_configuration():
    started = time.monotonic()
    with pytest.raises(OutOfTime):
        with time_limit(0.2):
            while time.monotonic() - started < 5:
                pass
    assert time.monotonic() - started < 2
