"""`ltxtune db migrate` (create or bring a job store's schema up to date) and `ltxtune status`
(the workers serving a store, their GPUs, the queue and the running jobs)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from ltxtune.cli.options import fail

STORE_HELP = "A postgresql:// URL (default: the SQLite store in --data-dir)."
db_app = typer.Typer(no_args_is_help=True, help="The job store's schema.")


def _target(store: str | None, data_dir: Path) -> Path | str:
    from ltxtune.jobs.store import is_database_url

    if store is None:
        return data_dir / "ltxtune.db"
    if not is_database_url(store):
        raise fail(f"--store {store}: give a postgresql:// URL (SQLite lives in --data-dir)")
    return store


@db_app.command("migrate")
def migrate(
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
    data_dir: Path = typer.Option(Path("ltxtune-data"), "--data-dir"),
) -> None:
    """Create the job store, or migrate it to this version's schema (safe to run again, and from many hosts)."""
    from ltxtune.jobs.store import migrate_store

    target = _target(store, data_dir)
    try:
        before, now = migrate_store(target)
    except Exception as error:
        raise fail(f"migrating the job store failed: {error}", code=1) from None
    typer.echo(f"job store schema {now}" + (f" (migrated from {before})" if before != now else " (already current)"))


def status(
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
    data_dir: Path = typer.Option(Path("ltxtune-data"), "--data-dir"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    seen_within: float = typer.Option(120.0, "--seen-within", help="List workers that reported within this many seconds."),
) -> None:
    """Show the workers serving the store (host, GPUs, what they run), the queue depth and the running jobs."""
    from ltxtune.jobs.store import JobStatus, open_store

    try:
        opened = open_store(_target(store, data_dir))
    except Exception as error:
        raise fail(f"cannot open the job store: {error}", code=1) from None
    try:
        report = {
            "store": opened.describe(),
            "counts": opened.counts(),
            "workers": [
                {"id": w.id, "host": w.host, "slots": w.slots, "running": list(w.running), "draining": w.draining,
                 "seen_s_ago": round(time.time() - w.heartbeat_at, 1), **w.capabilities}
                for w in opened.workers(seen_within_s=seen_within)
            ],  # fmt: skip
            "running": [
                {"id": j.id, "status": j.status.value, "worker": j.lease_owner, "progress": round(j.progress, 4), "text": j.progress_text}
                for j in opened.active_jobs()
            ],
        }
    finally:
        opened.close()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    counts = report["counts"]
    typer.echo(f"store: {report['store']}")
    typer.echo(
        f"queue: {counts.get(JobStatus.QUEUED.value, 0)} queued, {counts.get('preparing', 0)} preparing, "
        f"{counts.get('running', 0)} running; webhook backlog {counts['webhook_backlog']}"
    )
    typer.echo(f"workers ({len(report['workers'])}):")
    for w in report["workers"]:
        gpus = ", ".join(f"{g['index']}:{g['name']} {g['free_bytes'] / 2**30:.1f}/{g['total_bytes'] / 2**30:.1f} GiB free" for g in w["gpus"]) or "no GPU"
        state = " draining" if w["draining"] else ""
        typer.echo(f"  {w['id']} on {w['host']}{state}: {len(w['running'])}/{w['slots']} slots busy; {gpus}; seen {w['seen_s_ago']} s ago")
    typer.echo(f"running jobs ({len(report['running'])}):")
    for j in report["running"]:
        typer.echo(f"  {j['id']} {j['status']} on {j['worker']}: {j['progress'] * 100:.0f}% {j['text'] or ''}".rstrip())


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.command("status")(status)
