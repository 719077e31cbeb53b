"""What every benchmark does with PostgreSQL: its own database, created and dropped by name, and
readings loaded with COPY (the baseline's way of writing, and the fastest way to seed history)."""

from __future__ import annotations

import psycopg
from psycopg import sql

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


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
