"""`ltxtune serve` (the HTTP API on uvicorn with an embedded worker) and `ltxtune worker` (an extra
worker process on the same job store).

    ltxtune serve --data-dir ./data --keys-file keys.txt --host 0.0.0.0 --port 8443 \\
        --ssl-certfile cert.pem --ssl-keyfile key.pem --workers 2

fal-client always speaks https: give a certificate (`--ssl-certfile/--ssl-keyfile`; clients trust
a private CA through `SSL_CERT_FILE`). Without API keys the server listens on 127.0.0.1 only.

Each command's options are the fields of one settings dataclass (`ServeSettings`,
`WorkerSettings`); the options both share live in `RunnerSettings`.
"""

from __future__ import annotations

import logging
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from ltxtune.cli.options import ALLOW_PRIVATE_HELP, MEMORY_HELP, check_memory, command_from, fail, option, parse_gpus, parse_model, parse_prices, setup_logging
from ltxtune.jobs.config import DEFAULT_RUNNER, KEYS_ENV, ServiceConfig, is_loopback, load_api_keys
from ltxtune.jobs.store import is_database_url

if TYPE_CHECKING:
    from ltxtune.jobs.capacity import Capacity

log = logging.getLogger("ltxtune.serve")


@dataclass(frozen=True)
class RunnerSettings:
    """Options of every command that runs jobs from a data dir."""

    data_dir: Path = option(Path("ltxtune-data"), "--data-dir", help="Job store (SQLite), outputs, work dirs and keys live here.")
    store: str | None = option(None, "--store", help="The job store: a postgresql://user@host/db URL shared by every host (default: SQLite in --data-dir).")
    storage: str | None = option(None, "--storage", help="Shared object storage for files and checkpoints: a directory every host mounts, or s3://bucket/prefix (default: --data-dir).")
    log_format: str = option("text", "--log-format", help="Log lines as `text` or `json` (one object per line).")
    workers: int = option(1, "--workers", min=0, help="GPU slots: jobs run at once, one child process each (0: run no jobs here).")
    runner: str = option(DEFAULT_RUNNER, "--runner", help="The training function, `module:function` or `/path/file.py:function`.")
    gpus: str | None = option(None, "--gpus", help="Comma-separated CUDA device ids, one per slot (default: leave CUDA_VISIBLE_DEVICES alone).")
    allow_private_urls: bool = option(False, "--allow-private-urls", help=ALLOW_PRIVATE_HELP)
    prices: Path | None = option(None, "--prices", help="A JSON file overriding entries of the price table.")
    heartbeat: float = option(5.0, "--heartbeat", help="Seconds between heartbeats of a running job.")
    stale_after: float = option(60.0, "--stale-after", help="A running job without a heartbeat this long is resumed elsewhere.")
    memory: str = option("auto", "--memory", callback=check_memory, help=MEMORY_HELP)
    infra_retries: int = option(2, "--infra-retries", min=0, help="Times a job whose training process was killed (by a signal) resumes from its last checkpoint.")
    verbose: bool = option(False, "--verbose", "-v", help="Log debug messages.")

    def config(self, **more) -> ServiceConfig:
        if self.store is not None and not is_database_url(self.store):
            raise fail(f"--store {self.store}: give a postgresql:// URL (SQLite lives in --data-dir)")
        return ServiceConfig(
            data_dir=self.data_dir,
            store=self.store,
            storage=self.storage,
            runner=self.runner,
            gpus=parse_gpus(self.gpus),
            allow_private_urls=self.allow_private_urls,
            prices=parse_prices(self.prices),
            heartbeat_s=self.heartbeat,
            stale_after_s=self.stale_after,
            memory=self.memory,
            infra_retries=self.infra_retries,
            **{"workers": self.workers, **more},
        )


@dataclass(frozen=True)
class ServeSettings(RunnerSettings):
    host: str = option("127.0.0.1", "--host", help="Address to listen on (loopback only unless API keys are configured).")
    port: int = option(8000, "--port")
    keys_file: Path | None = option(None, "--keys-file", help=f"API keys, one per line (`key` or `name key`), or JSON; also {KEYS_ENV}.")
    model: str | None = option(None, "--model", help="Train every job on this model family instead (`tiny`: a weightless demo).")
    public_url: str | None = option(None, "--public-url", help="Base URL for links in results and webhooks (default: the request's host).")
    allowed_host: list[str] | None = option(None, "--allowed-host", help="A Host name clients may use (repeatable); links are built on it. Loopback names are allowed when bound to loopback.")
    url_ttl: int = option(24 * 3600, "--url-ttl", help="Seconds a file URL stays valid.")
    ssl_certfile: Path | None = option(None, "--ssl-certfile", help="TLS certificate (PEM); clients that speak only https need one.")
    ssl_keyfile: Path | None = option(None, "--ssl-keyfile", help="TLS private key (PEM).")
    no_worker: bool = option(False, "--no-worker", help="Run the API only (workers run elsewhere: `ltxtune worker`).")
    cors_origin: Optional[List[str]] = option(
        None, "--cors-origin", metavar="ORIGIN", help="An origin browsers may call this server from, e.g. https://app.example.com (repeat for more; `*`: any). Default: none."
    )
    max_upload_mib: int = option(8192, "--max-upload-mib", min=1, help="The largest file one upload may store, in MiB.")

    def service_config(self) -> ServiceConfig:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise fail("give both --ssl-certfile and --ssl-keyfile, or neither")
        return self.config(
            **({"workers": 0} if self.no_worker else {}),
            host=self.host,
            port=self.port,
            api_keys=load_api_keys(self.keys_file),
            model=parse_model(self.model),
            public_url=self.public_url,
            allowed_hosts=tuple(self.allowed_host or ()),
            url_ttl_s=self.url_ttl,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
            cors_origins=tuple(self.cors_origin or ()),
            max_upload_bytes=self.max_upload_mib * 2**20,
        )


@dataclass(frozen=True)
class WorkerSettings(RunnerSettings):
    poll: float = option(1.0, "--poll", help="Seconds between looks at the queue.")

    def service_config(self) -> ServiceConfig:
        return self.config(poll_s=self.poll).with_(workers=max(1, self.workers))


def serve(config: ServiceConfig) -> None:
    """Run the API (and, with `config.workers > 0`, a worker) until interrupted."""
    import uvicorn

    from ltxtune.api.app import create_app
    from ltxtune.protocols import PROTOCOLS

    host, note = config.safe_host()
    if note:
        print(f"ltxtune: {note}", file=sys.stderr)
    config = config.with_(host=host)
    if not is_loopback(host) and not config.public_url and not config.allowed_hosts:
        print(
            f"ltxtune: listening on {host} without --public-url or --allowed-host: requests are answered only for "
            "the names this address has; give the name clients use",
            file=sys.stderr,
        )
    try:
        app = create_app(config)
    except Exception as error:  # an unreachable or unmigrated store: say so, no traceback
        raise fail(f"cannot open the job store: {error}", code=1) from None
    base = config.default_base_url()
    hints = "".join(f"\n  {protocol.client_hint(base)}" for protocol in PROTOCOLS)
    print(
        f"ltxtune: serving {config.store_target if config.store is None else 'the PostgreSQL store'} at {base} with {config.workers} worker slot(s)"
        f"{' (model override: ' + config.model.value + ')' if config.model else ''}{hints}",
        file=sys.stderr,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            ssl_certfile=str(config.ssl_certfile) if config.ssl_certfile else None,
            ssl_keyfile=str(config.ssl_keyfile) if config.ssl_keyfile else None,
            log_level="info",
            timeout_graceful_shutdown=5,
        )
    )
    server.run(sockets=[listening_socket(host, config.port)])


def listening_socket(host: str, port: int) -> socket.socket:
    """The API's listening socket, with TCP_NODELAY (which accepted connections inherit): without
    it a response written in two parts (headers, then body) waits for the client's delayed ACK,
    about 40 ms per request on Linux."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise fail(f"cannot listen on {host}:{port}: {error.strerror}", code=1) from None
    return sock


def run_worker(config: ServiceConfig) -> None:
    """Serve the store in `config.data_dir` until SIGINT/SIGTERM."""
    from ltxtune.jobs.worker import Worker
    from ltxtune.protocols.registry import open_services

    try:
        services = open_services(config)
    except Exception as error:  # an unreachable or unmigrated store: say so, no traceback
        raise fail(f"cannot open the job store: {error}", code=1) from None
    dispatcher = services.dispatcher()
    dispatcher.start()
    worker = Worker(services, capacity=worker_capacity(config))
    log.info(
        "%s serving %s (files in %s) with %d slot(s), runner %s",
        worker.worker_id, services.store.describe(), services.files.objects.describe(), worker.slots, config.runner,
    )  # fmt: skip
    try:
        worker.run_forever()
    finally:
        dispatcher.stop()
        services.close()


def worker_capacity(config: ServiceConfig) -> "Capacity":
    """What this host's worker can run: its GPUs, and the memory planner where this build has one."""
    from ltxtune.jobs.capacity import Capacity, visible_gpus

    try:
        from ltxtune.models.planner import choose_memory as planner  # type: ignore[import-not-found]
    except ImportError:
        planner = None
    return Capacity(gpus=tuple(visible_gpus(config.gpus)), planner=planner)


def serve_command(settings: ServeSettings) -> None:
    """Serve every protocol's API (the fal queue, Civitai workflows), running jobs with an embedded worker."""
    setup_logging(settings.verbose, settings.log_format)
    serve(settings.service_config())


def worker_command(settings: WorkerSettings) -> None:
    """Run queued jobs from the store (--store, or --data-dir) alongside or instead of `ltxtune serve`'s own worker."""
    setup_logging(settings.verbose, settings.log_format)
    run_worker(settings.service_config())


def register(app: typer.Typer) -> None:
    """Add `serve` and `worker` to a typer app."""
    app.command("serve")(command_from(ServeSettings, serve_command))
    app.command("worker")(command_from(WorkerSettings, worker_command))
