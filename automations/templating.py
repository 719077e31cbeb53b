"""Templates for dedupe keys, webhook bodies, e-mails and annotations.

Syntax is Python's `str.format` over the event: `{meter_id}`, `{event.total_power:.1f}`,
`{rule.name}`. Only dictionary lookups are allowed (no attribute access, so a template cannot
reach into Python objects). A field missing from the event renders as an empty string; in a JSON
body template a string that is exactly one placeholder (`"{total_power}"`) keeps the value's JSON
type, and a missing one becomes null. Rendering never raises: a template that cannot be parsed is
refused when the action or rule is saved (`check()`).
"""

from __future__ import annotations

import string
from typing import Any

_MISSING = object()
_formatter = string.Formatter()


class TemplateError(ValueError):
    pass


def _lookup(context: dict, field_name: str) -> Any:
    value: Any = context
    for part in field_name.replace("[", ".").replace("]", "").split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def check(template: str) -> None:
    """Refuse a template that `str.format` cannot parse (unbalanced braces, bad conversion)."""
    try:
        for _literal, field, spec, conversion in _formatter.parse(template):
            if field is not None and field == "":
                raise TemplateError("positional fields `{}` are not allowed; name a field such as {meter_id}")
            if conversion not in (None, "s", "r"):
                raise TemplateError(f"unknown conversion !{conversion}")
            if spec and "{" in spec:
                raise TemplateError("nested fields in a format spec are not allowed")
    except ValueError as exc:
        raise TemplateError(str(exc)) from None


def render(template: str, context: dict) -> str:
    """Format `template` with `context`; missing fields and bad format specs render as ''."""
    out: list[str] = []
    try:
        parsed = list(_formatter.parse(template))
    except ValueError:
        return template
    for literal, field, spec, conversion in parsed:
        out.append(literal)
        if field is None:
            continue
        value = _lookup(context, field)
        if value is _MISSING or value is None:
            continue
        if conversion == "r":
            value = repr(value)
        try:
            out.append(format(value, spec or ""))
        except (ValueError, TypeError):
            out.append(str(value))
    return "".join(out)


def render_json(template: Any, context: dict) -> Any:
    """Render every string inside a JSON value; `"{field}"` alone keeps the field's type."""
    if isinstance(template, str):
        stripped = template.strip()
        if stripped.startswith("{") and stripped.endswith("}") and stripped.count("{") == 1:
            name = stripped[1:-1].split(":", 1)[0].split("!", 1)[0]
            if ":" not in stripped and "!" not in stripped:
                value = _lookup(context, name)
                return None if value is _MISSING else value
        return render(template, context)
    if isinstance(template, list):
        return [render_json(item, context) for item in template]
    if isinstance(template, dict):
        return {key: render_json(value, context) for key, value in template.items()}
    return template


def check_json(template: Any) -> None:
    if isinstance(template, str):
        check(template)
    elif isinstance(template, list):
        for item in template:
            check_json(item)
    elif isinstance(template, dict):
        for value in template.values():
            check_json(value)


def template_context(event: dict, rule: dict | None = None) -> dict:
    """Templates see the event's fields at the top level (`{meter_id}`) and as `{event.x}`."""
    return {**event, "event": event, "rule": rule or {}}


def rule_ref(rule) -> dict:
    """What a template sees of the rule that fired (`{rule.name}`)."""
    return {"id": rule.pk, "name": rule.name}
