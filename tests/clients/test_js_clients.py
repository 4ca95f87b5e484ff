"""The unmodified npm clients (`@fal-ai/client` through its `proxyUrl`, `@civitai/client`) against
a real server over TLS on loopback; the Civitai answers are then type-checked against the
client's own `.d.ts` with `tsc --strict` (see test_civitai_types.py)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.clients.nodekit import NODE_DIR, require_node, run_node
from tests.jobs.servicekit import LiveServer, civitai_example, fast_config, keys, make_certificate, wait_for

KEYS = keys("alice")


def small_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("clip.txt", "a caption")
    return buffer.getvalue()


ZIP = small_zip()  # made once: a zip records the time it was written


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    require_node()
    tmp = tmp_path_factory.mktemp("js")
    cert, key = make_certificate(tmp / "tls")
    # private URLs allowed: the Civitai datasets are on a loopback host (uploads resolve either way)
    config = fast_config(tmp / "data", api_keys=KEYS, ssl_certfile=cert, ssl_keyfile=key)
    with LiveServer(config) as server:
        yield server, cert


@pytest.fixture(scope="module")
def fal_report(live):
    server, cert = live
    args = {"scenario": "fal", "base": server.url, "key": KEYS[0].key, "zipBase64": base64.b64encode(ZIP).decode()}
    return run_node("drive.mjs", args, cert=cert)


@pytest.fixture(scope="module")
def civitai_report(live):
    server, cert = live
    workflow = civitai_example("civitai-ltx23.json", url="http://data.invalid/clips.zip?run_s=0.5")
    slow = civitai_example("civitai-ltx23.json", url="http://data.invalid/clips.zip?run_s=60")
    args = {"scenario": "civitai", "base": server.url, "key": KEYS[0].key, "workflow": workflow, "slowWorkflow": slow}
    return run_node("drive.mjs", args, cert=cert)


def test_fal_js_client_uploads_and_trains_through_the_proxy(live, fal_report):
    server, _ = live
    assert fal_report["uploaded"].startswith(f"{server.url}/files/")
    subscribed = fal_report["subscribe"]
    assert subscribed["updates"][-1] == "COMPLETED"
    assert set(subscribed["data"]) == {"lora_file", "config_file"}
    # the Blob input was uploaded, and the job read it from storage
    digest = hashlib.sha256(ZIP).hexdigest()
    messages = [log.message for log in server.store.logs(subscribed["requestId"])]
    assert f"read the uploaded archive: {len(ZIP)} bytes, sha256 {digest}" in messages


def test_fal_js_client_queue_calls(live, fal_report):
    server, _ = live
    submitted = fal_report["submitted"]
    request_id = submitted["request_id"]
    assert submitted["status_url"] == f"{server.url}/fal-ai/ltx23-trainer-v2/requests/{request_id}/status"
    assert fal_report["status"]["request_id"] == request_id and fal_report["status"]["cancel_url"].endswith("/cancel")
    wait_for(lambda: server.store.get(request_id).status.value == "canceled", what="the canceled request")
    assert set(fal_report["run"]["data"]) == {"lora_file", "config_file"}
    assert server.store.get(fal_report["run"]["requestId"]).status.value == "succeeded"
    assert fal_report["invalid"]["status"] == 422
    assert fal_report["invalid"]["body"]["detail"][0]["loc"] == ["body", "training_data_url"]


def test_civitai_client_flows(live, civitai_report):
    server, _ = live
    r = civitai_report
    assert r["submit"]["status"] == 202 and r["get"]["data"]["status"] == "succeeded"
    assert r["getStep"]["data"]["name"] == r["get"]["data"]["steps"][0]["name"]
    assert r["stepAfter"]["data"]["metadata"] == {"note": "kept", "more": 1}
    assert r["blob"]["data"]["id"] == r["get"]["data"]["steps"][0]["output"]["epochs"][0]["model"]["id"]
    assert r["afterTags"]["data"]["tags"] == []
    assert r["whatif"]["data"]["cost"]["total"] == 2750
    assert r["recipeWhatif"]["status"] == 200
    for name in ("cancelByUpdate", "cancelByPatch", "delete", "updateStep", "patchStep", "removeAllTags"):
        assert r[name]["status"] == 204, (name, r[name])
    assert r["canceledByUpdate"]["data"]["status"] == "canceled"
    assert r["canceledByPatch"]["data"]["status"] == "canceled"
    listed = [w["id"] for w in r["list"]["data"]["items"]]
    assert r["submitSlow2"]["data"]["id"] not in listed  # deleted
    assert r["submitSlow1"]["data"]["id"] in listed and r["submit"]["data"]["id"] in listed
    assert r["missingBlob"]["status"] == 404


# Which declared type each recorded answer must satisfy (@civitai/client's types.gen.d.ts).
DECLARED = {
    "submit": "Workflow",
    "get": "Workflow",
    "afterTags": "Workflow",
    "whatif": "Workflow",
    "submitSlow1": "Workflow",
    "canceledByUpdate": "Workflow",
    "canceledByPatch": "Workflow",
    "getStep": "TrainingStep",
    "stepAfter": "TrainingStep",
    "blob": "CivitaiBlob",
    "list": "CursedArrayOfTelemetryCursorAndWorkflow",
    "recipeWhatif": "TrainingOutput",
}
TS_HEADER = """import type {
  Blob as CivitaiBlob, CursedArrayOfTelemetryCursorAndWorkflow, Ltx23AiToolkitTrainingInput, TrainingOutput, TrainingStep, Workflow,
} from "@civitai/client";
// JSON as recorded, made mutable again so that only the declared types decide.
type Mutable<T> = T extends readonly (infer U)[] ? Mutable<U>[] : T extends object ? { -readonly [K in keyof T]: Mutable<T[K]> } : T;
"""


def typescript_of(answers: dict[str, tuple[str, object]]) -> str:
    lines = [TS_HEADER]
    for index, (name, (declared, value)) in enumerate(answers.items()):
        lines.append(f"const raw{index} = {json.dumps(value)} as const;")
        lines.append(f"export const {name}: {declared} = raw{index} as unknown as Mutable<typeof raw{index}>;")
    return "\n".join(lines) + "\n"


def tsc(folder: Path, source: str) -> subprocess.CompletedProcess:
    (folder / "recorded.ts").write_text(source)
    command = [
        require_node(), str(NODE_DIR / "node_modules" / "typescript" / "bin" / "tsc"), "--noEmit", "--strict",
        "--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler", "--skipLibCheck", "recorded.ts",
    ]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)


def test_civitai_answers_satisfy_the_clients_declared_types(civitai_report):
    answers = {name: (declared, civitai_report[name]["data"]) for name, declared in DECLARED.items()}
    answers["stepInput"] = ("Ltx23AiToolkitTrainingInput", civitai_report["get"]["data"]["steps"][0]["input"])
    folder = NODE_DIR / "typecheck"
    folder.mkdir(exist_ok=True)
    checked = tsc(folder, typescript_of(answers))
    assert checked.returncode == 0, checked.stdout[-4000:]
    # the check bites: the same answer without one required field fails
    broken = json.loads(json.dumps(civitai_report["get"]["data"]))
    del broken["cost"]["tips"]
    failed = tsc(folder, typescript_of({"get": ("Workflow", broken)}))
    assert failed.returncode != 0 and "tips" in failed.stdout, failed.stdout[-2000:]
