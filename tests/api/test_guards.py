"""The request guard on a small app of its own: a route declares its body's content types and
size (`accepts_body`), every other state-changing route takes JSON only."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.testclient import TestClient

from ltxtune.api.errors import ApiError
from ltxtune.api.guards import BodyTooLarge, RequestGuard, accepts_body, allowed_hosts
from ltxtune.jobs.config import ServiceConfig


def _app(tmp_path, **config) -> TestClient:
    app = FastAPI()

    @app.post("/upload")
    @accepts_body("application/octet-stream", "image/png", max_bytes=1000)
    async def upload(request: Request) -> JSONResponse:
        return JSONResponse({"size": len(await request.body())})

    @app.post("/json")
    async def json_route(request: Request) -> JSONResponse:
        return JSONResponse({"size": len(await request.body())})

    @app.exception_handler(ApiError)
    async def on_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status, headers=error.headers)

    def render(path: str, error: ApiError) -> JSONResponse:
        return JSONResponse({"detail": error.detail, "path": path}, status_code=error.status)

    settings = ServiceConfig(data_dir=tmp_path, allowed_hosts=("testserver",), max_body_bytes=100, **config)
    app.add_middleware(RequestGuard, config=settings, render=render, routes=lambda: app.router.routes)
    return TestClient(app)


def test_a_route_declares_its_own_content_types_and_size(tmp_path):
    client = _app(tmp_path)
    assert client.post("/upload", content=b"x" * 500, headers={"Content-Type": "application/octet-stream"}).json() == {"size": 500}
    assert client.post("/upload", content=b"x", headers={"Content-Type": "image/png"}).status_code == 200
    refused = client.post("/upload", json={"a": 1})
    assert refused.status_code == 415 and refused.json()["detail"] == "Content-Type must be application/octet-stream or image/png; got 'application/json'"
    assert client.post("/upload", content=b"x" * 1001, headers={"Content-Type": "image/png"}).status_code == 413
    assert client.post("/json", json={"a": 1}).status_code == 200
    assert client.post("/json", content=b"x" * 101, headers={"Content-Type": "application/json"}).status_code == 413
    assert client.post("/json", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.post("/json", content=b"{}", headers={"Content-Type": "multipart/form-data; boundary=x"}).status_code == 415


def test_a_streamed_body_past_the_limit_is_refused_while_it_arrives(tmp_path):
    client = _app(tmp_path)
    chunks = iter([b"x" * 60, b"x" * 60, b"never read" * 10])
    answer = client.post("/json", content=chunks, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.headers["connection"] == "close"
    assert answer.json()["detail"] == BodyTooLarge(100).detail


def test_allowed_hosts():
    loopback = ServiceConfig(data_dir=".", host="127.0.0.1")
    assert allowed_hosts(loopback) == {"localhost", "127.0.0.1", "::1"}
    public = ServiceConfig(data_dir=".", host="0.0.0.0", public_url="https://Trainer.Example.com:8443/base", allowed_hosts=("[fd00::1]:80", "gpu.lan"))
    assert allowed_hosts(public) == {"trainer.example.com", "fd00::1", "gpu.lan"}
