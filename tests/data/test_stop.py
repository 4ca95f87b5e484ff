"""Preparation stops promptly when asked (a cancel during fetching or fitting): `should_stop`
is checked between downloaded chunks and between files, and raises Stopped."""

from __future__ import annotations

import pytest

from ltxtune.data import prepare_dataset
from ltxtune.data.fetch import fetch_source
from ltxtune.events import Progress, Stopped
from tests.data.conftest import tiny_plan
from tests.data.media import make_image, make_zip


class StopAfter:
    """should_stop that turns true on its `calls`-th question."""

    def __init__(self, calls: int):
        self.calls, self.asked = calls, 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.asked >= self.calls


def test_a_download_stops_between_chunks(http_root, tmp_path):
    folder, base = http_root
    (folder / "big.zip").write_bytes(b"\0" * (4 << 20))  # many chunks
    stop = StopAfter(2)
    with pytest.raises(Stopped):
        fetch_source(f"{base}/big.zip", tmp_path / "download", allow_private_urls=True, should_stop=stop)
    assert stop.asked == 2  # at the second chunk: the rest was never written
    assert not (tmp_path / "download" / "source.zip").exists()  # no partial archive left


def test_preparation_stops_between_files(tmp_path):
    files = {f"img{i}.png": make_image(tmp_path / f"img{i}.png", index=i) for i in range(6)}
    archive = make_zip(tmp_path / "upload" / "dataset.zip", files)
    seen: list = []
    stop = StopAfter(3)
    with pytest.raises(Stopped):
        prepare_dataset(tiny_plan(archive), tmp_path / "job", allow_local_files=True, on_event=seen.append, should_stop=stop, workers=1)
    assert stop.asked == 3  # asked before each file was probed: the third one never was
    assert not any(isinstance(event, Progress) and event.phase == "prepare" and event.done > 0 for event in seen)
    assert not (tmp_path / "job" / "prepared" / "manifest.json").exists()
