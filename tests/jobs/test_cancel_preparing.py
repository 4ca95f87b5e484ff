"""Cancelling a job of the real trainer while it is still downloading its dataset ends it within
a few seconds (preparation asks `should_stop` as bytes arrive), not after the stop grace."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from ltxtune.specs.common import Family
from tests.jobs.servicekit import LiveServer, fal_body, fast_config, wait_for


class DripHost:
    """Answers every GET with a large archive sent 16 KiB every 0.1 s, and counts the requests."""

    def __init__(self) -> None:
        self.requests = 0
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                host.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(1 << 30))
                self.end_headers()
                try:
                    for _ in range(3000):
                        self.wfile.write(b"\0" * (16 << 10))
                        self.wfile.flush()
                        time.sleep(0.1)
                except OSError:  # the client went away
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # a client that hung up mid-drip is expected
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_cancel_while_downloading_the_dataset_is_prompt(tmp_path):
    drip = DripHost()
    config = fast_config(tmp_path / "data", runner="ltxtune.training.job:run_job", model=Family.TINY, stop_grace_s=60.0)
    with LiveServer(config) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        submitted = client.post("/fal-ai/ltx23-trainer-v2/t2v", json=fal_body(f"{drip.url}/clips.zip")).json()
        wait_for(lambda: drip.requests > 0, timeout=120, what="the dataset download to start")
        time.sleep(1.0)  # well inside the download
        asked = time.monotonic()
        assert client.put(submitted["cancel_url"]).status_code == 202
        job = wait_for(lambda: (j := server.store.get(submitted["request_id"])) and j.terminal and j, timeout=30, what="the end")
        took = time.monotonic() - asked
        assert job.status.value == "canceled"
        assert took < 5.0, f"cancelling took {took:.1f} s"
