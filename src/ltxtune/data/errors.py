"""The one error dataset preparation raises, by neutral kind (`ltxtune.errors.ErrorKind`)."""

from __future__ import annotations

from ltxtune.errors import ErrorKind, JobError

SOURCE_FIELD = "dataset.source_url"


class DatasetError(JobError):
    """A dataset that cannot be prepared: `kind` is CONTENT for dataset or content problems and
    SOURCE for an unreachable or invalid source. Either way the run fails before training and is
    billed nothing."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.CONTENT, field: str | None = SOURCE_FIELD):
        super().__init__(message, kind, field)


def source_error(field: str, why: str) -> DatasetError:
    """`<field> not reachable: <why>`, of kind SOURCE (`field` is the request's name for the URL)."""
    return DatasetError(f"{field} not reachable: {why}", kind=ErrorKind.SOURCE)


def human_size(count: float) -> str:
    """`1000 bytes`, `12.3 MiB`, `2.0 GiB`."""
    if count < 1024:
        return f"{int(count)} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}"
    return f"{count:.1f} GiB"
