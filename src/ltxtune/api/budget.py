"""Decoding a request body within a budget: nesting depth, string, key and number lengths, only
finite numbers, no lone surrogates. Whatever passes can be stored and written back as JSON.

`decode_json(raw, limits)` answers the value or raises `BodyRefused` naming the field (a path into
the body) and what is wrong; each protocol renders it in its own error shape.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ltxtune.specs.errors import Issue

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int = 256 * 1024 * 1024  # inline `data:` datasets make bodies large
    max_depth: int = 32
    max_string: int = 1024 * 1024  # longer strings only as `data:` URIs
    max_key: int = 256
    max_number: int = 40  # characters of one number literal


class BodyRefused(Exception):
    """A body outside the budget: `status` 413 (too large) or 422 (its shape), with the issue."""

    def __init__(self, status: int, issue: Issue):
        super().__init__(issue.msg)
        self.status = status
        self.issue = issue


@dataclass(frozen=True)
class _Bad:
    """A number literal the decoder would not keep (kept as a marker so its field can be named)."""

    text: str
    why: str


def _number_parser(limits: BodyLimits):
    def parse_int(text: str) -> Any:
        if len(text.lstrip("-")) > limits.max_number:
            return _Bad(text, f"a number of {len(text)} digits; at most {limits.max_number} are accepted")
        return int(text)

    def parse_float(text: str) -> Any:
        if len(text) > limits.max_number:
            return _Bad(text, f"a number of {len(text)} characters; at most {limits.max_number} are accepted")
        value = float(text)
        if not math.isfinite(value):
            return _Bad(text, f"{text} is out of range (numbers must be finite)")
        return value

    def parse_constant(text: str) -> Any:
        return _Bad(text, f"{text} is not a number JSON allows (numbers must be finite)")

    return parse_int, parse_float, parse_constant


def _refuse(loc: tuple[str | int, ...], msg: str, kind: str) -> BodyRefused:
    return BodyRefused(422, Issue(loc=loc, msg=msg, type=kind))


def _check(value: Any, limits: BodyLimits) -> None:
    """Walk the decoded value (without recursion) and refuse the first thing outside the budget."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, _Bad):
            raise _refuse(loc, item.why, "number_invalid")
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise _refuse(loc, "the text holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not a character", "string_unicode")
            if len(item) > limits.max_string and not item.startswith("data:"):
                raise _refuse(loc, f"a string of {len(item)} characters; at most {limits.max_string} are accepted", "string_too_long")
            continue
        if isinstance(item, (dict, list)):
            if len(loc) >= limits.max_depth:
                raise _refuse(loc, f"the value is nested more than {limits.max_depth} levels deep", "too_deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    if _SURROGATE.search(key):
                        raise _refuse(loc, "a key holds a lone UTF-16 surrogate (\\ud800-\\udfff)", "string_unicode")
                    if len(key) > limits.max_key:
                        raise _refuse(loc, f"a key of {len(key)} characters; at most {limits.max_key} are accepted", "string_too_long")
                    stack.append((child, (*loc, key)))
            else:
                stack.extend((child, (*loc, index)) for index, child in enumerate(item))


def decode_json(raw: bytes, limits: BodyLimits = BodyLimits()) -> Any:
    """The JSON value of `raw` (None when empty), checked against `limits`."""
    if not raw:
        return None
    if len(raw) > limits.max_bytes:
        raise BodyRefused(413, Issue(loc=(), msg=f"the request body is larger than {limits.max_bytes} bytes", type="too_large"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as failure:
        raise _refuse((), f"the request body is not UTF-8 (byte {failure.start})", "json_invalid") from None
    parse_int, parse_float, parse_constant = _number_parser(limits)
    try:
        value = json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant)
    except RecursionError:
        raise _refuse((), f"the value is nested more than {limits.max_depth} levels deep", "too_deep") from None
    except json.JSONDecodeError as failure:
        raise _refuse((), f"the request body is not valid JSON: {failure}", "json_invalid") from None
    _check(value, limits)
    return value
