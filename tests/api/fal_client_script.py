"""Drives the unmodified fal-client against a test server; run in a subprocess so the client's
hosts (read from FAL_QUEUE_RUN_HOST / FAL_RUN_HOST at import) and SSL_CERT_FILE are this
server's. Prints one JSON document describing what the client saw."""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    import fal_client

    slow = "http://data.invalid/clips.zip?run_s=30"
    fast = "http://data.invalid/clips.zip?run_s=0.5"
    endpoint = "fal-ai/ltx23-trainer-v2/t2v"
    report: dict = {}

    # submit, poll status with logs until completed, fetch the result
    handle = fal_client.submit(endpoint, {"training_data_url": fast, "number_of_steps": 100, "trigger_phrase": "tok"})
    seen, logs = [], []
    for status in handle.iter_events(with_logs=True, interval=0.1):
        seen.append(type(status).__name__)
        if isinstance(status, (fal_client.InProgress, fal_client.Completed)) and status.logs:
            logs = status.logs
    report["submit"] = {
        "request_id": handle.request_id,
        "statuses": seen,
        "logs": [entry["message"] for entry in logs],
        "log_keys": sorted(logs[0]) if logs else [],
        "final": {"error": status.error, "metrics": status.metrics},
        "result": handle.get(),
        "status_again": type(fal_client.status(endpoint, handle.request_id, with_logs=False)).__name__,
        "result_by_id": fal_client.result(endpoint, handle.request_id),
    }

    # subscribe with logs and queue updates (the usage example of the spec pages)
    updates: list[str] = []
    result = fal_client.subscribe(
        "fal-ai/ltx23-video-trainer",
        arguments={"training_data_url": fast, "number_of_steps": 100, "validation": [{"prompt": "a cat"}]},
        with_logs=True,
        on_queue_update=lambda update: updates.append(type(update).__name__),
        on_enqueue=lambda request_id: updates.append("enqueued"),
    )
    report["subscribe"] = {"updates": updates, "result": result}

    # a running request is canceled: it stops and its result is an error
    running = fal_client.submit(endpoint, {"training_data_url": slow, "number_of_steps": 100})
    while not isinstance(running.status(), fal_client.InProgress):
        time.sleep(0.1)
    queued = fal_client.submit(endpoint, {"training_data_url": slow, "number_of_steps": 100})
    queued_status = queued.status()
    queued.cancel()
    running.cancel()
    finals = {}
    for name, h in (("running", running), ("queued", queued)):
        for status in h.iter_events(with_logs=False, interval=0.1):
            pass
        try:
            h.get()
            finals[name] = {"error": status.error, "result": "unexpected success"}
        except fal_client.FalClientHTTPError as error:
            finals[name] = {"error": status.error, "error_type": status.error_type, "http": error.status_code, "detail": error.message}
    report["cancel"] = {"queued_position": getattr(queued_status, "position", None), **finals}

    # a bad request is a 422 in fal's `detail` shape
    try:
        fal_client.submit(endpoint, {"rank": 7, "number_of_steps": 150})
        report["invalid"] = "accepted"
    except fal_client.FalClientHTTPError as error:
        report["invalid"] = {"status": error.status_code, "detail": error.message}

    # the synchronous run route
    report["run"] = fal_client.run(endpoint, {"training_data_url": fast, "number_of_steps": 100})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
