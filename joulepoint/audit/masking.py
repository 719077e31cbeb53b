"""Masking of secret fields in audit entries (AUDITLOG_MASK_CALLABLE).

auditlog's default mask keeps the second half of the value, which for a device secret or a
client secret is half the secret. Here a secret field is recorded only as changed; a JSON field
(an action's config) keeps its shape and loses the values of secret-looking keys, so a changed
webhook URL stays readable while its signing secret and auth headers do not.
"""

from __future__ import annotations

import ast
import json
import re

MASK = "********"
SECRET_KEY = re.compile(r"secret|token|password|authorization|api[-_]?key", re.IGNORECASE)


def mask_secret(value: str) -> str:
    parsed = _structured(value)
    if isinstance(parsed, dict | list):
        return json.dumps(_masked(parsed), sort_keys=True)
    return MASK if value not in ("", "None") else value


def _structured(value: str):
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return None


def _masked(data):
    if isinstance(data, dict):
        return {key: MASK if SECRET_KEY.search(str(key)) else _masked(item) for key, item in data.items()}
    if isinstance(data, list):
        return [_masked(item) for item in data]
    return data
