"""fal's server-side proxy convention, so that `@fal-ai/client` reaches ltxtune with
`fal.config({proxyUrl: "https://<server>/api/fal/proxy"})` (`proxyUrl: {url, when: "always"}`
outside a browser, where the client proxies only on request).

The client sends every call to the proxy URL, with the method and body unchanged and the URL it
meant in `x-fal-target-url`. Calls whose target is one of fal's hosts are answered here as if
they had come to this server's own route: `queue.fal.run/<path>` is `/<path>`, `fal.run/<path>`
is `/run/<path>`, `rest.fal.ai/<path>` (storage) is `/<path>`. This is an ASGI middleware that
rewrites the path before routing, so every route, status and error is exactly the direct one.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

PROXY_PATH = "/api/fal/proxy"
TARGET_HEADER = b"x-fal-target-url"
# fal host -> the path prefix of its routes on this server
HOSTS = {"queue.fal.run": "", "fal.run": "/run", "rest.fal.ai": ""}


class FalProxy:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != PROXY_PATH or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        target = dict(scope["headers"]).get(TARGET_HEADER, b"").decode("latin-1").strip()
        parts = urlsplit(target)
        if not target:
            await _refuse(send, 400, f"{PROXY_PATH} needs the x-fal-target-url header (set by @fal-ai/client's proxyUrl)")
            return
        if parts.scheme != "https" or parts.hostname not in HOSTS:
            await _refuse(send, 412, f"x-fal-target-url must be an https URL of {', '.join(HOSTS)}; got {target!r}")
            return
        path = HOSTS[parts.hostname] + (parts.path or "/")
        rewritten = dict(scope, path=path, raw_path=path.encode(), query_string=parts.query.encode())
        await self.app(rewritten, receive, send)


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail, "error_type": "invalid_proxy_request"}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
