"""Typed environment variables for settings.py (configuration comes from the environment only).

Every `X` may also be given as `X_FILE`, a path whose contents are the value (Docker and
systemd secrets). A value that cannot be read as its type stops start-up with a message naming
the variable: a typo in a flag must not silently mean "off".
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def env(name: str, default: str = "") -> str:
    """The variable's text, or the contents of the file named by `<NAME>_FILE`."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


def envbool(name: str, default: bool = False) -> bool:
    """1/true/yes/on or 0/false/no/off (any case); empty or unset is `default`."""
    value = env(name).strip().lower()
    if not value:
        return default
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={value!r} is not a boolean: use one of {', '.join(sorted(TRUE))} or {', '.join(sorted(FALSE))}"
    )


def envint(name: str, default: int) -> int:
    value = env(name).strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number") from None


def envfloat(name: str, default: float) -> float:
    value = env(name).strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name}={value!r} is not a finite number")
    return number
