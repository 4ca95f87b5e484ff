"""Request errors: collected all at once, each naming its field path, rendered per API flavour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    """One problem with one field of a request. `loc` is the path inside the request body."""

    loc: Loc
    msg: str
    type: str = "value_error"

    @property
    def path(self) -> str:
        """The dotted path with list indices, as Civitai writes it: `steps[0].input.lr`."""
        text = ""
        for part in self.loc:
            if isinstance(part, int):
                text += f"[{part}]"
            else:
                text += f".{part}" if text else str(part)
        return text or "body"


class RequestInvalid(Exception):
    """A request that cannot be accepted; carries every issue found, not just the first."""

    def __init__(self, issues: list[Issue]):
        self.issues = issues
        super().__init__("; ".join(f"{issue.path}: {issue.msg}" for issue in issues))


def issues_from_pydantic(error: ValidationError, prefix: Loc = ()) -> list[Issue]:
    issues = []
    for item in error.errors(include_url=False):
        msg = item["msg"]
        # pydantic prefixes messages of ValueErrors raised in validators; the field path says enough.
        msg = msg.removeprefix("Value error, ")
        issues.append(Issue(loc=prefix + tuple(item["loc"]), msg=msg, type=item["type"]))
    return issues


def fal_detail(issues: list[Issue]) -> dict[str, Any]:
    """fal's HTTP 422 body: `{"detail": [{"loc": ["body", field...], "msg", "type"}]}`."""
    return {"detail": [{"loc": ["body", *issue.loc], "msg": issue.msg, "type": issue.type} for issue in issues]}


def civitai_problem(issues: list[Issue]) -> dict[str, Any]:
    """Civitai's RFC 7807 problem details with `errors` keyed by field path."""
    errors: dict[str, list[str]] = {}
    for issue in issues:
        errors.setdefault(issue.path, []).append(issue.msg)
    return {
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "detail": "; ".join(f"{path}: {' '.join(msgs)}" for path, msgs in errors.items()),
        "errors": errors,
    }
