"""Uploads with the unmodified fal-client (sync and async, both of its upload paths), then trains
on an uploaded archive. Run in a subprocess (see fal_client_script.py); argv: the archive path.
Prints one JSON document of what the client saw."""

from __future__ import annotations

import asyncio
import json
import os
import sys


def main(path: str) -> None:
    import fal_client
    import fal_client.client

    # fal-client has no setting for its storage hosts: these two lines point them at ltxtune.
    fal_client.client.REST_URL = os.environ["LTXTUNE_URL"]
    fal_client.client.CDN_URL = os.environ["LTXTUNE_URL"]

    report: dict = {}
    report["upload_file"] = fal_client.upload_file(path)  # token + CDN upload, the default path
    client = fal_client.SyncClient()
    report["storage_upload"] = client.upload_file(path, repository="fal", fallback_repository=[])  # initiate + PUT
    report["upload_bytes"] = client.upload(b"caption text", "text/plain", file_name="notes.txt")

    async def upload_and_train_async() -> tuple[str, dict]:
        client = fal_client.AsyncClient()
        url = await client.upload_file(path)
        result = await client.subscribe("fal-ai/ltx23-trainer-v2/t2v", {"training_data_url": url, "number_of_steps": 100})
        return url, result

    report["async_upload_file"], report["async_result"] = asyncio.run(upload_and_train_async())

    handle = fal_client.submit(
        "fal-ai/ltx23-trainer-v2/t2v", {"training_data_url": report["upload_file"], "number_of_steps": 100}
    )
    for _ in handle.iter_events(interval=0.1):
        pass
    report["request_id"] = handle.request_id
    report["result"] = handle.get()
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
