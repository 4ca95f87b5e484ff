"""The fast part of the adversarial suite (scripts/attack.py runs the long one): schemathesis over
every route, valid and invalid inputs and linked chains; no 5xx, no answer outside its schema."""

from __future__ import annotations

from tests.adversarial.suite import report, run


def test_generated_requests_get_no_server_errors_and_keep_their_schema(tmp_path):
    counts = run(16, stateful_steps=10, data_dir=tmp_path)
    text = report(counts)
    assert sum(counts.requests.values()) >= 250, text
    assert {"civitai submit", "civitai list", "civitai workflow", "fal submit", "fal run", "fal request", "files and keys"} <= set(counts.requests), text
    assert any(where.startswith("stateful") for where in counts.requests), text
    assert sum(counts.server_errors.values()) == 0, text
    assert sum(counts.schema_breaks.values()) == 0, text
    assert sum(counts.hangs.values()) == 0, text
    assert counts.statuses[404] < sum(counts.requests.values()), text  # not everything bounced off unknown ids
