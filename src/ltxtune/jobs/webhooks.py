"""Delivering the outbox: every protocol's webhooks and callbacks, signed, retried, in order.

Signing (ED25519):

    message   = f"{request_id}\\n{user_id}\\n{timestamp}\\n{sha256hex(body)}"
    signature = hex(ed25519_sign(message))

carried in `{prefix}Request-Id`, `{prefix}User-Id`, `{prefix}Timestamp` and `{prefix}Signature`,
where each protocol names its prefix (`Dispatcher(header_prefixes=...)`, keyed by the
notification's kind). The public key is published at `/.well-known/jwks.json` (and
`/.well-known/ltxtune-webhook-key`) as a JWKS with one OKP/Ed25519 key; `verify_signature` here is
what a receiver does. The private key is made once and kept in the data dir.

Delivery: each (job, receiver) pair is a queue; its head is posted, and the next waits until the
head was answered 2xx or given up on. A pool of threads posts, with a limit per receiver and a
total time limit per post, so one slow receiver cannot delay another's notifications. A failed try is retried after base x 2^(tries-1) seconds
(capped), `webhook_attempts` tries in all (the default 10 span about two hours).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ltxtune.jobs.storage import read_or_create
from ltxtune.jobs.store import OutboxRecord, Store
from ltxtune.netguard import GuardedTransport, RefusedUrl
from ltxtune.netguard import check_url as guard_url

log = logging.getLogger(__name__)

DEFAULT_HEADER_PREFIX = "X-Ltxtune-Webhook-"


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    return "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """The server's ED25519 webhook key, made once under the data dir."""

    def __init__(self, key_path: Path):
        self._key = self._load_or_create(Path(key_path))
        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_key_raw = raw
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    @staticmethod
    def _load_or_create(path: Path) -> Ed25519PrivateKey:
        pem = read_or_create(path, lambda: Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, Ed25519PrivateKey)
        return key

    def sign(self, message: bytes) -> str:
        return self._key.sign(message).hex()

    def headers(self, prefix: str, request_id: str, user_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        return {
            "Content-Type": "application/json",
            f"{prefix}Request-Id": request_id,
            f"{prefix}User-Id": user_id,
            f"{prefix}Timestamp": stamp,
            f"{prefix}Signature": self.sign(signed_message(request_id, user_id, stamp, body)),
        }

    def jwks(self) -> dict:
        return {
            "keys": [
                {"kty": "OKP", "crv": "Ed25519", "x": _b64url(self.public_key_raw), "kid": self.key_id, "use": "sig", "alg": "EdDSA"}
            ]
        }


def public_keys_from_jwks(jwks: dict) -> list[Ed25519PublicKey]:
    return [
        Ed25519PublicKey.from_public_bytes(_b64url_decode(key["x"]))
        for key in jwks.get("keys", [])
        if key.get("kty") == "OKP" and key.get("crv") == "Ed25519"
    ]


def verify_signature(
    jwks: dict, headers: dict[str, str], body: bytes, *, prefix: str = DEFAULT_HEADER_PREFIX, max_age_s: float = 300.0
) -> bool:
    """What a receiver does: check the timestamp is fresh and the signature matches a published key."""
    prefix = prefix.lower()
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        request_id = lowered[f"{prefix}request-id"]
        user_id = lowered[f"{prefix}user-id"]
        timestamp = lowered[f"{prefix}timestamp"]
        signature = bytes.fromhex(lowered[f"{prefix}signature"])
    except (KeyError, ValueError):
        return False
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > max_age_s:
        return False
    message = signed_message(request_id, user_id, timestamp, body)
    for key in public_keys_from_jwks(jwks):
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False


UnsafeUrl = RefusedUrl


def check_target_url(url: str, allow_private: bool) -> None:
    """Refuse webhook targets that are not well-formed http(s) URLs, or that resolve to non-public
    addresses unless the operator allowed them (`--allow-private-urls`); see `ltxtune.netguard`."""
    guard_url(url, allow_private=allow_private)


def receiver_of(url: str) -> str:
    """Which receiver a URL names (its host and port): the unit of the per-receiver limit."""
    try:
        parts = urlsplit(url)
        return f"{(parts.hostname or '').lower()}:{parts.port or ''}"
    except ValueError:
        return url[:200]


class Dispatcher:
    """Delivers due notifications from the outbox until stopped: one thread picks the heads of the
    queues and a pool of `workers` threads posts them, at most `per_receiver` at once to one
    receiver (host and port), so a slow receiver holds only its own share of the pool. Every post
    ends within `timeout_s` in all (connect, send and every read together).

    Any failure of a try, including ones no HTTP library anticipates (a URL it cannot even parse),
    counts as an attempt; after `attempts` the item is dead, with the reason in `last_error`."""

    def __init__(
        self,
        store: Store,
        signer: Signer,
        *,
        attempts: int = 10,
        base_delay_s: float = 7.0,
        max_delay_s: float = 1800.0,
        timeout_s: float = 10.0,
        allow_private_urls: bool = False,
        header_prefixes: dict[str, str] | None = None,
        poll_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        check_url: Callable[[str, bool], None] = check_target_url,
        workers: int = 8,
        per_receiver: int = 2,
    ):
        self.store = store
        self.signer = signer
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.allow_private_urls = allow_private_urls
        self.header_prefixes = dict(header_prefixes or {})
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.workers = workers
        self.per_receiver = per_receiver
        self._check_url = check_url
        transport = transport if transport is not None else GuardedTransport(allow_private_urls, total_timeout_s=timeout_s)
        self._client = httpx.Client(timeout=timeout_s, transport=transport, follow_redirects=False)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ltxtune-webhook")
        self._busy: dict[str, int] = {}
        self._in_flight = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="ltxtune-webhooks", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due(wait=False)
            except Exception:
                log.exception("webhook delivery loop failed; continuing")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def retry_delay(self, tries: int) -> float:
        return min(self.base_delay_s * 2 ** (tries - 1), self.max_delay_s)

    def deliver_due(self, *, wait: bool = True) -> int:
        """One pass: hand the head of every due queue to the pool, where the pool and the
        receiver's limit leave room. Returns how many were started; with `wait`, returns once
        they have been tried."""
        started: list[Future] = []
        for item in self.store.due_deliveries(limit=200):
            if self._stop.is_set():
                break
            receiver = receiver_of(item.url)
            with self._lock:
                if self._in_flight >= self.workers or self._busy.get(receiver, 0) >= self.per_receiver:
                    continue
            if not self.store.lease_delivery(item.id, seconds=self.timeout_s + 30.0):
                continue
            with self._lock:
                self._in_flight += 1
                self._busy[receiver] = self._busy.get(receiver, 0) + 1
            started.append(self._pool.submit(self._run, item, receiver))
        if wait:
            for future in started:
                future.result()
        return len(started)

    def _run(self, item: OutboxRecord, receiver: str) -> None:
        try:
            self._deliver(item)
        except Exception as failure:  # a poison item: count the try, so it ends dead, never re-leased forever
            log.exception("webhook %s for job %s failed unexpectedly", item.id, item.job_id)
            self._failed(item, f"{type(failure).__name__}: {failure}")
        finally:
            with self._lock:
                self._in_flight -= 1
                self._busy[receiver] -= 1
                if not self._busy[receiver]:
                    del self._busy[receiver]
            self._wake.set()

    def _deliver(self, item: OutboxRecord) -> None:
        error: str | None = None
        try:
            self._check_url(item.url, self.allow_private_urls)
            prefix = self.header_prefixes.get(item.kind, DEFAULT_HEADER_PREFIX)
            headers = self.signer.headers(prefix, item.request_id, item.user_id, item.body)
            response = self._client.post(item.url, content=item.body, headers=headers)
            if 200 <= response.status_code < 300:
                self.store.delivered(item.id)
                return
            error = f"HTTP {response.status_code}"
        except UnsafeUrl as refused:
            self.store.delivery_failed(item.id, f"refused: {refused}", retry_at=None)
            log.warning("webhook %s for job %s refused: %s", item.id, item.job_id, refused)
            return
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"
        self._failed(item, error)

    def _failed(self, item: OutboxRecord, error: str) -> None:
        tries = item.attempts + 1
        if tries >= self.attempts:
            log.warning("webhook %s for job %s to %r: giving up after %d tries (%s)", item.id, item.job_id, item.url, tries, error)
            self.store.delivery_failed(item.id, error, retry_at=None)
        else:
            self.store.delivery_failed(item.id, error, retry_at=time.time() + self.retry_delay(tries))
