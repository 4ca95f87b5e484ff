"""Running the npm clients of tests/clients/node (installed with `npm ci` there) from pytest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).with_name("node")


def require_node() -> str:
    """The node binary, skipping the test when node or the installed clients are absent."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (CI installs it; see .ci/run)")
    if not (NODE_DIR / "node_modules" / "@fal-ai" / "client").is_dir():
        pytest.skip(f"the npm clients are not installed: run `npm ci` in {NODE_DIR}")
    return node


def run_node(script: str, args: dict[str, Any], *, cert: Path | None = None, timeout: float = 120) -> Any:
    """Run `script` (in tests/clients/node) with `args` as JSON; its last stdout line, parsed."""
    env = {**os.environ, **({"NODE_EXTRA_CA_CERTS": str(cert)} if cert else {})}
    done = subprocess.run(
        [require_node(), "--import", "./bundler-resolution.mjs", script, json.dumps(args)], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
