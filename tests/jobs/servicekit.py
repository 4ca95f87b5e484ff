"""Test helpers for the service: a config with fast timings, a real uvicorn server on loopback
(optionally TLS with a self-signed certificate made here), a loopback webhook receiver, waiting."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ltxtune.api import create_app
from ltxtune.jobs.config import ApiKey, ServiceConfig

ROOT = Path(__file__).resolve().parents[2]
FAKE_RUNNER = "tests.jobs.fake_runner:run_job"
EXAMPLES = ROOT / "examples"


def fast_config(data_dir: Path, **changes: Any) -> ServiceConfig:
    config = ServiceConfig(
        data_dir=data_dir,
        workers=1,
        runner=FAKE_RUNNER,
        allow_private_urls=True,
        poll_s=0.1,
        heartbeat_s=0.3,
        stale_after_s=3.0,
        stop_grace_s=10.0,
        webhook_base_delay_s=0.1,
        webhook_max_delay_s=0.4,
        webhook_attempts=5,
        webhook_timeout_s=2.0,
    )
    return config.with_(**changes)


def keys(*names: str) -> tuple[ApiKey, ...]:
    return tuple(ApiKey(key=f"{name}-key:{'s' * 8}", name=name) for name in names)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (it is its own CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ltxtune test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


class LiveServer:
    """`create_app(config)` on uvicorn in a thread, on a free loopback port."""

    def __init__(self, config: ServiceConfig):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as `ltxtune serve` does
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.config = config.with_(host="127.0.0.1", port=self.port)
        self.app = create_app(self.config)
        scheme = "https" if config.ssl_certfile else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.authority = f"127.0.0.1:{self.port}"
        uv_config = uvicorn.Config(
            self.app,
            log_level="warning",
            ssl_certfile=str(config.ssl_certfile) if config.ssl_certfile else None,
            ssl_keyfile=str(config.ssl_keyfile) if config.ssl_keyfile else None,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(uv_config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def ctx(self):
        return self.app.state.ltxtune

    @property
    def store(self):
        return self.ctx.services.store

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=15, what="server start")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.ctx.services.close()
        self.sock.close()


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A loopback HTTP server that records POSTs; the first `fail_first` answers are 500."""

    fail_first: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    refused: int = 0

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    if receiver.refused < receiver.fail_first:
                        receiver.refused += 1
                        status = 500
                    else:
                        receiver.deliveries.append(Delivery(self.path, dict(self.headers), body))
                        status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class DatasetHost:
    """A loopback host answering every GET with a few bytes (404 under /missing/): what Civitai's
    submit-time reachability check asks of a dataset URL. The fake runner reads only the URL."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                missing = self.path.startswith("/missing/")
                self.send_response(404 if missing else 206)
                self.send_header("Content-Length", "1")
                self.end_headers()
                self.wfile.write(b"P")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


_DATASETS: list[DatasetHost] = []


def dataset_host() -> str:
    """The base URL of the one DatasetHost of this test process (started on first use)."""
    if not _DATASETS:
        _DATASETS.append(DatasetHost())
    return _DATASETS[0].url


def civitai_example(name: str = "civitai-ltx23.json", *, url: str = "http://data.invalid/clips.zip?run_s=1", **input_changes: Any) -> dict:
    """A spec example with `url` as its dataset; `http://data.invalid/...` (what the fake runner
    steers by) is served by the DatasetHost, so that the reachability check passes."""
    body = json.loads((EXAMPLES / name).read_text())
    body["steps"][0]["input"]["trainingData"]["sourceUrl"] = url.replace("http://data.invalid/", f"{dataset_host()}/")
    body["steps"][0]["input"].update(input_changes)
    return body


def fal_body(url: str = "http://data.invalid/clips.zip?run_s=0.5", **changes: Any) -> dict:
    return {"training_data_url": url, "number_of_steps": 100, **changes}
