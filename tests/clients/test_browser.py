"""A browser app on another origin calls the server with @fal-ai/client (headless Chromium):
it works with `--cors-origin` naming the page's origin, and the browser refuses it without."""

from __future__ import annotations

import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.clients.nodekit import run_node
from tests.jobs.servicekit import LiveServer, fast_config, keys, make_certificate

KEYS = keys("alice")
PAGE = "<!doctype html><html><head><meta charset=utf-8><script src=bundle.js></script></head><body>ltxtune</body></html>"


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (CI installs it: apt-get install -y chromium)")
    return path


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A static page on its own origin (plain http, another port)."""
    folder = tmp_path_factory.mktemp("page")
    (folder / "index.html").write_text(PAGE)
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()


def visit(tmp_path, page, cors_origins: tuple[str, ...]) -> dict:
    origin, folder = page
    cert, key = make_certificate(tmp_path / "tls")
    config = fast_config(tmp_path / "data", api_keys=KEYS, ssl_certfile=cert, ssl_keyfile=key, cors_origins=cors_origins)
    with LiveServer(config) as server:
        args = {"page": f"{origin}/index.html", "server": server.url, "key": KEYS[0].key, "chromium": chromium(), "bundlePath": str(folder / "bundle.js")}
        return run_node("browser.mjs", args, cert=cert)


def test_a_page_of_an_allowed_origin_calls_the_api(tmp_path, page):
    seen = visit(tmp_path, page, (page[0],))
    assert seen["ok"], seen
    assert seen["origin"] == page[0] and seen["status"] in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")


def test_without_cors_origin_the_browser_refuses(tmp_path, page):
    seen = visit(tmp_path, page, ())
    assert not seen["ok"]
    assert seen["error"] == "TypeError: Failed to fetch", seen
    assert any("blocked by CORS policy" in line for line in seen["console"]), seen["console"]


def test_another_origin_is_refused(tmp_path, page):
    seen = visit(tmp_path, page, ("https://app.example.com",))
    assert not seen["ok"] and seen["error"] == "TypeError: Failed to fetch", seen
