"""The HTTP API: fal queue and Civitai orchestration routes over one job store.

    from ltxtune.api import ServiceConfig, create_app

Importing this package never imports torch (training runs in child processes of the worker).
"""

from ltxtune.api.app import create_app
from ltxtune.jobs.config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]
