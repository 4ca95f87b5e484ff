"""The HTTP API: every protocol's routes over one job store.

    from ltxtune.api import ServiceConfig, create_app

`errors` and `common` are the protocol-neutral pieces the protocols' routes use; `app` assembles
the protocols from the registry, so it is imported on first use of `create_app` (the protocols
import `ltxtune.api.errors` and `ltxtune.api.common` without pulling in the app).

Importing this package never imports torch (training runs in child processes of the worker).
"""

from typing import Any

from ltxtune.jobs.config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ltxtune.api.app import create_app

        return create_app
    raise AttributeError(name)
