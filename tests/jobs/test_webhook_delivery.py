"""Fair webhook delivery: a receiver that trickles its answer holds only its own share of the
pool and is cut off at the total time limit; items no HTTP client can send end dead, counted."""

from __future__ import annotations

import socket
import threading
import time

from ltxtune.jobs.records import NewJob, Notification
from ltxtune.jobs.sqlite import SqliteStore as Store
from ltxtune.jobs.webhooks import Dispatcher, Signer
from tests.jobs.servicekit import Receiver, wait_for
from tests.jobs.test_store import PLAN


class Trickler:
    """A receiver that reads the request, then sends one byte every `every_s` and never finishes."""

    def __init__(self, every_s: float = 0.3):
        self.every_s = every_s
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/slow"
        self.connections = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            try:
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                    if self.stopped.wait(self.every_s):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


def _store(tmp_path, targets: dict[str, str]) -> Store:
    """A store whose every status change notifies the URL `targets` names for the job's endpoint."""
    return Store(tmp_path / "db.sqlite", notifier=lambda before, after: [Notification(url=targets[after.job.endpoint], kind="fal", body=b"{}")])


def _job(store: Store, endpoint: str) -> str:
    job, _ = store.create(NewJob(protocol="fal", endpoint=endpoint, owner="o", user_id="u", plan=PLAN, base_url="http://x"))
    return job.id


def test_a_slow_receiver_does_not_delay_another(tmp_path):
    slow = Trickler()
    try:
        with Receiver() as fast:
            store = _store(tmp_path, {"slow": slow.url, "fast": fast.url + "/fast"})
            slow_jobs = [_job(store, "slow") for _ in range(6)]
            dispatcher = Dispatcher(store, Signer(tmp_path / "k.pem"), attempts=2, base_delay_s=0.05, timeout_s=3.0,
                                    allow_private_urls=True, poll_s=0.05, workers=4, per_receiver=2)
            dispatcher.start()
            try:
                wait_for(lambda: slow.connections >= 2, timeout=5, what="the slow receiver to be busy")
                queued = time.monotonic()
                fast_job = _job(store, "fast")
                dispatcher.wake()
                wait_for(lambda: fast.deliveries, timeout=10, what="the fast receiver's callback")
                delay = time.monotonic() - queued
                assert delay < 1.0, f"the fast receiver waited {delay:.2f} s behind the slow one"
                assert store.outbox(fast_job)[0].delivered_at is not None
                assert slow.connections == 2  # never more than its share at once
                # each slow post ends at the total limit (3 s) although a byte arrives every 0.3 s
                first = wait_for(lambda: next((i for i in store.outbox(slow_jobs[0]) if i.attempts), None), timeout=8, what="a slow try to end")
                assert "Timeout" in (first.last_error or "")
            finally:
                dispatcher.stop()
    finally:
        slow.close()


def test_a_poison_item_is_counted_and_dead_after_its_attempts(tmp_path):
    store = _store(tmp_path, {"poison": "http://exa\x00mple.com/hook"})
    job_id = _job(store, "poison")
    dispatcher = Dispatcher(store, Signer(tmp_path / "k.pem"), attempts=3, base_delay_s=0.01, max_delay_s=0.02,
                            allow_private_urls=True, check_url=lambda url, allow: None)  # a guard that let it through
    try:
        for _ in range(5):
            time.sleep(0.03)
            dispatcher.deliver_due()
    finally:
        dispatcher.stop()
    (item,) = store.outbox(job_id)
    assert item.dead and item.attempts == 3 and item.delivered_at is None
    assert item.last_error and item.last_error.startswith("InvalidURL")
