"""Checks every request passes before a route sees it (`RequestGuard`, an ASGI middleware):

- `Host` must be one this server answers to (`allowed_hosts`): the configured public URL's host,
  every `--allowed-host`, and loopback names when bound to loopback. Anything else is refused (400),
  so no URL is ever built from a name a client made up.
- Without API keys, a request whose `Origin` is neither the server's own nor an allowed CORS origin
  is refused (403): a web page cannot drive a local server through its user's browser.
- A state-changing request (POST, PUT, PATCH) with a body must send one of the content types its
  route accepts (`application/json` unless the route declares others with `accepts_body`): 415.
- The body is counted while it streams in: past the route's byte limit the request is refused with
  413 before more is read (a declared `Content-Length` past it is refused before reading at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ltxtune.api.errors import ApiError
from ltxtune.jobs.config import ServiceConfig, is_loopback

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
JSON = "application/json"


@dataclass(frozen=True)
class BodyRule:
    content_types: tuple[str, ...] = (JSON,)  # media types without parameters; "*/*" accepts any
    max_bytes: int | None = None  # None: the server's `max_body_bytes`
    upload: bool = False  # a file upload: limited by the server's `max_upload_bytes` instead


DEFAULT_RULE = BodyRule()


def accepts_body(*content_types: str, max_bytes: int | None = None, upload: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare what a route's body may be (e.g. an upload route: `@accepts_body("application/octet-stream", "*/*")`).
    Put it under the route decorator or above it: it marks the endpoint function itself."""

    def mark(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        endpoint.__ltxtune_body__ = BodyRule(tuple(t.lower() for t in content_types) or (JSON,), max_bytes, upload)  # type: ignore[attr-defined]
        return endpoint

    return mark


def cors_origins(config: ServiceConfig) -> tuple[str, ...]:
    """The origins a browser page may call from (`--cors-origin`), as `scheme://host[:port]`."""
    return tuple(origin.rstrip("/").lower() for origin in getattr(config, "cors_origins", ()) or ())


def _host_name(authority: str) -> str:
    """`example.com:8000` -> `example.com`; `[::1]:8000` -> `::1`."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    if authority.count(":") == 1:
        return authority.partition(":")[0]
    return authority


def allowed_hosts(config: ServiceConfig) -> frozenset[str]:
    names = {_host_name(host) for host in config.allowed_hosts}
    if config.public_url:
        names.add((urlsplit(config.public_url).hostname or "").lower())
    if is_loopback(config.host):
        names.update(LOOPBACK_NAMES)
    elif config.host not in ("0.0.0.0", "::", ""):
        names.add(_host_name(config.host))
    names.discard("")
    return frozenset(names)


def _own_origins(config: ServiceConfig, hosts: Iterable[str]) -> frozenset[str]:
    origins = set()
    if config.public_url:
        parts = urlsplit(config.public_url)
        origins.add(f"{parts.scheme}://{parts.netloc}".lower())
    for host in hosts:
        shown = f"[{host}]" if ":" in host else host
        for scheme in ("http", "https"):
            origins.add(f"{scheme}://{shown}:{config.port}")
            origins.add(f"{scheme}://{shown}")
    return frozenset(origins)


Render = Callable[[str, ApiError], Any]  # (path, error) -> a Starlette response


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(
            413,
            f"the request body is larger than {limit} bytes, the most this route accepts",
            error_type="request_too_large",
            headers={"Connection": "close"},  # the server stops reading: the rest of the body is never received
        )


class RequestGuard:
    def __init__(self, app: ASGIApp, *, config: ServiceConfig, render: Render, routes: Callable[[], list[Any]]):
        self.app = app
        self.config = config
        self.render = render
        self.routes = routes
        self._rules: list | None = None  # built on the first request, once every route exists
        self.hosts = allowed_hosts(config)
        self.origins = _own_origins(config, self.hosts) | set(cors_origins(config))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}
        try:
            rule = self._check(scope, headers)
        except ApiError as refused:
            await self.render(scope.get("path", ""), refused)(scope, receive, send)
            return
        await self.app(scope, _counting(receive, self._limit(rule)), send)

    def _check(self, scope: Scope, headers: dict[str, str]) -> BodyRule:
        host = _host_name(headers.get("host", ""))
        if host not in self.hosts:
            raise ApiError(
                400,
                f"this server does not answer to the host {host or '(none)'!r}; an operator can add it with --allowed-host or --public-url",
                error_type="invalid_host",
            )
        origin = headers.get("origin")
        if origin is not None and not self.config.api_keys and origin.rstrip("/").lower() not in self.origins:
            raise ApiError(
                403,
                f"requests from the web origin {origin!r} are refused: without API keys only this server's own pages "
                "and allowed CORS origins may call it",
                error_type="forbidden_origin",
            )
        rule = self._rule(scope)
        method = scope.get("method", "GET")
        has_body = headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers
        if method in STATE_CHANGING and (has_body or "content-type" in headers):
            media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if "*/*" not in rule.content_types and media_type not in rule.content_types:
                raise ApiError(
                    415,
                    f"Content-Type must be {' or '.join(rule.content_types)}; got {media_type or 'none'!r}",
                    error_type="unsupported_media_type",
                )
        limit = self._limit(rule)
        declared = headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(limit)
        return rule

    def _limit(self, rule: BodyRule) -> int:
        if rule.upload:  # a margin over the upload limit: the route refuses with the upload's own message
            return getattr(self.config, "max_upload_bytes", self.config.max_body_bytes) + 2**20
        return rule.max_bytes or self.config.max_body_bytes

    def _rule(self, scope: Scope) -> BodyRule:
        if self._rules is None:
            self._rules = list(_body_rules(self.routes()))
        path, method = scope.get("path", ""), scope.get("method", "GET")
        for pattern, methods, rule in self._rules:
            if (methods is None or method in methods) and pattern.match(path):
                return rule
        return DEFAULT_RULE


def _body_rules(routes, prefix: str = ""):
    """(path regex, methods, body rule) of every endpoint in routing order, nested routers included
    (FastAPI keeps an included router as one entry, so matching the top level alone finds no endpoint)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _body_rules(inner.routes, prefix + (getattr(context, "prefix", "") or ""))
        elif hasattr(route, "endpoint") and isinstance(getattr(route, "path", None), str):
            pattern, _, _ = compile_path(prefix + route.path)
            yield pattern, getattr(route, "methods", None), getattr(route.endpoint, "__ltxtune_body__", DEFAULT_RULE)


def _counting(receive: Receive, limit: int) -> Receive:
    """`receive` that refuses (BodyTooLarge) once more than `limit` body bytes came in."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return counted

