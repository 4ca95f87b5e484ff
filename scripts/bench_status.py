"""Load benchmark: status reads while a job trains, on SQLite and on PostgreSQL.

    PYTHONPATH=src .venv/bin/python scripts/bench_status.py                    # both backends
    PYTHONPATH=src .venv/bin/python scripts/bench_status.py --backends sqlite --seconds 10

For each backend it starts `ltxtune serve --model tiny` (one worker slot, the real trainer) on
loopback, submits one long fal job on a generated dataset and `--queued` more that wait behind
it, then measures for `--seconds` each:
  1. the training seconds per step with no pollers;
  2. the same with `--pollers` concurrent clients reading the job's fal status route every
     `--interval` seconds (as a client's status poll does; 0: back to back), and every status
     read's latency (p50 / p99 / max), the request rate and errors.
It prints one line per phase and a summary (targets: p99 under 50 ms with 200 pollers, the step
slowed by at most 1.5x). Everything is bounded: loopback only, a fixed number of clients and
seconds; the job is canceled and the server stopped at the end. PostgreSQL runs in a database
made for the run (`ltxtune_bench_<random>`) on `--postgres` and dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.server
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.data.media makes the clips


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_dataset(root: Path) -> str:
    from tests.data.media import make_video, make_zip

    clip = make_video(root / "a.mp4", 128, 96, frames=17, fps=24)
    make_zip(root / "clips.zip", {"a.mp4": clip, "a.txt": b"TOK a square"})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/clips.zip"


def poll_process(port: int, path: str, pollers: int, interval: float, seconds: float, results) -> None:
    """Pollers on raw HTTP/1.1 keep-alive connections (asyncio streams: little client CPU)."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0

    async def poller(offset: float) -> None:
        nonlocal errors
        await asyncio.sleep(offset)  # spread the first reads over one interval
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        end = time.monotonic() + seconds - offset
        while time.monotonic() < end:
            started = time.perf_counter()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
            except (OSError, asyncio.IncompleteReadError, StopIteration, ValueError):
                errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            elapsed = time.perf_counter() - started
            latencies.append(elapsed)
            if interval > elapsed:
                await asyncio.sleep(interval - elapsed)
        writer.close()

    async def main() -> None:
        await asyncio.gather(*(poller(interval * i / max(1, pollers)) for i in range(pollers)))

    asyncio.run(main())
    results.put((latencies, errors))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Bench:
    def __init__(self, args: argparse.Namespace, backend: str, dataset_url: str, work: Path):
        self.args = args
        self.backend = backend
        self.dataset_url = dataset_url
        self.work = work
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database: str | None = None

    # -- the server ---------------------------------------------------------------------------

    def store_option(self) -> list[str]:
        if self.backend == "sqlite":
            return []
        import psycopg

        name = f"ltxtune_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.args.postgres, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        self.database = name
        url = urlunsplit(urlsplit(self.args.postgres)._replace(path=f"/{name}"))
        subprocess.run([sys.executable, "-m", "ltxtune.cli", "db", "migrate", "--store", url], check=True, stdout=subprocess.DEVNULL)
        return ["--store", url]

    def drop_database(self) -> None:
        if self.database is None:
            return
        import psycopg

        with psycopg.connect(self.args.postgres, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")

    def start(self) -> subprocess.Popen:
        command = [
            sys.executable, "-m", "ltxtune.cli", "serve", "--data-dir", str(self.work / self.backend), "--model", "tiny",
            "--port", str(self.port), "--workers", "1", "--allow-private-urls", *self.store_option(),
        ]  # fmt: skip
        log = open(self.work / f"{self.backend}-server.log", "wb")
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return server
            except httpx.HTTPError:
                time.sleep(0.2)
        server.kill()
        raise SystemExit(f"the server did not start; see {self.work / f'{self.backend}-server.log'}")

    # -- measuring ----------------------------------------------------------------------------

    def steps_done(self, client, status_url: str) -> tuple[float, int] | None:
        body = client.get(status_url, params={"logs": 1}).json()
        for entry in reversed(body.get("logs") or []):
            message = entry["message"]
            if message.startswith("train "):
                done = int(message.split()[1].split("/")[0])
                return time.monotonic(), done
        return None

    def wait_training(self, client, status_url: str) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.steps_done(client, status_url):
                return
            time.sleep(0.5)
        raise SystemExit("the job did not start training within 300 s")

    def seconds_per_step(self, client, status_url: str, seconds: float) -> float:
        first = self.wait_step(client, status_url)
        time.sleep(seconds)
        last = self.wait_step(client, status_url)
        return (last[0] - first[0]) / max(1, last[1] - first[1])

    def wait_step(self, client, status_url: str) -> tuple[float, int]:
        """The moment a new 'train N/M' line appears (so the step count is exact at that time)."""
        start = self.steps_done(client, status_url)
        while True:
            now = self.steps_done(client, status_url)
            if now and (start is None or now[1] != start[1]):
                return now
            time.sleep(0.05)

    def poll(self, status_url: str, seconds: float) -> tuple[list[float], int]:
        """`--pollers` clients, spread over `--client-processes` processes (one Python process
        cannot make a few hundred requests a second), each reading the status every `--interval`
        seconds (0: back to back) for `seconds`; returns every latency and the errors."""
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        processes = max(1, min(self.args.client_processes, self.args.pollers))
        shares = [self.args.pollers // processes + (1 if i < self.args.pollers % processes else 0) for i in range(processes)]
        path = urlsplit(status_url).path
        clients = [ctx.Process(target=poll_process, args=(self.port, path, share, self.args.interval, seconds, results)) for share in shares]
        for client in clients:
            client.start()
        latencies: list[float] = []
        errors = 0
        for _ in clients:
            got, failed = results.get(timeout=seconds + 120)
            latencies += got
            errors += failed
        for client in clients:
            client.join(30)
        return latencies, errors

    def run(self) -> dict:
        import httpx

        server = self.start()
        try:
            with httpx.Client(base_url=self.base, timeout=30) as client:
                body = {"training_data_url": self.dataset_url, "number_of_steps": 20000, "number_of_frames": 17,
                        "resolution": "low", "aspect_ratio": "16:9", "trigger_phrase": "TOK"}  # fmt: skip
                submitted = client.post("/fal-ai/ltx23-trainer-v2/t2v", json=body).json()
                queued = [client.post("/fal-ai/ltx23-trainer-v2/t2v", json=body).json() for _ in range(self.args.queued)]
                status_url = submitted["status_url"]
                self.wait_training(client, status_url)
                quiet = self.seconds_per_step(client, status_url, self.args.seconds)
                print(f"[{self.backend}] no pollers: {quiet:.3f} s/step", flush=True)
                result: dict = {}

                def measure_under_load() -> None:
                    result["loaded"] = self.seconds_per_step(client, status_url, self.args.seconds)

                measuring = threading.Thread(target=measure_under_load)
                measuring.start()
                started = time.monotonic()
                latencies, errors = self.poll(status_url, self.args.seconds + 2 * quiet + 1)
                elapsed = time.monotonic() - started
                measuring.join()
                for item in [submitted, *queued]:
                    client.put(item["cancel_url"])
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
            self.drop_database()
        line = {
            "backend": self.backend,
            "requests": len(latencies),
            "errors": errors,
            "rps": len(latencies) / elapsed,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * percentile(latencies, 0.99),
            "max_ms": 1000 * max(latencies),
            "step_s": quiet,
            "step_s_loaded": result["loaded"],
        }
        print(
            f"[{self.backend}] {self.args.pollers} pollers every {self.args.interval:g} s: {line['requests']} requests ({line['rps']:.0f}/s, {errors} errors), "
            f"p50 {line['p50_ms']:.1f} ms, p99 {line['p99_ms']:.1f} ms, max {line['max_ms']:.1f} ms; "
            f"{line['step_s_loaded']:.3f} s/step ({line['step_s_loaded'] / quiet:.2f}x)",
            flush=True,
        )
        return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgres", help="Comma-separated: sqlite, postgres.")
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--queued", type=int, default=50, help="Jobs waiting behind the training one.")
    parser.add_argument("--interval", type=float, default=1.0, help="Seconds between one poller's reads (0: back to back).")
    parser.add_argument("--client-processes", type=int, default=4, help="Processes the pollers are spread over.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Length of each measurement.")
    parser.add_argument("--postgres", default=os.environ.get("LTXTUNE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    if not 1 <= args.pollers <= 1000 or not 1 <= args.seconds <= 300:
        raise SystemExit("--pollers must be 1-1000 and --seconds 1-300")
    work = Path(tempfile.mkdtemp(prefix="ltxtune-bench-"))
    try:
        dataset_url = serve_dataset(work)
        lines = [Bench(args, backend.strip(), dataset_url, work).run() for backend in args.backends.split(",") if backend.strip()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nbackend   pollers  p50 ms  p99 ms  max ms  req/s  s/step quiet  s/step loaded  slowdown")
    for line in lines:
        print(
            f"{line['backend']:<9} {args.pollers:>7} {line['p50_ms']:>7.1f} {line['p99_ms']:>7.1f} {line['max_ms']:>7.1f} "
            f"{line['rps']:>6.0f} {line['step_s']:>13.3f} {line['step_s_loaded']:>14.3f} {line['step_s_loaded'] / line['step_s']:>8.2f}x"
        )


if __name__ == "__main__":
    main()
