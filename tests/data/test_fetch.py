import base64
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from ltxtune.errors import ErrorKind
from ltxtune.data.errors import DatasetError
from ltxtune.data.fetch import FetchLimits, fetch_source, is_public_address
from tests.data.media import make_zip


@pytest.fixture
def small_zip(tmp_path: Path) -> Path:
    return make_zip(tmp_path / "src" / "data.zip", {"a.txt": "hello"})


def fetch(url, tmp_path, field="training_data_url", **kwargs):
    return fetch_source(url, tmp_path / "work" / "download", field=field, **kwargs)


def test_http_download_with_private_urls_allowed(http_root, small_zip, tmp_path):
    folder, base = http_root
    (folder / "data.zip").write_bytes(small_zip.read_bytes())
    path = fetch(f"{base}/data.zip", tmp_path, allow_private_urls=True)
    assert path == tmp_path / "work" / "download" / "source.zip"
    assert path.read_bytes() == small_zip.read_bytes()


def test_redirects_are_followed(http_root, small_zip, tmp_path):
    folder, base = http_root
    (folder / "data.zip").write_bytes(small_zip.read_bytes())
    path = fetch(f"{base}/redirect/data.zip", tmp_path, allow_private_urls=True)
    assert zipfile.is_zipfile(path)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "0x7f000001", "2130706433", "0.0.0.0"])
def test_loopback_is_refused_without_permission(http_root, small_zip, tmp_path, host):
    folder, base = http_root
    (folder / "data.zip").write_bytes(small_zip.read_bytes())
    port = base.rsplit(":", 1)[1]
    with pytest.raises(DatasetError) as caught:
        fetch(f"http://{host}:{port}/data.zip", tmp_path)
    assert caught.value.kind is ErrorKind.SOURCE
    assert caught.value.message.startswith("training_data_url not reachable: ")
    assert "only public addresses are fetched" in caught.value.message
    assert not (tmp_path / "work" / "download" / "source.zip").exists()


def test_civitai_wording(tmp_path):
    with pytest.raises(DatasetError) as caught:
        fetch("http://127.0.0.1:9/x.zip", tmp_path, field="trainingData.sourceUrl")
    assert caught.value.message.startswith("trainingData.sourceUrl not reachable: 127.0.0.1 resolves to 127.0.0.1")
    assert caught.value.kind is ErrorKind.SOURCE


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
    ],
)
def test_public_address_rule(address, public):
    assert is_public_address(address) is public


def test_http_error_is_not_reachable(http_root, tmp_path):
    _, base = http_root
    with pytest.raises(DatasetError) as caught:
        fetch(f"{base}/missing.zip", tmp_path, allow_private_urls=True, field="trainingData.sourceUrl")
    assert caught.value.message == "trainingData.sourceUrl not reachable: HTTP 404 File not found"
    assert caught.value.kind is ErrorKind.SOURCE


def test_connection_refused_is_not_reachable(tmp_path):
    with pytest.raises(DatasetError) as caught:
        fetch("http://127.0.0.1:9/data.zip", tmp_path, allow_private_urls=True)
    assert caught.value.message.startswith("training_data_url not reachable: ")
    assert caught.value.kind is ErrorKind.SOURCE


def test_html_page_is_not_a_zip(http_root, tmp_path):
    folder, base = http_root
    (folder / "page.html").write_text("<html>Access denied</html>")
    with pytest.raises(DatasetError) as caught:
        fetch(f"{base}/page.html", tmp_path, allow_private_urls=True)
    assert caught.value.message == (
        "training_data_url is not a zip archive (26 bytes starting with b'<html>Access den'); upload a .zip of your clips"
    )
    assert caught.value.kind is ErrorKind.SOURCE


def test_size_cap_from_content_length(http_root, tmp_path):
    folder, base = http_root
    (folder / "big.zip").write_bytes(b"PK" + bytes(5000))
    with pytest.raises(DatasetError) as caught:
        fetch(f"{base}/big.zip", tmp_path, allow_private_urls=True, limits=FetchLimits(max_bytes=1000))
    assert "more than the 1000 bytes limit" in caught.value.message
    assert not (tmp_path / "work" / "download" / "source.zip").exists()


def test_size_cap_while_streaming(http_root, tmp_path):
    folder, base = http_root
    (folder / "big.zip").write_bytes(b"PK" + bytes(5000))
    with pytest.raises(DatasetError) as caught:
        fetch(f"{base}/liar/big.zip", tmp_path, allow_private_urls=True, limits=FetchLimits(max_bytes=1000))
    assert caught.value.message == "training_data_url not reachable: the archive is larger than the 1000 bytes limit"
    assert not (tmp_path / "work" / "download" / "source.zip").exists()


def test_data_uri_like_fal_client(small_zip, tmp_path):
    url = "data:application/zip;base64," + base64.b64encode(small_zip.read_bytes()).decode()
    path = fetch(url, tmp_path)
    assert path.read_bytes() == small_zip.read_bytes()


def test_data_uri_size_cap_and_bad_base64(small_zip, tmp_path):
    url = "data:application/zip;base64," + base64.b64encode(small_zip.read_bytes()).decode()
    with pytest.raises(DatasetError, match="more than the 10 bytes limit"):
        fetch(url, tmp_path, limits=FetchLimits(max_bytes=10))
    with pytest.raises(DatasetError, match="malformed base64"):
        fetch("data:application/zip;base64,@@@", tmp_path)


def test_local_files_only_when_allowed(small_zip, tmp_path):
    for url in (str(small_zip), small_zip.as_uri()):
        with pytest.raises(DatasetError) as caught:
            fetch(url, tmp_path)
        assert caught.value.message == (
            "training_data_url must be an http(s):// or data: URL; local files are accepted only from the command line"
        )
        assert caught.value.kind is ErrorKind.SOURCE
        assert fetch(url, tmp_path, allow_local_files=True) == small_zip


def test_local_file_missing_or_folder(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        fetch(str(tmp_path / "nope.zip"), tmp_path, allow_local_files=True)
    with pytest.raises(DatasetError, match="is not a file"):
        fetch(str(tmp_path), tmp_path, allow_local_files=True)


def test_empty_file_and_unknown_scheme(tmp_path):
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    with pytest.raises(DatasetError) as caught:
        fetch(str(empty), tmp_path, allow_local_files=True)
    assert caught.value.message == "training_data_url is not a zip archive: the file is empty (0 bytes)"
    with pytest.raises(DatasetError, match="unsupported URL scheme 'ftp'"):
        fetch("ftp://example.com/a.zip", tmp_path)


def test_redirect_to_a_private_address_is_refused(http_root, small_zip, tmp_path, monkeypatch):
    """Every connection is checked, so a public URL cannot redirect into the private network.
    Here the first address checked counts as public; the redirect's new host does not."""
    import ltxtune.netguard as fetch_module

    folder, base = http_root
    (folder / "data.zip").write_bytes(small_zip.read_bytes())
    port = base.rsplit(":", 1)[1]
    checked = []

    def first_is_public(address):
        checked.append(address)
        return len(checked) == 1

    monkeypatch.setattr(fetch_module, "is_public_address", first_is_public)
    elsewhere = urllib.parse.quote(f"http://localhost:{port}/data.zip", safe="")
    with pytest.raises(DatasetError) as caught:
        fetch(f"{base}/redirect/{elsewhere}", tmp_path)
    assert caught.value.message.startswith("training_data_url not reachable: localhost resolves to ")
    assert len(checked) >= 2
