"""Request errors: collected all at once, each naming its field path; each protocol renders them."""

from __future__ import annotations

from dataclasses import dataclass
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
        """The dotted path with list indices: `steps[0].input.lr`."""
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
