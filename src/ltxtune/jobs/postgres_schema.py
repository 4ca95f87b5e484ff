"""The PostgreSQL schema of the job store and its versioned migrations.

The same tables and columns as the SQLite store, from its DDL (`ltxtune.jobs.sqlite_schema`;
version 2: the neutral queue, 3: the workers) in PostgreSQL types. As there, the DDL of a
released version never changes: a later version adds its own step. `SCHEMA_VERSION` is kept in
`meta`; `migrate` applies every step from the stored version under an advisory lock, so hosts
starting together migrate once.
`ltxtune db migrate --store postgresql://...` runs it; a store whose schema is behind is refused
with that advice, one written by a newer ltxtune is refused.
"""

from __future__ import annotations

from typing import Any

from ltxtune.jobs.sqlite_schema import JOBS_TABLE, OTHER_TABLES, WORKERS_TABLE, SchemaTooNew

SCHEMA_VERSION = 3
_MIGRATION_LOCK = 0x6C7874756E65  # "ltxtune": one advisory lock id for every migrating host


def from_sqlite(ddl: str) -> str:
    """SQLite's DDL in PostgreSQL types: one definition of every table for both backends."""
    for sqlite_type, postgres_type in (
        ("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY"),
        ("seq INTEGER", "seq BIGINT"),
        ("size INTEGER", "size BIGINT"),
        (" REAL", " DOUBLE PRECISION"),
        (" BLOB", " BYTEA"),
    ):
        ddl = ddl.replace(sqlite_type, postgres_type)
    return ddl


# Submission numbers come from a sequence: creates on many hosts never wait on MAX(seq).
_VERSION_2 = from_sqlite(JOBS_TABLE + OTHER_TABLES) + "CREATE SEQUENCE jobs_seq_numbers;"
_VERSION_3 = from_sqlite(WORKERS_TABLE)

# version reached -> the statements that reach it from the one before (0: an empty database)
MIGRATIONS: dict[int, str] = {2: _VERSION_2, 3: _VERSION_3}
TABLES = ("jobs", "job_logs", "files", "epochs", "outbox", "workers")


class SchemaBehind(RuntimeError):
    pass


def stored_version(conn: Any) -> int:
    """The schema version of the database, 0 when it holds no store yet."""
    if conn.execute("SELECT to_regclass('meta') IS NOT NULL AS present").fetchone()["present"] is False:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row["value"]) if row else 0


def check_version(conn: Any, where: str) -> None:
    version = stored_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(f"{where} was written by a newer ltxtune (schema {version}; this one reads {SCHEMA_VERSION})")
    if version < SCHEMA_VERSION:
        raise SchemaBehind(
            f"the job store at {where} has schema {version}, this ltxtune needs {SCHEMA_VERSION}: "
            f"run `ltxtune db migrate --store {where}` first"
        )


def migrate(conn: Any, where: str) -> tuple[int, int]:
    """Bring the database to SCHEMA_VERSION in one transaction; returns (from, to)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        version = stored_version(conn)
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(f"{where} was written by a newer ltxtune (schema {version}; this one reads {SCHEMA_VERSION})")
        for step in sorted(v for v in MIGRATIONS if v > version):
            for statement in (part.strip() for part in MIGRATIONS[step].split(";")):
                if statement:
                    conn.execute(statement)
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('schema_version', %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
    return version, SCHEMA_VERSION
