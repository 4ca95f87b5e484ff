"""The errors a job can end with, by neutral kind: what went wrong, never how an API shows it.

A bottom module (no torch, no PyAV, no other ltxtune import), so the worker and the protocols can
tell failures apart without importing the data or training packages. Each protocol maps a kind to
its own HTTP status and wording (e.g. `ltxtune.protocols.fal.errors`).
"""

from __future__ import annotations

import errno
from enum import Enum


class ErrorKind(str, Enum):
    SOURCE = "source"  # the dataset source could not be fetched, or is not a readable archive
    CONTENT = "content"  # the dataset was fetched but cannot be trained on
    INTERNAL = "internal"  # an infrastructure failure that used up its retries
    CANCELLED = "cancelled"  # the owner cancelled the job
    TIMEOUT = "timeout"  # the job ran past its timeout
    START_TIMEOUT = "start_timeout"  # the job waited in the queue past its start deadline


class JobError(Exception):
    """A failure caused by the job's own input. `message` is shown to the user as is; `field` is
    the plan field at fault (e.g. `dataset.source_url`) when one is. Not `retryable`: running the
    same input again fails the same way, so the job ends at once and is billed nothing."""

    retryable = False

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.CONTENT, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.kind = ErrorKind(kind)
        self.field = field

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, kind={self.kind.value}, field={self.field!r})"


class SetupError(JobError):
    """This server's models or devices cannot run the job (weights missing or of another family, a
    memory preset the device lacks, a job too large for the GPU). Not the input's fault, but running
    it again here fails the same way, so it is not retried either; the message tells the operator
    what to change."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.INTERNAL, field: str | None = None):
        super().__init__(message, kind, field)


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (or what caused it) is a full disk or quota: an OSError ENOSPC/EDQUOT, or
    torch's checkpoint writer reporting one (`PytorchStreamWriter failed writing file ...: file
    write failed`, which keeps no errno)."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(seen)
        if "No space left on device" in text or ("PytorchStreamWriter" in text and "file write failed" in text):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
