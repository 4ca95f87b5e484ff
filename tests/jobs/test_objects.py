"""The object storage contract, on a directory and on a real S3 API server on loopback (moto):
streamed puts and gets, ranges, listing and deleting by prefix, missing keys, presigned URLs."""

from __future__ import annotations

import io
import os
import time

import httpx
import pytest

from ltxtune.jobs.objects import CHUNK, DirectoryObjects, ObjectMissing, open_objects
from tests.jobs.objectstores import new_bucket, s3_endpoint  # noqa: F401 (fixture)


@pytest.fixture(params=["directory", "s3"])
def objects(request, tmp_path):
    if request.param == "directory":
        return DirectoryObjects(tmp_path / "objects")
    endpoint = request.getfixturevalue("s3_endpoint")
    return open_objects(f"s3://{new_bucket(endpoint)}/some/prefix", tmp_path)


def test_files_round_trip_in_chunks(objects, tmp_path):
    big = tmp_path / "big.bin"
    data = os.urandom(CHUNK + 12345)  # more than one chunk: a multipart upload on S3
    big.write_bytes(data)
    assert objects.put_file("files/job-1/lora_file/lora.safetensors", big) == len(data)
    info = objects.info("files/job-1/lora_file/lora.safetensors")
    assert info.size == len(data) and info.key == "files/job-1/lora_file/lora.safetensors"
    chunks = list(objects.read_chunks("files/job-1/lora_file/lora.safetensors"))
    assert len(chunks) >= 2 and max(len(c) for c in chunks) <= CHUNK and b"".join(chunks) == data
    assert b"".join(objects.read_chunks("files/job-1/lora_file/lora.safetensors", 10, 20)) == data[10:20]
    back = tmp_path / "back" / "lora.safetensors"
    objects.get_file("files/job-1/lora_file/lora.safetensors", back)
    assert back.read_bytes() == data


def test_streams_listing_and_deleting_by_prefix(objects, tmp_path):
    assert objects.put_stream("work/j/state/training_state.pt", io.BytesIO(b"state")) == 5
    objects.put_stream("work/j/prepared/manifest.json", io.BytesIO(b"{}"))
    objects.put_stream("work/other/x", io.BytesIO(b"x"))
    assert [(i.key, i.size) for i in objects.list("work/j")] == [
        ("work/j/prepared/manifest.json", 2),
        ("work/j/state/training_state.pt", 5),
    ]
    objects.put_stream("work/j/state/training_state.pt", io.BytesIO(b"newer"))  # replaced whole
    assert b"".join(objects.read_chunks("work/j/state/training_state.pt")) == b"newer"
    objects.delete("work/j/prepared/manifest.json")
    objects.delete("work/j/prepared/never-there")
    assert [i.key for i in objects.list("work/j")] == ["work/j/state/training_state.pt"]
    objects.delete_prefix("work/j")
    assert objects.list("work/j") == [] and objects.info("work/j/state/training_state.pt") is None
    assert [i.key for i in objects.list("work")] == ["work/other/x"]
    with pytest.raises(ObjectMissing):
        objects.get_file("work/j/state/training_state.pt", tmp_path / "gone")
    with pytest.raises(ObjectMissing):
        list(objects.read_chunks("nothing/here"))
    with pytest.raises(ValueError, match="invalid object key"):
        objects.put_stream("work/../escape", io.BytesIO(b""))


def test_presigned_urls_on_s3_and_api_urls_on_a_directory(objects):
    objects.put_stream("files/j/video/reel.mp4", io.BytesIO(b"movie"))
    url = objects.presigned_url("files/j/video/reel.mp4", 60, "reel.mp4", "video/mp4")
    if isinstance(objects, DirectoryObjects):
        assert url is None and objects.local_path("files/j/video/reel.mp4").read_bytes() == b"movie"
        return
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == b"movie"
    assert answer.headers["content-disposition"] == 'attachment; filename="reel.mp4"'
    expires = int(httpx.URL(url).params["Expires"])  # moto does not check signatures; S3 does
    assert abs(expires - (time.time() + 60)) < 5


def test_storage_option_is_checked():
    with pytest.raises(ValueError, match="name a bucket"):
        open_objects("s3:///prefix", None)
    with pytest.raises(ValueError, match="give a directory or s3://bucket/prefix"):
        open_objects("gs://bucket", None)
