"""Statements PostgreSQL plans once per connection: the ingest path's own.

Django binds parameters client-side (psycopg's ClientCursor), so PostgreSQL parses and plans
every statement anew. For the two statements every ingest group runs, the INSERT and PQ
detection's quiet check, planning cost PostgreSQL more CPU than executing them
(pg_stat_statements, single readings). `prepared_cursor()` prepares them
on first use and executes the saved plan afterwards; the settings make that plan generic
(`plan_cache_mode=force_generic_plan`: with custom plans PostgreSQL planned every execution
again, since a one-row array looks cheaper than the generic plan's guess). It also sends the
INSERT's array literals as parameters instead of quoting them into the SQL text (less client
CPU per batch).

Only where connections persist: on a connection opened per request (`DB_CONN_MAX_AGE=0`, the
ASGI servers) a statement would be prepared, used once and lost, one round trip more than today.
"""

from __future__ import annotations

from typing import NamedTuple

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections


class _LoggedQuery(NamedTuple):
    query: bytes


class _PreparingCursor(psycopg.Cursor):
    """psycopg's server-side-binding cursor, preparing every statement it executes."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        super().execute(query, params, prepare=True, binary=binary)
        # Django's query log (DEBUG, CaptureQueriesContext) reads the statement psycopg keeps in
        # `_query`, which it leaves empty for a prepared execution: keep the SQL, placeholders
        # unfilled, rather than log None.
        if self._query is None:
            self._query = _LoggedQuery(query.encode() if isinstance(query, str) else query)
        return self


def prepared_cursor():
    """A Django cursor (error translation, query logging) whose statements are prepared on
    PostgreSQL with persistent connections, and the usual cursor elsewhere."""
    # Resolved once: each attribute of the `connection` proxy looks the thread's connection up
    # again (an asgiref Local), paid on every ingest statement.
    wrapper = connections[DEFAULT_DB_ALIAS]
    if wrapper.vendor != "postgresql" or not wrapper.settings_dict["CONN_MAX_AGE"]:
        return wrapper.cursor()
    wrapper.ensure_connection()
    raw = wrapper.connection
    # Django turns psycopg's automatic preparation off (None), which also ignores prepare=True;
    # its own cursors bind client-side and never prepare, so any number leaves them as they are.
    if raw.prepare_threshold is None:
        raw.prepare_threshold = 5
    # _prepare_cursor is what connection.cursor() wraps its own cursor with.
    return wrapper._prepare_cursor(_PreparingCursor(raw))
