"""`ltxtune serve`: the HTTP API on uvicorn with an embedded worker.

    ltxtune serve --data-dir ./data --keys-file keys.txt --host 0.0.0.0 --port 8443 \\
        --ssl-certfile cert.pem --ssl-keyfile key.pem --workers 2

fal-client always speaks https: give a certificate (`--ssl-certfile/--ssl-keyfile`; clients trust
a private CA through `SSL_CERT_FILE`). Without API keys the server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from ltxtune.jobs.commands import (
    ALLOW_PRIVATE,
    DATA_DIR,
    GPUS,
    HEARTBEAT,
    MEMORY,
    MODEL,
    PRICES,
    RUNNER,
    STALE_AFTER,
    VERBOSE,
    WORKERS,
    load_price_table,
    parse_model,
    setup_logging,
)
from ltxtune.jobs.config import KEYS_ENV, ServiceConfig, load_api_keys

log = logging.getLogger("ltxtune.serve")


def serve(config: ServiceConfig) -> None:
    """Run the API (and, with `config.workers > 0`, a worker) until interrupted."""
    import uvicorn

    from ltxtune.api.app import create_app

    host, note = config.safe_host()
    if note:
        print(f"ltxtune: {note}", file=sys.stderr)
    config = config.with_(host=host)
    app = create_app(config)
    base = config.default_base_url()
    authority = base.split("://", 1)[1]
    print(
        f"ltxtune: serving {config.db_path} at {base} with {config.workers} worker slot(s)"
        f"{' (model override: ' + config.model.value + ')' if config.model else ''}\n"
        f"  fal-client:  FAL_QUEUE_RUN_HOST={authority} FAL_RUN_HOST={authority}/run FAL_KEY=<key>\n"
        f"  civitai:     base URL {base} (Authorization: Bearer <key>)",
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        host=host,
        port=config.port,
        ssl_certfile=str(config.ssl_certfile) if config.ssl_certfile else None,
        ssl_keyfile=str(config.ssl_keyfile) if config.ssl_keyfile else None,
        log_level="info",
        timeout_graceful_shutdown=5,
    )


def serve_command(
    data_dir: Path = DATA_DIR,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback only unless API keys are configured)."),
    port: int = typer.Option(8000, "--port"),
    workers: int = WORKERS,
    keys_file: Path | None = typer.Option(None, "--keys-file", help=f"API keys, one per line (`key` or `name key`), or JSON; also {KEYS_ENV}."),
    model: str | None = MODEL,
    runner: str = RUNNER,
    public_url: str | None = typer.Option(None, "--public-url", help="Base URL for links in results and webhooks (default: the request's host)."),
    url_ttl: int = typer.Option(24 * 3600, "--url-ttl", help="Seconds a file URL stays valid."),
    ssl_certfile: Path | None = typer.Option(None, "--ssl-certfile", help="TLS certificate (PEM); fal-client needs https."),
    ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="TLS private key (PEM)."),
    gpus: str | None = GPUS,
    allow_private_urls: bool = ALLOW_PRIVATE,
    prices: Path | None = PRICES,
    heartbeat: float = HEARTBEAT,
    stale_after: float = STALE_AFTER,
    memory: str = MEMORY,
    verbose: bool = VERBOSE,
) -> None:
    """Serve the fal queue and Civitai workflow APIs, running jobs with an embedded worker."""
    setup_logging(verbose)
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise typer.BadParameter("give both --ssl-certfile and --ssl-keyfile, or neither")
    config = ServiceConfig(
        data_dir=data_dir,
        host=host,
        port=port,
        api_keys=load_api_keys(keys_file),
        workers=workers,
        model=parse_model(model),
        runner=runner,
        public_url=public_url,
        url_ttl_s=url_ttl,
        allow_private_urls=allow_private_urls,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        prices=load_price_table(prices),
        gpus=tuple(g.strip() for g in gpus.split(",") if g.strip()) if gpus else (),
        heartbeat_s=heartbeat,
        stale_after_s=stale_after,
        memory=memory,
    )
    serve(config)


def register(app: typer.Typer) -> None:
    """Add `serve` and `worker` to the `ltxtune` typer app."""
    from ltxtune.jobs.worker import register as register_worker

    app.command("serve")(serve_command)
    register_worker(app)
