"""scripts/bench_memory.py runs its CPU smoke version (tiny family) and prints measured beside planned."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "bench_memory.py"


def test_cpu_smoke_run_prints_measured_and_planned():
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--steps", "1", "--presets", "bf16,fp8"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "tiny random LTX-2.3 at 64x64x17+audio, rank 32, 1 steps on cpu"
    measured = re.match(r"bf16 +measured live peak +([\d.]+) MiB \(host\), planned +([\d.]+) MiB", lines[1])
    assert measured, lines[1]
    live, planned = map(float, measured.groups())
    assert live > 1 and abs(planned / live - 1) < 0.5
    assert lines[2].startswith("fp8 ") and ("skipped" in lines[2] or "measured" in lines[2])
