"""The training-step benchmark: ltxtune's step against plain diffusers + peft, full size, random weights.

    python scripts/bench_gpu.py                       # one H100/H200: every configuration in under 8 minutes
    python scripts/bench_gpu.py --tiny --device cpu   # the same run at tiny size (smoke test)

See BENCHMARKS.md for how to read and record the results; the logic is `ltxtune.training.bench`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from ltxtune.training.bench_run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
