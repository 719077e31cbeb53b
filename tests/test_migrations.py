"""energy's squashed 0002 (three parallel 0002 migrations and two empty merges) against what it replaces.

- A fresh database gets exactly the schema the replaced migrations built: the same SQL statements,
  and tables that match the models.
- A database that recorded the replaced migrations (every deployment before the squash) has
  nothing to apply: the squashed migration counts as applied, `migrate --plan` is empty.
- A database that recorded only some of them still migrates through the replaced files, which is
  why they are kept (docs/migrations.md).
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

SQUASHED = ("energy", "0002_squashed_0004_merge_analytics")
REPLACED = [
    ("energy", "0002_power_quality"),
    ("energy", "0002_devicecommand"),
    ("energy", "0003_merge_0002_devicecommand_0002_power_quality"),
    ("energy", "0002_analytics_rollups_retention"),
    ("energy", "0004_merge_analytics"),
]


def _sql(loader: MigrationLoader, keys: list[tuple[str, str]]) -> list[str]:
    plan = [(loader.graph.nodes[key], False) for key in keys]
    return sorted(statement for statement in loader.collect_sql(plan) if not statement.startswith("--"))


def test_the_squash_replaces_exactly_the_parallel_0002_and_the_merges():
    loader = MigrationLoader(None, replace_migrations=False)
    assert list(loader.disk_migrations[SQUASHED].replaces) == REPLACED
    assert set(loader.graph.forwards_plan(("energy", "0004_merge_analytics"))) >= set(REPLACED)
    # Every operation of the replaced migrations is in the squash, none added.
    squashed_ops = [op.describe() for op in loader.disk_migrations[SQUASHED].operations]
    replaced_ops = [op.describe() for key in REPLACED for op in loader.disk_migrations[key].operations]
    assert sorted(squashed_ops) == sorted(replaced_ops)
    assert loader.disk_migrations[SQUASHED].dependencies == [("energy", "0001_initial"), ("tenancy", "0001_initial")]


# SQLite's schema editor refuses to run inside a transaction, even to collect SQL.
@pytest.mark.django_db(transaction=True)
def test_a_fresh_database_gets_the_same_sql_as_before():
    """What `sqlmigrate` prints for the squash is what it printed for the five replaced migrations."""
    loader = MigrationLoader(connection, replace_migrations=False)
    before = _sql(loader, REPLACED)
    after = _sql(loader, [SQUASHED])
    assert before, "the replaced migrations create tables"
    assert after == before


@pytest.mark.django_db
def test_a_fresh_database_matches_the_models():
    """The test database was migrated through the squash; its energy tables are the models'."""
    recorded = set(MigrationRecorder(connection).applied_migrations())
    assert SQUASHED in recorded
    assert set(REPLACED) <= recorded  # Django records the replaced names too
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)

    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        for model in apps.get_app_config("energy").get_models():
            if not model._meta.managed or model._meta.proxy:
                continue
            table = model._meta.db_table
            assert table in tables, table
            columns = {column.name for column in connection.introspection.get_table_description(cursor, table)}
            assert columns == {field.column for field in model._meta.local_concrete_fields}, table
            named = {c.name for c in model._meta.constraints} | {i.name for i in model._meta.indexes}
            assert named <= set(connection.introspection.get_constraints(cursor, table)), table


def _record_only(applied: list[tuple[str, str]]) -> None:
    """Make the recorder look like a database that applied `applied` of energy's 0002-0004."""
    recorder = MigrationRecorder(connection)
    for app_label, name in [SQUASHED, *REPLACED]:
        recorder.migration_qs.filter(app=app_label, name=name).delete()
    for app_label, name in applied:
        recorder.record_applied(app_label, name)


@pytest.mark.django_db
def test_a_database_that_applied_the_replaced_migrations_has_nothing_to_apply():
    _record_only(REPLACED)  # every deployment migrated before the squash

    loader = MigrationLoader(connection)
    loader.check_consistent_history(connection)
    assert SQUASHED in loader.applied_migrations
    assert SQUASHED in loader.graph.nodes and not set(REPLACED) & set(loader.graph.nodes)
    # automations.0002 depended on 0004_merge_analytics: it now hangs on the squash.
    assert SQUASHED in loader.graph.node_map[("automations", "0002_alert_one_open_per_rule_subject")].parents

    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []

    out = StringIO()
    call_command("migrate", "--plan", stdout=out)
    assert "No planned migration operations." in out.getvalue()

    # showmigrations says so, and that the squash itself is not recorded yet.
    listing = _showmigrations()
    assert f"[-] {SQUASHED[1]} (5 squashed migrations) Run 'manage.py migrate' to finish recording." in listing
    assert "[ ]" not in listing

    # The next migrate applies nothing and records the squash; the replaced rows stay.
    call_command("migrate", verbosity=0)
    recorded = set(MigrationRecorder(connection).applied_migrations())
    assert SQUASHED in recorded and set(REPLACED) <= recorded
    assert f"[X] {SQUASHED[1]}" in _showmigrations()


def _showmigrations() -> str:
    out = StringIO()
    call_command("showmigrations", "energy", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_a_database_that_applied_some_of_them_migrates_through_the_replaced_files():
    """Why the replaced files stay: half-way, the squash cannot run (its tables partly exist)."""
    # Such a database cannot have applied what came after the squash either.
    graph = MigrationLoader(connection).graph
    later = [key for key in graph.nodes if key[0] == "energy" and key not in graph.forwards_plan(SQUASHED)]
    _record_only([("energy", "0002_devicecommand"), ("energy", "0002_power_quality")])
    MigrationRecorder(connection).migration_qs.filter(app="energy", name__in=[name for _, name in later]).delete()

    executor = MigrationExecutor(connection)
    assert SQUASHED not in executor.loader.graph.nodes
    plan = [(m.app_label, m.name) for m, _backwards in executor.migration_plan(executor.loader.graph.leaf_nodes())]
    assert sorted(plan) == sorted(REPLACED[2:] + later)
