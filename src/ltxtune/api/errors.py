"""Errors a route raises; the protocol whose route it is renders them (`ApiProtocol.error_response`)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered in the route's protocol. `body` replaces the protocol's default shape when
    given; `error_type` is a machine-readable code for protocols that send one."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        error_type: str | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.error_type = error_type
        self.body = body
        self.headers = headers or {}


class InvalidJson(Exception):
    """A request body that is not JSON; each protocol words this its own way."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
