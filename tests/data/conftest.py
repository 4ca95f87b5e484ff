"""Fixtures for dataset tests: tiny plans, a loopback HTTP server, event capture.

Media helpers live in `tests/data/media.py` (make_video, make_image, make_zip, ...).
"""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from ltxtune.data import PreparedDataset, prepare_dataset
from ltxtune.protocols import build_plan
from ltxtune.specs.common import Bucket
from ltxtune.specs.plan import TrainingPlan
from ltxtune.events import LogLine, OnEvent, Progress, ignore_event
from tests.data.media import make_zip

T2V = "fal-ai/ltx23-trainer-v2/t2v"
V2V = "fal-ai/ltx23-v2v-trainer"


def tiny_plan(
    source: str | Path,
    endpoint: str = T2V,
    *,
    bucket: tuple[int, int] | None = (64, 64),
    **body: Any,
) -> TrainingPlan:
    """A plan for `endpoint` with `body` fields, reading `source`, fitted to a tiny bucket
    (None keeps the bucket the request names). Frames default to 17 at 24 fps."""
    if endpoint == "civitai":
        request = {
            "steps": [
                {
                    "$type": "training",
                    "input": {
                        "engine": "ai-toolkit",
                        "ecosystem": "ltx23",
                        "trainingData": {"type": "zip", "sourceUrl": str(source), "count": body.pop("count", 1)},
                        **body,
                    },
                }
            ]
        }
        plan = build_plan("civitai", request)
        return plan.model_copy(update={"dataset": plan.dataset.model_copy(update={"frames": 17})})
    body = {"training_data_url": str(source), "number_of_frames": 17, "frame_rate": 24, **body}
    plan = build_plan(endpoint, body)
    if bucket is not None:
        plan = plan.model_copy(
            update={"dataset": plan.dataset.model_copy(update={"bucket": Bucket(width=bucket[0], height=bucket[1])})}
        )
    return plan


def with_dataset(plan: TrainingPlan, **update: Any) -> TrainingPlan:
    return plan.model_copy(update={"dataset": plan.dataset.model_copy(update=update)})


def prepare_files(
    tmp_path: Path,
    files: dict[str, Path | bytes | str],
    endpoint: str = T2V,
    *,
    bucket: tuple[int, int] | None = (64, 64),
    dataset: dict[str, Any] | None = None,
    on_event: OnEvent = ignore_event,
    workers: int | None = None,
    **body: Any,
) -> PreparedDataset:
    """Zip `files`, plan `endpoint` with `body` (and `dataset` rule overrides), prepare it in
    tmp_path/job from the local zip."""
    archive = make_zip(tmp_path / "upload" / "dataset.zip", files)
    plan = tiny_plan(archive, endpoint, bucket=bucket, **body)
    if dataset:
        plan = with_dataset(plan, **dataset)
    return prepare_dataset(plan, tmp_path / "job", allow_local_files=True, on_event=on_event, workers=workers)


class Events(list):
    """Collects events; `.logs` are the log messages, `.progress` the Progress events."""

    @property
    def logs(self) -> list[str]:
        return [event.message for event in self if isinstance(event, LogLine)]

    @property
    def progress(self) -> list[Progress]:
        return [event for event in self if isinstance(event, Progress)]


@pytest.fixture
def events() -> Events:
    return Events()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        if self.path.startswith("/redirect/"):  # /redirect/<path or quoted absolute URL>
            target = urllib.parse.unquote(self.path[len("/redirect/") :])
            self.send_response(302)
            self.send_header("Location", target if target.startswith("http") else "/" + target)
            self.end_headers()
            return
        if self.path.startswith("/liar/"):
            # declares a small body, sends what the file holds
            data = (Path(self.directory) / self.path[len("/liar/") :]).read_bytes()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(data)
            return
        super().do_GET()


@pytest.fixture
def http_root(tmp_path: Path):
    """(folder, base URL) of an HTTP server on 127.0.0.1 serving `folder`."""
    folder = tmp_path / "served"
    folder.mkdir()

    def handler(*args, **kwargs):
        return _Handler(*args, directory=str(folder), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
