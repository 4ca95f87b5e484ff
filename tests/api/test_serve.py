"""`ltxtune serve`: loopback only without keys, the CLI wiring, and a torch-free API import."""

from __future__ import annotations

import socket
import subprocess
import sys

import typer
from typer.testing import CliRunner

from ltxtune.cli import serve as serve_module
from ltxtune.jobs.config import ApiKey, ServiceConfig, load_api_keys, parse_keys_text


def test_without_keys_the_server_binds_loopback_and_says_so(tmp_path, monkeypatch, capsys):
    calls = {}

    def run(self, sockets):
        sock = sockets[0]
        calls.update(host=sock.getsockname()[0], nodelay=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        sock.close()

    monkeypatch.setattr("uvicorn.Server.run", run)
    serve_module.serve(ServiceConfig(data_dir=tmp_path / "d", host="0.0.0.0", port=0, workers=0))
    assert calls["host"] == "127.0.0.1" and calls["nodelay"] == 1  # no 40 ms delayed-ACK wait per response
    assert "no API keys configured" in capsys.readouterr().err
    serve_module.serve(ServiceConfig(data_dir=tmp_path / "d", host="0.0.0.0", port=0, workers=0, api_keys=(ApiKey("k"),)))
    assert calls["host"] == "0.0.0.0"


def test_register_adds_serve_and_worker(tmp_path, monkeypatch):
    app = typer.Typer()

    @app.command()
    def other() -> None:
        pass

    serve_module.register(app)
    seen = {}
    monkeypatch.setattr(serve_module, "serve", lambda config: seen.update(config=config))
    keys = tmp_path / "keys.txt"
    keys.write_text("# operators\nalice a-key:123\nb-key\n")
    monkeypatch.setenv("LTXTUNE_API_KEYS", "c-key")
    result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "d"), "--keys-file", str(keys), "--model", "tiny", "--workers", "2", "--port", "9"])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert [k.name for k in config.api_keys] == ["alice", "", ""] and config.api_keys[0].key == "a-key:123"
    assert config.model.value == "tiny" and config.workers == 2 and config.port == 9
    assert config.allowed_hosts == () and config.infra_retries == 2
    more = ["--allowed-host", "gpu.lan", "--allowed-host", "trainer.example.com:8443", "--infra-retries", "5"]
    result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "d"), *more])
    assert result.exit_code == 0, result.output
    assert seen["config"].allowed_hosts == ("gpu.lan", "trainer.example.com:8443") and seen["config"].infra_retries == 5
    help_text = CliRunner().invoke(app, ["worker", "--help"])
    assert help_text.exit_code == 0 and "--data-dir" in help_text.output


def test_keys_from_json_and_env():
    assert parse_keys_text('{"alice": "k1", "bob": "k2"}') == (ApiKey("k1", "alice"), ApiKey("k2", "bob"))
    assert load_api_keys(None, {"LTXTUNE_API_KEYS": "k1, k2,,"}) == (ApiKey("k1"), ApiKey("k2"))


def test_importing_the_api_does_not_import_torch():
    code = "import sys, ltxtune.api, ltxtune.cli.serve, ltxtune.jobs.worker; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
