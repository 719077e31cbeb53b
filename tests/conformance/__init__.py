"""Conformance vectors from public specifications and test suites (SOURCES.md says where each came
from and under which licence). Tests read them through `vectors()`."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def vectors(name: str):
    """The parsed JSON of a conformance file of this folder."""
    return json.loads((HERE / name).read_text())
