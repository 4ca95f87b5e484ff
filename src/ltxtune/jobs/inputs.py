"""Input URLs that name this server's own uploads, resolved to the stored files before a run.

A caller uploads a file (fal's storage API) and passes its signed URL back as an input
(`training_data_url`, an image or reference video). Fetching it over HTTP would loop back into
this server, which the URL guard refuses (it is a private address) and which costs a copy, so
the worker hands the run the stored file instead, as a `file://` URL.

Local files are otherwise for the command line only; a run gets them only when every other
input URL of its plan is remote (http(s) or data:), so a request can never name a server path.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from ltxtune.jobs.storage import FileStore

REMOTE_SCHEMES = ("http", "https", "data")


def resolve_uploads(plan_json: str, owner: str, files: FileStore) -> tuple[str, bool]:
    """(the plan with upload URLs of `owner` replaced by their files, whether the run may read local files)."""
    plan = json.loads(plan_json)
    resolved = 0
    local_elsewhere = False

    def visit(value: Any) -> Any:
        nonlocal resolved, local_elsewhere
        if isinstance(value, dict):
            return {key: _url(key, item) if key.endswith("url") and isinstance(item, str) else visit(item) for key, item in value.items()}
        if isinstance(value, list):
            return [visit(item) for item in value]
        return value

    def _url(key: str, url: str) -> str:
        nonlocal resolved, local_elsewhere
        record = files.upload_at(url, owner)
        if record is not None:
            resolved += 1
            return record.path.resolve().as_uri()
        if urlsplit(url.strip()).scheme.lower() not in REMOTE_SCHEMES:
            local_elsewhere = True
        return url

    plan = visit(plan)
    if not resolved:
        return plan_json, False
    return json.dumps(plan), not local_elsewhere
