"""The `ltxtune` command line (`ltxtune = "ltxtune.cli:app"`, or `python -m ltxtune.cli`)."""

from ltxtune.cli.main import app

__all__ = ["app"]
