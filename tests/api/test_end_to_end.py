"""The service with the real trainer: tiny model, a dataset served over loopback, real outputs."""

from __future__ import annotations

import functools
import http.server
import threading

import httpx
import pytest
from safetensors import safe_open

from ltxtune.specs.common import Family

from tests.jobs.servicekit import LiveServer, fast_config, wait_for
from tests.data.media import make_video, make_zip


@pytest.fixture(scope="module")
def dataset_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    clip = make_video(root / "a.mp4", 128, 96, frames=17, fps=24)
    make_zip(root / "clips.zip", {"a.mp4": clip, "a.txt": b"TOK a square"})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/clips.zip"
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = fast_config(tmp_path_factory.mktemp("e2e") / "data", runner="ltxtune.training.job:run_job",
                         model=Family.TINY, heartbeat_s=1.0, stale_after_s=60.0)
    with LiveServer(config) as live:
        yield live


def test_fal_request_trains_the_tiny_model(server, dataset_url):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        body = {"training_data_url": dataset_url, "number_of_steps": 100, "number_of_frames": 17, "resolution": "low",
                "aspect_ratio": "16:9", "trigger_phrase": "TOK"}
        submitted = client.post("/fal-ai/ltx23-trainer-v2/t2v", json=body).json()
        status = wait_for(lambda: (s := client.get(submitted["status_url"], params={"logs": 1}).json())["status"] == "COMPLETED" and s,
                          timeout=240, interval=0.5, what="COMPLETED")
        assert status["error"] is None, status
        assert any(entry["message"].startswith("train 100/100") for entry in status["logs"])
        result = client.get(submitted["response_url"]).json()
        lora = client.get(result["lora_file"]["url"])
        assert lora.status_code == 200 and len(lora.content) == result["lora_file"]["file_size"]
        config = client.get(result["config_file"]["url"]).json()
        assert (config["family"], config["trigger_phrase"], config["training_type"]) == ("tiny", "TOK", "text-to-video")


def test_civitai_workflow_delivers_each_epoch(server, dataset_url, tmp_path):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        body = {"steps": [{"$type": "training", "input": {
            "engine": "ai-toolkit", "ecosystem": "ltx23", "steps": 4, "epochs": 2, "resolution": 256,
            "trainingData": {"type": "zip", "sourceUrl": dataset_url, "count": 1}}}]}
        workflow = client.post("/v2/consumer/workflows", json=body).json()
        done = wait_for(lambda: (w := client.get(f"/v2/consumer/workflows/{workflow['id']}").json())["status"]
                        in ("succeeded", "failed") and w, timeout=240, interval=0.5, what="workflow end")
        assert done["status"] == "succeeded", done
        epochs = done["steps"][0]["output"]["epochs"]
        assert [e["epochNumber"] for e in epochs] == [1, 2]
        path = tmp_path / "epoch.safetensors"
        path.write_bytes(client.get(epochs[0]["model"]["url"]).content)
        with safe_open(str(path), framework="pt") as handle:
            assert handle.metadata()["steps"] == "2" and handle.metadata()["family"] == "tiny"
