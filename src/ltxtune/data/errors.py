"""The one error dataset preparation raises: what the user sees, and the HTTP status it maps to."""

from __future__ import annotations

# 400: the source could not be fetched or is not a zip (Civitai: "trainingData.sourceUrl not reachable").
SOURCE_STATUS = 400
# 422: the archive was fetched but its content cannot be trained on.
CONTENT_STATUS = 422


class DatasetError(Exception):
    """A dataset that cannot be prepared. `message` is shown to the user as is; `status` is 422 for
    dataset or content problems and 400 for an unreachable or invalid source. Either way the run
    fails before training and is billed nothing."""

    def __init__(self, message: str, status: int = CONTENT_STATUS):
        super().__init__(message)
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"DatasetError({self.message!r}, status={self.status})"


def source_error(field: str, why: str) -> DatasetError:
    """`<field> not reachable: <why>` with status 400, as Civitai words it."""
    return DatasetError(f"{field} not reachable: {why}", status=SOURCE_STATUS)


def human_size(count: float) -> str:
    """`1000 bytes`, `12.3 MiB`, `2.0 GiB`."""
    if count < 1024:
        return f"{int(count)} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}"
    return f"{count:.1f} GiB"
