"""Random metadata stored and listed: whatever a submission carries, the server answers 202 or a
400 naming the metadata, and listing the key's workflows always answers 200 with what was stored."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from ltxtune.api import create_app
from ltxtune.jobs.config import ApiKey, ServiceConfig
from tests.jobs.servicekit import civitai_example

KEY = ApiKey(key="meta-key:" + "s" * 16, name="meta")
API = "/v2/consumer/workflows"

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(categories=["L", "N", "P", "Zs", "Cc", "Cs"]), max_size=20)
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)
metadata = st.dictionaries(st.text(max_size=8), values, max_size=5)


def _non_finite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_non_finite(item) for item in value)
    return False


def test_random_metadata_is_stored_or_refused_and_listing_never_fails(tmp_path):
    config = ServiceConfig(data_dir=tmp_path / "data", workers=0, api_keys=(KEY,), allowed_hosts=("testserver",),
                           allow_private_urls=True)  # the example's dataset host is on loopback
    client = TestClient(create_app(config), headers={"Authorization": f"Bearer {KEY.key}"}, raise_server_exceptions=False)

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(meta=metadata)
    def submit(meta):
        body = civitai_example()
        body["metadata"] = meta
        text = json.dumps(body, allow_nan=True)  # a client that writes NaN and lone surrogates as Python does
        answer = client.post(API, content=text.encode(), headers={"Content-Type": "application/json"})
        assert answer.status_code in (202, 400), answer.text
        if answer.status_code == 400:
            assert all(path.startswith("metadata") for path in answer.json()["errors"]), answer.text
        else:
            assert not _non_finite(meta)
            assert client.get(f"{API}/{answer.json()['id']}").json()["metadata"] == meta
        listed = client.get(API, params={"take": 100})
        assert listed.status_code == 200, listed.text

    submit()
