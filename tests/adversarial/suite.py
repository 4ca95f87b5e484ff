"""The adversarial suite: schemathesis over the app's OpenAPI schema, every route, valid and invalid
inputs (bodies, query parameters, headers, path parameters), one operation after another and in
chains (a submitted job's id fed to its status, result, update and cancel routes).

The app's routes read their bodies themselves, so its own schema names only paths; `openapi_schema`
completes it with the request models of both protocols, the query parameters and headers each
route reads, and the error shapes each protocol promises. A response breaks the schema when its
status is 5xx, it is not JSON where JSON is due, or an error lacks its protocol's fields.

`run(examples_per_operation)` answers the counts per route class; `scripts/attack.py` prints them
and `tests/adversarial/test_schemathesis.py` runs a small number in the default suite.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance
from starlette.testclient import TestClient

from ltxtune.api import create_app
from ltxtune.jobs.config import ApiKey, ServiceConfig
from ltxtune.protocols.civitai.request import WorkflowRequest
from ltxtune.protocols.fal.request import FAL_ENDPOINTS

KEY = ApiKey(key="attack-key:" + "s" * 16, name="attacker")
HOST = "testserver"
FAL_ERROR = {"type": "object", "required": ["detail"]}
PROBLEM = {"type": "object", "required": ["type", "title", "status"], "properties": {"status": {"type": "integer"}}}
ANY_JSON: dict[str, Any] = {}

QUERY = {  # what each route reads from its query string
    # valid waits kept short (nothing runs here: a valid wait lasts its whole length)
    ("post", "/v2/consumer/workflows"): [("wait", {"type": "number", "minimum": 0, "maximum": 0.3}), ("whatif", {"type": "boolean"})],
    ("get", "/v2/consumer/workflows"): [("cursor", {"type": "string"}), ("take", {"type": "integer"}), ("tags", {"type": "array", "items": {"type": "string"}})],
    ("get", "/files/{file_id}/{name}"): [("expires", {"type": "string"}), ("sig", {"type": "string"})],
    ("get", "/{owner}/{app}/requests/{request_id}/status"): [("logs", {"type": "string", "enum": ["0", "1"]})],
}
FAL_SUBMIT_QUERY = [("fal_webhook", {"type": "string"})]
FAL_SUBMIT_HEADERS = [
    ("X-Fal-Request-Timeout", {"type": "string"}),
    ("X-Fal-Queue-Priority", {"type": "string", "enum": ["normal", "low"]}),
]
PATH_VALUES = {"owner": ["fal-ai"], "app": ["ltx23-trainer-v2", "ltx23-video-trainer", "ltx23-v2v-trainer"], "subpath": ["t2v", "i2v"]}
SKIPPED = {("get", "/{owner}/{app}/requests/{request_id}/status/stream")}  # an open stream; covered by its own tests


def route_class(method: str, path: str) -> str:
    if path.startswith("/v2/consumer"):
        return "civitai " + ("submit" if method == "post" and path.endswith("/workflows") else "list" if method == "get" and path.endswith("/workflows") else "workflow")
    if path.startswith("/files") or path.startswith("/.well-known") or path in ("/healthz", "/readyz", "/metrics"):
        return "files and keys"
    if path.startswith("/run"):
        return "fal run"
    if "/requests/" in path:
        return "fal request"
    return "fal submit"


def _body_schemas(components: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fal submit body, Civitai submit body) as schemas whose `$defs` live in `components`."""

    def add(model: Any) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    fal = {"anyOf": [add(model) for model in dict.fromkeys(FAL_ENDPOINTS.values())]}
    return fal, add(WorkflowRequest)


def _responses(path: str) -> dict[str, Any]:
    error = PROBLEM if path.startswith("/v2/consumer") else FAL_ERROR
    if path.endswith("/cancel"):  # fal's cancel answers {"status": "NOT_FOUND" | "ALREADY_COMPLETED"}
        error = {"anyOf": [FAL_ERROR, {"type": "object", "required": ["status"]}]}
    media = "application/problem+json" if path.startswith("/v2/consumer") else "application/json"
    if path == "/metrics":  # Prometheus' text format
        return {"2XX": {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}
    return {
        "2XX": {"description": "an answer", "content": {"application/json": {"schema": ANY_JSON}}},
        "4XX": {"description": "a refusal in the protocol's shape", "content": {media: {"schema": error}, "application/json": {"schema": error}}},
    }


def openapi_schema(app: Any) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GET and HEAD of one download function share an operation id
        raw = copy.deepcopy(app.openapi())
    raw.pop("components", None)
    components: dict[str, Any] = {}
    fal_body, civitai_body = _body_schemas(components)
    paths: dict[str, Any] = {}
    for path, operations in raw["paths"].items():
        kept = {}
        for method, operation in operations.items():
            if (method, path) in SKIPPED or method == "head":
                continue
            parameters = [p for p in operation.get("parameters", []) if p["in"] == "path"]
            for parameter in parameters:
                parameter["schema"] = {"type": "string", "minLength": 1}
                if parameter["name"] in PATH_VALUES:
                    parameter["schema"]["enum"] = PATH_VALUES[parameter["name"]]
            query = list(QUERY.get((method, path), []))
            headers: list[tuple[str, dict[str, Any]]] = []
            if route_class(method, path) in ("fal submit", "fal run"):
                query += FAL_SUBMIT_QUERY
                headers += FAL_SUBMIT_HEADERS
            parameters += [{"name": name, "in": "query", "required": False, "schema": schema} for name, schema in query]
            parameters += [{"name": name, "in": "header", "required": False, "schema": schema} for name, schema in headers]
            operation = {"operationId": f"{method}_{path}", "parameters": parameters, "responses": _responses(path)}
            if route_class(method, path) == "fal run":  # documented: the run did not end within the server's wait
                operation["responses"]["504"] = {"description": "not finished in time", "content": {"application/json": {"schema": FAL_ERROR}}}
            body = None
            if method in ("post", "put", "patch") and path.startswith("/v2/consumer"):
                if path == "/v2/consumer/workflows":
                    body = civitai_body
                elif path.endswith("/tags"):
                    body = {"type": "string"}
                elif method == "patch":
                    body = {"type": "array", "items": {"type": "object", "properties": {"op": {"enum": ["add", "remove", "replace", "test"]}, "path": {"type": "string"}, "value": {}}, "required": ["op", "path"]}}
                else:
                    body = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}, "metadata": {"type": "object"}}}
            elif method == "post":
                body = fal_body
            if body is not None:
                operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
            kept[method] = operation
        if kept:
            paths[path] = kept
    _link_submissions(paths)
    return {"openapi": "3.1.0", "info": {"title": "ltxtune", "version": "1"}, "paths": paths, "components": {"schemas": components}}


def _link_submissions(paths: dict[str, Any]) -> None:
    """OpenAPI links from each submit route to the routes that take the id it answers (stateful runs)."""
    civitai_targets = [("get", "/v2/consumer/workflows/{workflow_id}"), ("patch", "/v2/consumer/workflows/{workflow_id}"),
                       ("put", "/v2/consumer/workflows/{workflow_id}"), ("post", "/v2/consumer/workflows/{workflow_id}/tags"),
                       ("delete", "/v2/consumer/workflows/{workflow_id}")]
    fal_targets = [("get", "/{owner}/{app}/requests/{request_id}/status"), ("get", "/{owner}/{app}/requests/{request_id}"),
                   ("put", "/{owner}/{app}/requests/{request_id}/cancel")]
    for source, targets, name, pointer in (
        (paths["/v2/consumer/workflows"]["post"], civitai_targets, "workflow_id", "$response.body#/id"),
        (paths["/{owner}/{app}/{subpath}"]["post"], fal_targets, "request_id", "$response.body#/request_id"),
    ):
        links = {}
        for method, path in targets:
            if path in paths and method in paths[path]:
                parameters = {name: pointer}
                if "{owner}" in path:
                    parameters |= {"owner": "$request.path.owner", "app": "$request.path.app"}
                links[f"{method}_{path}"] = {"operationId": f"{method}_{path}", "parameters": parameters}
        source["responses"]["2XX"]["links"] = links


@dataclass
class Counts:
    requests: Counter = field(default_factory=Counter)  # route class -> requests sent
    server_errors: Counter = field(default_factory=Counter)
    hangs: Counter = field(default_factory=Counter)  # no answer within the client's timeout
    schema_breaks: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # the first few, to read


def _config(data_dir: Path) -> ServiceConfig:
    return ServiceConfig(
        data_dir=data_dir, workers=0, api_keys=(KEY,), allowed_hosts=(HOST,), sync_wait_s=0.2, max_body_bytes=1024 * 1024,
        runner="tests.jobs.fake_runner:run_job",
        allow_private_urls=True,  # the examples' dataset host is on loopback (tests.jobs.servicekit.DatasetHost)
    )


def run(
    examples_per_operation: int,
    *,
    per_class: int | None = None,
    stateful_steps: int = 0,
    data_dir: Path | None = None,
    seed: int | None = 0,
) -> Counts:
    """Send `examples_per_operation` generated requests (valid and invalid) to every operation (or,
    with `per_class`, that many to each route class, shared by its operations), then
    `stateful_steps` chains of linked calls; count what came back."""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="ltxtune-attack-"))
    app = create_app(_config(data_dir / "data"))
    schema = schemathesis.openapi.from_dict(openapi_schema(app))
    schema.app = app
    counts = Counts()
    client = TestClient(app, base_url=f"http://{HOST}", raise_server_exceptions=False)
    auth = {"Authorization": f"Key {KEY.key}"}

    def check(case: Any, response: Any, where: str) -> None:
        counts.requests[where] += 1
        counts.statuses[response.status_code] += 1
        documented_timeout = response.status_code == 504 and where.endswith("fal run") and "request_timeout" in response.text
        if response.status_code >= 500 and not documented_timeout:
            counts.server_errors[where] += 1
            if len(counts.failures) < 20:
                counts.failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")
            return
        try:
            checks = [content_type_conformance, response_schema_conformance] + ([] if documented_timeout else [not_a_server_error])
            case.validate_response(response, checks=checks)
        except Exception as broken:  # noqa: BLE001 - counted, the first ones kept to read
            counts.schema_breaks[where] += 1
            if len(counts.failures) < 20:
                counts.failures.append(f"{case.method} {case.formatted_path}: {response.status_code}: {str(broken)[:300]}")

    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    operations = [result.ok() for result in schema.get_all_operations()]
    in_class = Counter(route_class(op.method.lower(), op.path) for op in operations)
    rounds = 6 if per_class else 1  # hypothesis stops early on small input spaces: top a class up with fresh draws
    for round_ in range(rounds):
        for operation in operations:
            where = route_class(operation.method.lower(), operation.path)
            if per_class:
                missing = per_class - counts.requests[where]
                if missing <= 0:
                    continue
                examples = -(-per_class // in_class[where]) if round_ == 0 else missing  # later rounds: any op may fill it
            else:
                examples = examples_per_operation
            _generate(operation, examples, where, modes, client, auth, counts, check, seed)
    if stateful_steps:
        _stateful(schema, client, auth, stateful_steps, check)
    return counts


def _generate(operation: Any, examples: int, where: str, modes: list[Any], client: TestClient, auth: dict[str, str], counts: Counts, check: Any, seed: int | None) -> None:
    for mode in modes:
        strategy = operation.as_strategy(generation_mode=mode)

        @settings(
            max_examples=max(1, examples // len(modes)), deadline=None, database=None, derandomize=seed is not None,
            suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
        )
        @given(case=strategy)
        def send(case: Any) -> None:
            try:
                response = case.call(session=client, headers=auth, timeout=30)
            except Exception as failure:  # noqa: BLE001 - a request that got no answer is counted
                counts.requests[where] += 1
                counts.hangs[where] += 1
                if len(counts.failures) < 20:
                    counts.failures.append(f"{case.method} {case.formatted_path}: no answer ({type(failure).__name__})")
                return
            check(case, response, where)

        try:
            send()
        except Unsatisfiable:  # nothing to make invalid (a route without parameters or body)
            pass


def _stateful(schema: Any, client: TestClient, auth: dict[str, str], steps: int, check: Any) -> None:
    machine = schema.as_state_machine()

    class Attack(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"session": client, "headers": auth}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            check(case, response, "stateful " + route_class(case.method.lower(), case.path))

    settings_ = settings(max_examples=steps, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck), stateful_step_count=6)
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(Attack, settings=settings_)


def report(counts: Counts) -> str:
    lines = [f"{'route class':28} {'requests':>9} {'5xx':>5} {'schema breaks':>14} {'no answer':>10}"]
    for where in sorted(counts.requests):
        lines.append(
            f"{where:28} {counts.requests[where]:9d} {counts.server_errors[where]:5d} {counts.schema_breaks[where]:14d} {counts.hangs[where]:10d}"
        )
    total = sum(counts.requests.values())
    lines.append(
        f"{'all':28} {total:9d} {sum(counts.server_errors.values()):5d} {sum(counts.schema_breaks.values()):14d} {sum(counts.hangs.values()):10d}"
    )
    lines.append("statuses: " + ", ".join(f"{status}: {n}" for status, n in sorted(counts.statuses.items())))
    lines += [f"  {failure}" for failure in counts.failures]
    return "\n".join(lines)
