"""Whether a dataset URL can be fetched, checked when a request is submitted (where a protocol
documents a refusal for it) rather than after the job has queued.

A URL of this server's own uploads is reachable when the upload is the caller's; `data:` URIs
need no fetch; an http(s) URL is asked for its first byte (a ranged GET: presigned object URLs
are often signed for GET only, so HEAD would be refused), following at most a few redirects.
Every hop goes through the one URL guard (`ltxtune.netguard`): http(s), a public address unless
`--allow-private-urls`, and the connection made to exactly the address checked.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import httpx

from ltxtune.jobs.storage import FileStore
from ltxtune.jobs.webhooks import check_target_url
from ltxtune.netguard import GuardedTransport, RefusedUrl

MAX_REDIRECTS = 5
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def unreachable(url: str, owner: str, files: FileStore, *, allow_private: bool) -> str | None:
    """Why `url` cannot be fetched (a short reason), or None when it can."""
    url = url.strip()
    scheme = urlsplit(url).scheme.lower()
    if scheme == "data":
        return None
    if files.upload_at(url, owner) is not None:
        return None
    if scheme not in ("http", "https"):
        return "it is not an http(s):// or data: URL"
    try:
        with httpx.Client(transport=GuardedTransport(allow_private), timeout=TIMEOUT, follow_redirects=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                check_target_url(url, allow_private)
                with client.stream("GET", url, headers={"Range": "bytes=0-0"}) as answer:
                    if answer.is_redirect and "location" in answer.headers:
                        url = urljoin(url, answer.headers["location"])
                        continue
                    if answer.status_code in (200, 206):
                        return None
                    return f"HTTP {answer.status_code}"
            return f"more than {MAX_REDIRECTS} redirects"
    except RefusedUrl as refused:
        return str(refused)
    except httpx.TimeoutException:
        return "no answer in time"
    except httpx.HTTPError as failure:
        return f"cannot connect ({type(failure).__name__})"
