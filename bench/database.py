"""What every benchmark does with PostgreSQL: its own database, created and dropped by name, and
readings loaded with COPY (the baseline's way of writing, and the fastest way to seed history)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parent.parent


def database_create(name: str) -> None:
    """A fresh, empty database `name` (an old one of that name is dropped first)."""
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def database_drop(name: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def readings_copy(frame) -> None:
    """COPY a pandas frame whose columns are energy_reading's into the table, through Django's
    connection (the benchmark's database)."""
    from django.db import connection

    columns = ", ".join(frame.columns)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY energy_reading ({columns}) FROM STDIN WITH (FORMAT csv)") as copy,
    ):
        copy.write(frame.to_csv(header=False, index=False))


@contextmanager
def django_on_database(name: str, *, keep: bool = False) -> Iterator[None]:
    """Django set up on a fresh database `name` (migrated, no Redis: the in-process defaults), for
    a benchmark run in this process; the database is dropped afterwards unless `keep`."""
    database_create(name)
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "joulepoint.settings")
    sys.path.insert(0, str(ROOT))
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        yield
    finally:
        from django.db import connections

        connections.close_all()
        if not keep:
            database_drop(name)
