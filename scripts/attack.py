"""The adversarial suite at full length: schemathesis over every route of the app's OpenAPI
schema (valid and invalid inputs, then linked chains of calls), printing per route class how many
requests were sent, how many answered 5xx and how many broke the schema.

    PYTHONPATH=src python scripts/attack.py                 # 1,000 requests per route class at least
    PYTHONPATH=src python scripts/attack.py --per-operation 100 --stateful 50

Exit status 1 if any request answered 5xx or broke the schema. The fault tests (a killed child, a
killed worker, a webhook receiver down then up) and the archive corpus run with the test suite:
`pytest tests/api/test_faults.py tests/jobs/test_worker.py tests/jobs/test_webhooks_and_files.py
tests/data/test_archive.py`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.adversarial.suite import report, run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-operation", type=int, default=0, help="requests per operation (default: enough for --per-class)")
    parser.add_argument("--per-class", type=int, default=1000, help="requests per route class at least")
    parser.add_argument("--stateful", type=int, default=200, help="chains of linked calls after the single requests")
    args = parser.parse_args()
    started = time.monotonic()
    budget = f"{args.per_operation} per operation" if args.per_operation else f"{args.per_class} per route class"
    print(f"attack: {budget} generated requests, then {args.stateful} stateful chains", file=sys.stderr)
    counts = run(args.per_operation, per_class=None if args.per_operation else args.per_class, stateful_steps=args.stateful, seed=None)
    print(report(counts))
    print(f"{sum(counts.requests.values())} requests in {time.monotonic() - started:.0f} s")
    return 1 if sum(counts.server_errors.values()) or sum(counts.schema_breaks.values()) or sum(counts.hangs.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
