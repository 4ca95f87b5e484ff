"""How the service is run: where its data lives, who may call it, how jobs run.

One frozen `ServiceConfig` is built by `ltxtune serve` / `ltxtune worker` (or a test) and handed to
everything else; nothing reads the environment after that, except `load_api_keys`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ltxtune.specs import PriceTable
from ltxtune.specs.common import Family

DEFAULT_RUNNER = "ltxtune.training.job:run_job"
KEYS_ENV = "LTXTUNE_API_KEYS"
LOCAL_OWNER = "local"


@dataclass(frozen=True)
class ApiKey:
    """One API key. Jobs are owned by `owner` (a hash of the key, never the key itself)."""

    key: str
    name: str = ""

    @property
    def owner(self) -> str:
        return key_owner(self.key)

    @property
    def user_id(self) -> str:
        """What webhooks name as the user: the configured name, or a short hash of the key."""
        return self.name or self.owner[:16]


def key_owner(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ServiceConfig:
    data_dir: Path
    store: str | None = None  # a postgresql:// URL; None: the SQLite file in data_dir
    storage: str | None = None  # shared object storage (a directory or s3://bucket/prefix); None: data_dir
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[ApiKey, ...] = ()
    workers: int = 1  # GPU slots of the embedded worker; 0 runs the API only
    model: Family | None = None  # e.g. Family.TINY: every job trains this family instead
    runner: str = DEFAULT_RUNNER  # "module:function" or "/path/file.py:function"
    public_url: str | None = None  # base of links in results and webhooks; default: the request's own (if allowed)
    allowed_hosts: tuple[str, ...] = ()  # Host header values answered besides public_url's and loopback's
    max_body_bytes: int = 256 * 1024 * 1024  # request bodies past this are refused (413) while streaming
    url_ttl_s: int = 24 * 3600
    allow_private_urls: bool = False
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    prices: PriceTable = field(default_factory=PriceTable)
    device: str = "auto"
    memory: str = "auto"  # memory preset of every job (`ltxtune.specs.memory`)
    gpus: tuple[str, ...] = ()  # CUDA device ids handed out to slots, one each; () leaves CUDA_VISIBLE_DEVICES alone
    # Worker timing.
    poll_s: float = 1.0
    heartbeat_s: float = 5.0
    stale_after_s: float = 60.0  # a running job without a heartbeat for this long is reclaimed
    max_reclaims: int = 3  # resumes after a lost worker before the job fails
    infra_retries: int = 2  # resumes after the child died by a signal (any API), on top of a request's own retries
    stop_grace_s: float = 60.0  # how long a stopping job may take to reach its next step
    # Webhook delivery.
    webhook_attempts: int = 10
    webhook_base_delay_s: float = 7.0  # doubles per try: 10 tries span about two hours
    webhook_max_delay_s: float = 1800.0
    webhook_timeout_s: float = 10.0
    sync_wait_s: float = 3600.0  # how long a synchronous route waits for a result
    # Browsers and uploads.
    cors_origins: tuple[str, ...] = ()  # origins a browser may call from ("*": any); () sends no CORS headers
    max_upload_bytes: int = 8 * 2**30  # the largest file one upload may store

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ltxtune.db"

    @property
    def store_target(self) -> Path | str:
        """Where the job store is: the `--store` URL, or the SQLite file in the data dir."""
        return self.store or self.db_path

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_certfile else "http"

    def default_base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    def safe_host(self) -> tuple[str, str | None]:
        """The address to bind and, when it differs from the one asked for, why.

        Without API keys every caller is the same anonymous owner, so the server only listens on
        loopback, where nobody but this machine can reach it.
        """
        if self.api_keys or is_loopback(self.host):
            return self.host, None
        return "127.0.0.1", (
            f"no API keys configured (--keys-file or {KEYS_ENV}): binding 127.0.0.1 instead of {self.host}; "
            "every local request is accepted without a key"
        )

    def with_(self, **changes) -> "ServiceConfig":
        return replace(self, **changes)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_keys_text(text: str) -> tuple[ApiKey, ...]:
    """Keys from a file: a JSON object `{"name": "key"}` or list of keys, or lines of `key` / `name key`
    (blank lines and `#` comments ignored)."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        data = json.loads(stripped)
        if isinstance(data, dict):
            return tuple(ApiKey(key=str(key), name=str(name)) for name, key in data.items())
        return tuple(ApiKey(key=str(key)) for key in data)
    keys = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        keys.append(ApiKey(key=parts[-1], name=parts[0] if len(parts) > 1 else ""))
    return tuple(keys)


def load_api_keys(keys_file: Path | None, environ: dict[str, str] | None = None) -> tuple[ApiKey, ...]:
    """Keys from `keys_file` plus `LTXTUNE_API_KEYS` (comma-separated keys)."""
    environ = os.environ if environ is None else environ
    keys: list[ApiKey] = []
    if keys_file is not None:
        keys += parse_keys_text(Path(keys_file).read_text())
    keys += [ApiKey(key=part.strip()) for part in environ.get(KEYS_ENV, "").split(",") if part.strip()]
    seen: set[str] = set()
    unique = []
    for key in keys:
        if key.key not in seen:
            seen.add(key.key)
            unique.append(key)
    return tuple(unique)
