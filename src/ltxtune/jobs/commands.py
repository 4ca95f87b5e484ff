"""`ltxtune worker` and the options it shares with `ltxtune serve`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from ltxtune.jobs.config import DEFAULT_RUNNER, ServiceConfig
from ltxtune.specs import PriceTable
from ltxtune.specs.common import Family

DATA_DIR = typer.Option(Path("ltxtune-data"), "--data-dir", help="Job store (SQLite), outputs, work dirs and keys live here.")
WORKERS = typer.Option(1, "--workers", min=0, help="GPU slots: jobs run at once, one child process each (0: run no jobs here).")
MODEL = typer.Option(None, "--model", help="Train every job on this model family instead (`tiny`: a weightless demo).")
RUNNER = typer.Option(DEFAULT_RUNNER, "--runner", help="The training function, `module:function` or `/path/file.py:function`.")
GPUS = typer.Option(None, "--gpus", help="Comma-separated CUDA device ids, one per slot (default: leave CUDA_VISIBLE_DEVICES alone).")
ALLOW_PRIVATE = typer.Option(False, "--allow-private-urls", help="Allow dataset and webhook URLs on loopback and private networks.")
PRICES = typer.Option(None, "--prices", help="A JSON file overriding entries of the price table.")
HEARTBEAT = typer.Option(5.0, "--heartbeat", help="Seconds between heartbeats of a running job.")
STALE_AFTER = typer.Option(60.0, "--stale-after", help="A running job without a heartbeat this long is resumed elsewhere.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Log debug messages.")


def _check_memory(value: str) -> str:
    from ltxtune.specs.memory import parse_memory

    try:
        parse_memory(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return value


MEMORY = typer.Option("auto", "--memory", callback=_check_memory,
                      help="Memory preset of every job: auto, bf16, fp8, int8, nf4 (CUDA), optionally +offload.")


def parse_model(model: str | None) -> Family | None:
    if model is None:
        return None
    try:
        return Family(model)
    except ValueError:
        raise typer.BadParameter(f"unknown model family {model!r}; use one of: {', '.join(f.value for f in Family)}") from None


def load_price_table(path: Path | None) -> PriceTable:
    if path is None:
        return PriceTable()
    try:
        return PriceTable().overridden(json.loads(path.read_text()))
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"price table {path}: {error}") from None


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def worker_command(
    data_dir: Path = DATA_DIR,
    workers: int = WORKERS,
    runner: str = RUNNER,
    gpus: str | None = GPUS,
    allow_private_urls: bool = ALLOW_PRIVATE,
    prices: Path | None = PRICES,
    heartbeat: float = HEARTBEAT,
    stale_after: float = STALE_AFTER,
    poll: float = typer.Option(1.0, "--poll", help="Seconds between looks at the queue."),
    memory: str = MEMORY,
    verbose: bool = VERBOSE,
) -> None:
    """Run queued jobs from the store in --data-dir (alongside or instead of `ltxtune serve`'s own worker)."""
    from ltxtune.jobs.worker import run_worker

    setup_logging(verbose)
    config = ServiceConfig(
        data_dir=data_dir,
        workers=max(1, workers),
        runner=runner,
        gpus=tuple(g.strip() for g in gpus.split(",") if g.strip()) if gpus else (),
        allow_private_urls=allow_private_urls,
        prices=load_price_table(prices),
        heartbeat_s=heartbeat,
        stale_after_s=stale_after,
        poll_s=poll,
        memory=memory,
    )
    run_worker(config)
