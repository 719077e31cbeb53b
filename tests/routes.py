"""The API routes as the URL resolver knows them, for the walks that visit every one of them
(tests/test_tenant_isolation.py, tests/test_scope_walk.py): a route added later is walked too."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, get_resolver

# Documentation routes: public by design, and they hold no tenant data.
SKIPPED_ROUTE_NAMES = {"schema", "api-docs"}


def _walk(patterns, prefix: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def api_routes() -> list[tuple[str, URLPattern]]:
    return [
        (route, pattern)
        for route, pattern in _walk(get_resolver().url_patterns)
        if route.lstrip("^").startswith("api/") and pattern.name not in SKIPPED_ROUTE_NAMES
    ]


def route_methods(pattern: URLPattern) -> list[str]:
    callback = pattern.callback
    actions = getattr(callback, "actions", None)
    if actions:
        return sorted(actions)
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    assert view_class is not None, f"{pattern.name}: teach the route walks how to call this function view"
    return sorted(m for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m))
