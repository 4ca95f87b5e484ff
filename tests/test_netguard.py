"""The outbound URL guard: one table of refused targets, used for every kind of outbound request
(dataset fetch, fal webhook, Civitai callback), against a real loopback server that must never be hit."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest

import ltxtune.netguard as netguard
from ltxtune.data.errors import DatasetError
from ltxtune.data.fetch import FetchLimits, fetch_file
from ltxtune.errors import ErrorKind
from ltxtune.jobs.records import OutboxRecord
from ltxtune.jobs.webhooks import Dispatcher, Signer, UnsafeUrl, check_target_url

# Names a stub resolver answers (as a DNS server could), next to literal spellings.
STUB_DNS = {"loopback.test": ["127.0.0.1"], "private.test": ["10.0.0.7", "fd00::7"], "mapped.test": ["::ffff:127.0.0.1"]}

REFUSED_HOSTS = [
    "127.0.0.1", "localhost", "127.1", "2130706433", "0177.0.0.1", "0x7f.1", "0x7f000001", "0x7f.0.0.1",
    "017700000001", "0.0.0.0", "0", "[::1]", "[::]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::127.0.0.1]",
    "[2002:7f00:1::1]", "[2002:a00:1::1]", "[64:ff9b::7f00:1]", "[64:ff9b::a00:1]", "[64:ff9b:1::1]",
    "[2001::1]",  # Teredo
    "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "192.0.0.8", "192.0.2.1",
    "198.18.0.1", "198.51.100.1", "203.0.113.1", "192.88.99.1", "240.0.0.1", "255.255.255.255",
    "224.0.0.1", "239.255.255.250", "[ff02::1]", "[ff0e::1]", "[fe80::1]", "[fc00::1]", "[fd12::1]", "[fec0::1]",
    "[2001:db8::1]", "[::ffff:10.0.0.1]", "[::ffff:169.254.169.254]",
    "loopback.test", "private.test", "mapped.test",
]
INVALID_URLS = [
    "http://127.0.0.1:99999/x", "http://example.com:0/x", "http://example.com:port/x", "http://[::1/x",
    "http://::1]/x", "http://exa\x00mple.com/x", "http://example.com/a\r\nHost: evil", "http://exa mple.com/x",
    "http://example.com/\x7f", "http:///x", "gopher://example.com/x", "file:///etc/passwd",
]


@pytest.fixture
def loopback_server():
    """A real HTTP server on 127.0.0.1 that counts every request reaching it."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self._hit()

        def do_POST(self):  # noqa: N802
            self._hit()

        def _hit(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def stub_dns(monkeypatch):
    real = netguard.resolve_host
    monkeypatch.setattr(netguard, "resolve_host", lambda host, port: STUB_DNS.get(host) or real(host, port))


class Outbox:
    """The two store calls a delivery makes, recorded (the queue itself is tested in tests/jobs)."""

    def __init__(self, item: OutboxRecord):
        self.items = [item]
        self.outcomes: list[tuple] = []

    def due_deliveries(self, limit: int = 20):
        items, self.items = self.items, []
        return items

    def lease_delivery(self, item_id, seconds):
        return True

    def delivered(self, item_id):
        self.outcomes.append(("delivered",))

    def delivery_failed(self, item_id, error, retry_at):
        self.outcomes.append(("failed", error, retry_at))


def refusal_by_fetch(url: str, tmp_path: Path) -> str:
    with pytest.raises(DatasetError) as caught:
        fetch_file(url, tmp_path / "got", field="training_data_url", limits=FetchLimits(connect_timeout_s=2))
    assert caught.value.kind is ErrorKind.SOURCE
    assert not (tmp_path / "got").exists()
    return caught.value.message


def refusal_by_submit_check(url: str, tmp_path: Path) -> str:
    with pytest.raises(UnsafeUrl) as caught:
        check_target_url(url, allow_private=False)
    return str(caught.value)


def _refusal_by_delivery(kind: str, url: str, tmp_path: Path) -> str:
    item = OutboxRecord(id=1, job_id="j", url=url, kind=kind, request_id="r", user_id="u", body=b"{}", attempts=0,
                        next_at=0.0, delivered_at=None, dead=False, last_error=None)
    outbox = Outbox(item)
    dispatcher = Dispatcher(outbox, Signer(tmp_path / "key.pem"), attempts=3, timeout_s=2)  # type: ignore[arg-type]
    try:
        assert dispatcher.deliver_due() == 1
    finally:
        dispatcher.stop()
    ((outcome, error, retry_at),) = outbox.outcomes
    assert outcome == "failed" and retry_at is None  # refused for good, not retried
    assert error.startswith("refused: ")
    return error


def refusal_by_webhook(url: str, tmp_path: Path) -> str:
    return _refusal_by_delivery("fal", url, tmp_path)


def refusal_by_callback(url: str, tmp_path: Path) -> str:
    return _refusal_by_delivery("civitai", url, tmp_path)


OUTBOUND = [refusal_by_fetch, refusal_by_submit_check, refusal_by_webhook, refusal_by_callback]


@pytest.mark.parametrize("send", OUTBOUND, ids=lambda f: f.__name__.removeprefix("refusal_by_"))
def test_every_outbound_request_refuses_every_non_public_target(send, loopback_server, tmp_path):
    port, hits = loopback_server
    for host in REFUSED_HOSTS:
        message = send(f"http://{host}:{port}/x", tmp_path)
        assert netguard.REFUSAL in message, (host, message)
    assert hits == []


@pytest.mark.parametrize("send", OUTBOUND, ids=lambda f: f.__name__.removeprefix("refusal_by_"))
def test_every_outbound_request_refuses_malformed_urls_with_a_message(send, loopback_server, tmp_path):
    _, hits = loopback_server
    for url in INVALID_URLS:
        message = send(url, tmp_path)
        assert message and "Traceback" not in message, url
    assert hits == []


def test_malformed_url_messages_say_what_is_wrong():
    cases = {
        "http://127.0.0.1:99999/x": "the URL is malformed (Port out of range 0-65535)",
        "http://example.com:0/x": "the URL's port must be between 1 and 65535",
        "http://[::1/x": "the URL is malformed (Invalid IPv6 URL)",
        "http://::1]/x": "the URL is malformed (Invalid IPv6 URL)",
        "http://exa\x00mple.com/x": "the URL contains spaces, NUL or control characters",
        "gopher://example.com/x": "must be an http(s) URL; got 'gopher://example.com/x'",
    }
    for url, message in cases.items():
        with pytest.raises(netguard.RefusedUrl) as caught:
            netguard.parse_target(url)
        assert str(caught.value) == message


@pytest.mark.parametrize(
    ("spelling", "address"),
    [("2130706433", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("127.1", "127.0.0.1"),
     ("10.1", "10.0.0.1"), ("0xC0.0xA8.1.1", "192.168.1.1"), ("1.2.3.4", "1.2.3.4"), ("0x1.0x2.0x3.0x4", "1.2.3.4")],
)
def test_ipv4_spellings_mean_what_libc_reads(spelling, address):
    import socket

    assert str(netguard.ipv4_literal(spelling)) == address == socket.inet_ntoa(socket.inet_aton(spelling))


@pytest.mark.parametrize("spelling", ["256.1.1.1", "1.2.3.4.5", "0x", "08.1.1.1", "example", "1.2.3.0x100", ""])
def test_non_ipv4_spellings_are_names(spelling):
    assert netguard.ipv4_literal(spelling) is None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1",
                                     "64:ff9b::808:808"])
def test_public_addresses_pass(address):
    assert netguard.is_public_address(address)


def test_the_operator_flag_allows_private_targets(loopback_server, tmp_path):
    port, hits = loopback_server
    (tmp_path / "x").write_bytes(b"")
    got = fetch_file(f"http://0x7f.1:{port}/data", tmp_path / "got", field="f", allow_private_urls=True)
    assert got.read_bytes() == b"" and hits == ["/data"]
    check_target_url(f"http://loopback.test:{port}/hook", allow_private=True)
    with pytest.raises(UnsafeUrl):  # syntax still counts
        check_target_url("http://[::1/hook", allow_private=True)


class Rebinding:
    """A resolver that answers a public address first and loopback on every later lookup."""

    def __init__(self):
        self.lookups = 0

    def __call__(self, host, port):
        self.lookups += 1
        return ["1.1.1.1"] if self.lookups == 1 else ["127.0.0.1"]


def test_dns_rebinding_never_reaches_loopback(loopback_server, tmp_path, monkeypatch):
    port, hits = loopback_server
    url = f"http://rebind.test:{port}/x"

    # A webhook: checked when delivered (lookup 1, public), then connected through the guard, which
    # looks up again for its own check and refuses loopback instead of dialling a name.
    resolver = Rebinding()
    monkeypatch.setattr(netguard, "resolve_host", resolver)
    error = refusal_by_webhook(url, tmp_path)
    assert "rebind.test resolves to 127.0.0.1" in error and resolver.lookups == 2

    # A dataset fetch: one lookup per connection, and it dials exactly what that lookup answered
    # (1.1.1.1, which does not serve this port), never the name again.
    resolver = Rebinding()
    monkeypatch.setattr(netguard, "resolve_host", resolver)
    started = time.monotonic()
    with pytest.raises(DatasetError) as caught:
        fetch_file(url, tmp_path / "got", field="training_data_url", limits=FetchLimits(connect_timeout_s=1))
    assert caught.value.message.startswith("training_data_url not reachable: ")
    assert resolver.lookups == 1 and time.monotonic() - started < 10
    assert hits == []
