"""Typed environment variables: documented values read, anything else refused by name."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from joulepoint.platform.environ import envbool, envfloat, envint


@pytest.mark.parametrize("value", ["1", "true", "True", "YES", "on", " on "])
def test_envbool_reads_the_documented_true_values(monkeypatch, value):
    monkeypatch.setenv("JP_FLAG", value)
    assert envbool("JP_FLAG", False) is True


@pytest.mark.parametrize("value", ["0", "false", "No", "OFF"])
def test_envbool_reads_the_documented_false_values(monkeypatch, value):
    monkeypatch.setenv("JP_FLAG", value)
    assert envbool("JP_FLAG", True) is False


def test_envbool_unset_or_empty_is_the_default(monkeypatch):
    monkeypatch.delenv("JP_FLAG", raising=False)
    assert envbool("JP_FLAG", True) is True
    monkeypatch.setenv("JP_FLAG", "")
    assert envbool("JP_FLAG", False) is False


@pytest.mark.parametrize("value", ["ture", "enabled", "2", "y"])
def test_envbool_refuses_a_typo_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("JP_FLAG", value)
    with pytest.raises(ImproperlyConfigured, match="JP_FLAG"):
        envbool("JP_FLAG", False)


def test_envbool_reads_the_file_variant(monkeypatch, tmp_path):
    secret = tmp_path / "flag"
    secret.write_text("on\n")
    monkeypatch.setenv("JP_FLAG_FILE", str(secret))
    assert envbool("JP_FLAG", False) is True


def test_envint_and_envfloat(monkeypatch):
    monkeypatch.setenv("JP_N", "42")
    monkeypatch.setenv("JP_X", "2.5")
    assert envint("JP_N", 1) == 42
    assert envfloat("JP_X", 1.0) == 2.5
    monkeypatch.delenv("JP_N")
    assert envint("JP_N", 7) == 7


@pytest.mark.parametrize(("reader", "value"), [(envint, "4.5"), (envint, "ten"), (envfloat, "fast"), (envfloat, "nan")])
def test_numbers_that_are_not_refused_naming_the_variable(monkeypatch, reader, value):
    monkeypatch.setenv("JP_N", value)
    with pytest.raises(ImproperlyConfigured, match="JP_N"):
        reader("JP_N", 1)
