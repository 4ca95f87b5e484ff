"""Every client snippet of README.md ("Clients"), extracted from the README itself and run as
written against a real server over TLS: the docs cannot drift from what works."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.clients.nodekit import NODE_DIR, require_node
from tests.jobs.servicekit import ROOT, LiveServer, fast_config, keys, make_certificate

KEYS = keys("alice")
SNIPPET = re.compile(r"```(?P<lang>\w+)\n(?://|#) snippet: (?P<name>[\w-]+)\n(?P<code>.*?)```", re.S)


def snippets() -> dict[str, str]:
    return {match["name"]: match["code"] for match in SNIPPET.finditer((ROOT / "README.md").read_text())}


def test_the_readme_has_each_clients_snippet():
    assert set(snippets()) == {"fal-js", "fal-python", "civitai-js", "curl"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("readme")
    cert, key = make_certificate(tmp / "tls")
    work = tmp / "work"
    work.mkdir()
    with zipfile.ZipFile(work / "clips.zip", "w") as zipped:
        zipped.writestr("clip.txt", "a caption")
    config = fast_config(tmp / "data", api_keys=KEYS, ssl_certfile=cert, ssl_keyfile=key, allow_private_urls=False)
    with LiveServer(config) as server:
        files = server.ctx.services.files
        upload = files.reserve_upload(KEYS[0].owner, "clips.zip", "application/zip")
        upload = files.write_upload(upload, [(work / "clips.zip").read_bytes()], 2**20)
        env = {
            **os.environ,
            "LTXTUNE_URL": server.url,
            "LTXTUNE_KEY": KEYS[0].key,
            "DATASET_URL": files.url(upload, server.url).url,
            "FAL_KEY": KEYS[0].key,
            "FAL_QUEUE_RUN_HOST": server.authority,
            "FAL_RUN_HOST": f"{server.authority}/run",
            "SSL_CERT_FILE": str(cert),
            "CURL_CA_BUNDLE": str(cert),
            "NODE_EXTRA_CA_CERTS": str(cert),
        }
        yield server, work, env


def run(command: list[str], work: Path, env: dict[str, str]) -> list[str]:
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    return done.stdout.strip().splitlines()


def run_js(name: str, work: Path, env: dict[str, str]) -> list[str]:
    node = require_node()
    folder = NODE_DIR / "readme"  # beside node_modules, so the imports resolve
    folder.mkdir(exist_ok=True)
    script = folder / f"{name}.mjs"
    script.write_text(snippets()[name])
    return run([node, "--import", str(NODE_DIR / "bundler-resolution.mjs"), str(script)], work, env)


def test_fal_js_snippet(live):
    server, work, env = live
    lines = run_js("fal-js", work, env)
    assert lines[-1].split(" ")[1].startswith(f"{server.url}/files/") and "COMPLETED" in lines


def test_fal_python_snippet(live):
    server, work, env = live
    script = work / "fal_snippet.py"
    script.write_text(snippets()["fal-python"])
    lines = run([sys.executable, str(script)], work, env)
    assert lines[-1].startswith(f"{server.url}/files/") and "Completed" in lines


def test_civitai_js_snippet(live):
    server, work, env = live
    lines = run_js("civitai-js", work, env)
    status, urls = lines[-1].split(" ", 1)
    assert status == "succeeded" and urls.count(f"{server.url}/files/") == 10


def test_curl_snippet(live):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    server, work, env = live
    lines = run(["bash", "-euo", "pipefail", "-c", snippets()["curl"]], work, env)
    assert '"lora_file"' in lines[-1] and f"{server.url}/files/" in lines[-1]
