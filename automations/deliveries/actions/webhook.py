"""`webhook`: POST (or PUT/PATCH) the rendered body to a URL, signed with Standard Webhooks headers.
The target is checked against private addresses at save time and again, pinned, at send time."""

from __future__ import annotations

import os
import re
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
from django.conf import settings

from automations import netguard, signing, templating
from automations.deliveries.actions.base import ConfigError, Handler, Outcome, unknown_keys
from automations.models import ActionType, Delivery

HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
RESERVED_HEADERS = {"host", "content-length", "webhook-id", "webhook-timestamp", "webhook-signature"}
_client: httpx.Client | None = None
_client_pid: int | None = None


def http_client() -> httpx.Client:
    """One pooled client per process (a forked worker child makes its own)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = httpx.Client(follow_redirects=False, limits=httpx.Limits(max_connections=100))
        _client_pid = os.getpid()
    return _client


class WebhookHandler(Handler):
    """POST (or PUT/PATCH) the rendered body, signed with Standard Webhooks headers."""

    type = ActionType.WEBHOOK
    allowed = {"url", "method", "headers", "secret", "body_template", "timeout_seconds"}

    def validate(self, config: dict, *, organization) -> dict:
        errors: dict[str, str] = {}
        unknown_keys(errors, config, self.allowed)
        url = config.get("url")
        if not isinstance(url, str) or not url:
            errors["url"] = "a URL is required"
        elif len(url) > 2000:
            errors["url"] = "at most 2,000 characters"
        else:
            try:
                netguard.url_check_syntax(url)
            except netguard.TargetRefused as exc:
                errors["url"] = str(exc)
        method = str(config.get("method", "POST")).upper()
        if method not in ("POST", "PUT", "PATCH"):
            errors["method"] = "must be POST, PUT or PATCH"
        headers = config.get("headers", {})
        if not isinstance(headers, dict):
            errors["headers"] = "must be an object of header names to string values"
        else:
            for name, value in headers.items():
                if not HEADER_NAME.match(name) or name.lower() in RESERVED_HEADERS:
                    errors["headers"] = f"header {name!r} is not allowed"
                elif not isinstance(value, str) or "\n" in value or "\r" in value:
                    errors["headers"] = f"header {name!r} must be a single-line string"
        secret = config.get("secret") or signing.secret_generate()
        if not isinstance(secret, str) or not signing.secret_is_valid(secret):
            errors["secret"] = "must be 'whsec_' + base64 of at least 16 bytes (omit it to get one generated)"
        body_template = config.get("body_template")
        if body_template is not None:
            try:
                templating.check_json(body_template)
            except templating.TemplateError as exc:
                errors["body_template"] = f"invalid template: {exc}"
        timeout = config.get("timeout_seconds", settings.AUTOMATIONS_WEBHOOK_TIMEOUT_SECONDS)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0.1 <= timeout <= 30:
            errors["timeout_seconds"] = "must be a number of seconds between 0.1 and 30"
        if errors:
            raise ConfigError(errors)
        clean = {"url": url, "method": method, "headers": headers, "secret": secret, "timeout_seconds": timeout}
        if body_template is not None:
            clean["body_template"] = body_template
        return clean

    def render(self, config: dict, context: dict) -> dict:
        if "body_template" in config:
            body = templating.render_json(config["body_template"], context)
        else:
            event = context.get("event", {})
            body = {
                "type": event.get("key"),
                "timestamp": event.get("occurred_at"),
                "data": {"event": event, "rule": context.get("rule")},
            }
        return {"url": config["url"], "method": config["method"], "headers": config.get("headers", {}), "body": body}

    def endpoint(self, config: dict) -> str:
        parts = urlsplit(config["url"])
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.scheme}://{parts.hostname}:{port}"

    def execute(self, delivery: Delivery) -> Outcome:
        config = delivery.action.config
        payload = delivery.payload
        body = orjson.dumps(payload["body"])
        timeout = float(config.get("timeout_seconds", settings.AUTOMATIONS_WEBHOOK_TIMEOUT_SECONDS))
        try:
            host, port, ip = netguard.url_resolve(payload["url"])
        except netguard.TargetRefused as exc:
            # A name that does not resolve may come back; a refused address will not.
            return Outcome(ok=False, retry="cannot resolve" in str(exc), error=str(exc))
        parts = urlsplit(payload["url"])
        literal = f"[{ip}]" if ":" in ip else ip
        pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
        headers = {
            **payload.get("headers", {}),
            "Host": parts.netloc.rsplit("@", 1)[-1],
            "Content-Type": "application/json",
            "User-Agent": "Joulepoint-Edge-Webhooks/1",
            **signing.headers(secret=config["secret"], msg_id=delivery.webhook_id, body=body),
        }
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        limit = settings.AUTOMATIONS_WEBHOOK_MAX_RESPONSE_BYTES
        started = time.perf_counter()
        try:
            with http_client().stream(
                payload["method"], pinned, content=body, headers=headers, timeout=timeout, extensions=extensions
            ) as response:
                excerpt = b""
                for chunk in response.iter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= limit:
                        break  # a huge answer is not read to the end
                code = response.status_code
                location = response.headers.get("location", "")
        except httpx.TimeoutException:
            latency = (time.perf_counter() - started) * 1000
            return Outcome(ok=False, latency_ms=latency, error=f"timeout after {timeout:g} s")
        except httpx.HTTPError as exc:
            latency = (time.perf_counter() - started) * 1000
            return Outcome(ok=False, latency_ms=latency, error=f"{type(exc).__name__}: {exc}"[:500])
        latency = (time.perf_counter() - started) * 1000
        text = excerpt[:500].decode("utf-8", "replace")
        if 200 <= code < 300:
            return Outcome(ok=True, response_code=code, latency_ms=latency, result={"response": text})
        if 300 <= code < 400:
            error = f"HTTP {code}: redirect to {location or '(no location)'} not followed"
        else:
            error = f"HTTP {code}: {text}"
        return Outcome(ok=False, response_code=code, latency_ms=latency, error=error[:1000])
