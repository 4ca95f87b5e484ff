"""Job stores for the contract tests: the SQLite file and a real PostgreSQL server.

The PostgreSQL server is the one at `LTXTUNE_TEST_POSTGRES` (default
`postgresql://postgres@127.0.0.1:5432/postgres`); each test session makes its own database
(`ltxtune_test_<random>`), migrated with `ltxtune db migrate`'s function, and drops it at the end.
Where no server answers, the PostgreSQL cases are skipped with that reason (`.ci/run` starts one).
"""

from __future__ import annotations

import os
import uuid
from typing import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from ltxtune.jobs.store import Store, migrate_store, open_store

ADMIN_URL = os.environ.get("LTXTUNE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgres")


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    try:
        import psycopg

        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as error:  # no server: the PostgreSQL cases cannot run here
        pytest.skip(f"no PostgreSQL server at {ADMIN_URL}: {error}")
    name = f"ltxtune_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")
    url = _with_database(ADMIN_URL, name)
    try:
        migrate_store(url)
        yield url
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def empty_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, job_logs, files, epochs, outbox, workers RESTART IDENTITY")
        conn.execute("ALTER SEQUENCE jobs_seq_numbers RESTART")


@pytest.fixture(params=BACKENDS)
def store_target(request, tmp_path) -> str:
    """Where a store lives, on each backend: a SQLite path or an emptied PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "db.sqlite")
    url = request.getfixturevalue("postgres_url")
    empty_postgres(url)
    return url


@pytest.fixture
def open_new(store_target) -> Iterator[Callable[..., Store]]:
    """Opens another connection to the test's store (as another process would); all closed after."""
    opened: list[Store] = []

    def make(notifier=None) -> Store:
        store = open_store(store_target if store_target.startswith("postgresql") else __import__("pathlib").Path(store_target), notifier)
        opened.append(store)
        return store

    yield make
    for store in opened:
        try:
            store.close()
        except Exception:
            pass
