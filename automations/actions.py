"""The six action types: each validates its config, renders its payload (dry run and
delivery creation, no side effect) and executes a delivery (side effect, in a worker).

`execute` returns an Outcome and never raises for an expected failure; the delivery state
machine in services.py decides retry, dead or success from it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from automations import netguard, plugins, signing, templating
from automations.models import ActionType, Annotation, Delivery, RelayCommand
from energy.models import Meter


class ConfigError(ValueError):
    """Invalid action config; `errors` maps a config key to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class Outcome:
    ok: bool
    retry: bool = True  # for a failure: try again later (False = dead now)
    waiting: bool = False  # the service this action needs is not installed yet
    response_code: int | None = None
    latency_ms: float | None = None
    error: str = ""
    result: dict = field(default_factory=dict)


def _template(errors: dict, config: dict, key: str, *, required: bool = False, default: str = "") -> str:
    value = config.get(key, default)
    if value in (None, "") and required:
        errors[key] = "this template is required"
        return ""
    if not isinstance(value, str):
        errors[key] = "must be a string template"
        return ""
    try:
        templating.check(value)
    except templating.TemplateError as exc:
        errors[key] = f"invalid template: {exc}"
    return value


def _unknown_keys(errors: dict, config: dict, allowed: set[str]) -> None:
    for key in sorted(set(config) - allowed):
        errors[key] = "unknown config key"


def _meter_of_org(errors: dict, value: Any, organization, key: str = "meter_id") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        errors[key] = "must be a meter id (a positive integer) or null for the event's meter"
        return None
    if not Meter.objects.for_org(organization).filter(pk=value).exists():
        errors[key] = f"meter {value} does not exist"
        return None
    return value


def _context_meter(delivery: Delivery, configured: int | None) -> Meter | None:
    meter_id = configured if configured is not None else delivery.context.get("meter_id")
    if not isinstance(meter_id, int):
        return None
    return Meter.objects.for_org(delivery.organization_id).filter(pk=meter_id).first()


def _event_time(delivery: Delivery):
    for key in ("timestamp", "occurred_at"):
        value = delivery.context.get(key)
        if isinstance(value, str):
            parsed = parse_datetime(value)
            if parsed is not None:
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.UTC)
    return delivery.created_at or timezone.now()


class Handler:
    type: str

    def validate(self, config: dict, *, organization) -> dict:
        raise NotImplementedError

    def render(self, config: dict, context: dict) -> dict:
        raise NotImplementedError

    def endpoint(self, config: dict) -> str:
        return ""

    def execute(self, delivery: Delivery) -> Outcome:
        raise NotImplementedError


# --- webhook -----------------------------------------------------------------------------------

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
        _unknown_keys(errors, config, self.allowed)
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


# --- plugin_action -----------------------------------------------------------------------------


class PluginHandler(Handler):
    type = ActionType.PLUGIN_ACTION

    def validate(self, config: dict, *, organization) -> dict:
        errors: dict[str, str] = {}
        _unknown_keys(errors, config, {"plugin", "params"})
        name = config.get("plugin")
        params = config.get("params", {})
        plugin = plugins.plugin_get(name) if isinstance(name, str) else None
        if plugin is None:
            names = ", ".join(sorted(plugins.registry())) or "(none)"
            errors["plugin"] = f"unknown plugin {name!r}; registered: {names}"
        elif not isinstance(params, dict):
            errors["params"] = "must be an object"
        else:
            try:
                params = plugin.validate_params(params)
            except ValueError as exc:
                errors["params"] = str(exc)
        if errors:
            raise ConfigError(errors)
        return {"plugin": name, "params": params}

    def render(self, config: dict, context: dict) -> dict:
        return {"plugin": config["plugin"], "params": config["params"]}

    def execute(self, delivery: Delivery) -> Outcome:
        plugin = plugins.plugin_get(delivery.payload["plugin"])
        if plugin is None:
            return Outcome(ok=False, error=f"plugin {delivery.payload['plugin']!r} is not installed on this worker")
        started = time.perf_counter()
        try:
            result = plugin.execute(
                params=delivery.payload["params"],
                context=template_context_from_delivery(delivery),
                organization_id=delivery.organization_id,
            )
        except Exception as exc:
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])
        return Outcome(ok=True, latency_ms=(time.perf_counter() - started) * 1000, result=result or {})


# --- relay_command -----------------------------------------------------------------------------


class RelayCommandHandler(Handler):
    """Creates a RelayCommand awaiting approval; nothing reaches the device from here."""

    type = ActionType.RELAY_COMMAND

    def validate(self, config: dict, *, organization) -> dict:
        from joulepoint.tenancy.models import Membership

        errors: dict[str, str] = {}
        _unknown_keys(errors, config, {"meter_id", "command", "approver_role", "expires_in_seconds"})
        meter_id = _meter_of_org(errors, config.get("meter_id"), organization)
        command = config.get("command")
        if command not in RelayCommand.Command.values:
            errors["command"] = f"must be one of {', '.join(RelayCommand.Command.values)}"
        role = config.get("approver_role", Membership.Role.APPROVER)
        if role not in (Membership.Role.APPROVER, Membership.Role.ADMIN):
            errors["approver_role"] = "must be 'approver' or 'admin'"
        expires = config.get("expires_in_seconds", settings.AUTOMATIONS_RELAY_COMMAND_EXPIRY_SECONDS)
        if isinstance(expires, bool) or not isinstance(expires, int) or not 60 <= expires <= 7 * 86400:
            errors["expires_in_seconds"] = "must be whole seconds between 60 and 604800"
        if errors:
            raise ConfigError(errors)
        return {"meter_id": meter_id, "command": command, "approver_role": role, "expires_in_seconds": expires}

    def render(self, config: dict, context: dict) -> dict:
        meter_id = config.get("meter_id") or context.get("meter_id")
        return {
            "meter_id": meter_id,
            "command": config["command"],
            "approver_role": config["approver_role"],
            "expires_in_seconds": config["expires_in_seconds"],
        }

    def execute(self, delivery: Delivery) -> Outcome:
        meter = _context_meter(delivery, delivery.payload.get("meter_id"))
        if meter is None:
            return Outcome(ok=False, retry=False, error="the command's meter does not exist in this organization")
        command, _ = RelayCommand.objects.get_or_create(
            delivery=delivery,
            defaults={
                "organization_id": delivery.organization_id,
                "meter": meter,
                "command": delivery.payload["command"],
                "approver_role": delivery.payload["approver_role"],
                "rule_id": delivery.rule_id,
                "reason": f"rule {delivery.rule_id} on {delivery.event_key}",
                "expires_at": timezone.now() + timedelta(seconds=delivery.payload["expires_in_seconds"]),
            },
        )
        return Outcome(ok=True, result={"relay_command_id": command.pk, "status": command.status})


# --- notify_email ------------------------------------------------------------------------------


class EmailHandler(Handler):
    type = ActionType.NOTIFY_EMAIL

    def validate(self, config: dict, *, organization) -> dict:
        errors: dict[str, str] = {}
        _unknown_keys(errors, config, {"recipients", "subject_template", "body_template"})
        recipients = config.get("recipients")
        if not isinstance(recipients, list) or not recipients or len(recipients) > 50:
            errors["recipients"] = "a list of 1 to 50 e-mail addresses"
        else:
            for address in recipients:
                try:
                    if not isinstance(address, str):
                        raise TypeError
                    validate_email(address)
                except (DjangoValidationError, TypeError):
                    errors["recipients"] = f"{address!r} is not an e-mail address"
        subject = _template(errors, config, "subject_template", required=True)
        body = _template(errors, config, "body_template", default="{key} for meter {meter_id}")
        if errors:
            raise ConfigError(errors)
        return {"recipients": recipients, "subject_template": subject, "body_template": body}

    def render(self, config: dict, context: dict) -> dict:
        subject = templating.render(config["subject_template"], context).replace("\n", " ")[:200]
        return {
            "recipients": config["recipients"],
            "subject": subject,
            "body": templating.render(config["body_template"], context),
        }

    def execute(self, delivery: Delivery) -> Outcome:
        payload = delivery.payload
        started = time.perf_counter()
        try:
            sent = send_mail(payload["subject"], payload["body"], None, payload["recipients"])
        except Exception as exc:
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])
        return Outcome(ok=True, latency_ms=(time.perf_counter() - started) * 1000, result={"sent": sent})


# --- annotate ----------------------------------------------------------------------------------


class AnnotateHandler(Handler):
    type = ActionType.ANNOTATE

    def validate(self, config: dict, *, organization) -> dict:
        errors: dict[str, str] = {}
        _unknown_keys(errors, config, {"text_template", "meter_id"})
        text = _template(errors, config, "text_template", required=True)
        meter_id = _meter_of_org(errors, config.get("meter_id"), organization)
        if errors:
            raise ConfigError(errors)
        return {"text_template": text, "meter_id": meter_id}

    def render(self, config: dict, context: dict) -> dict:
        return {
            "meter_id": config.get("meter_id") or context.get("meter_id"),
            "text": templating.render(config["text_template"], context)[:1000],
        }

    def execute(self, delivery: Delivery) -> Outcome:
        meter = _context_meter(delivery, delivery.payload.get("meter_id"))
        if meter is None:
            return Outcome(
                ok=False, retry=False, error="no meter to annotate: the event names none of this organization"
            )
        annotation, created = Annotation.objects.get_or_create(
            delivery=delivery,
            defaults={
                "organization_id": delivery.organization_id,
                "meter": meter,
                "ts": _event_time(delivery),
                "text": delivery.payload["text"],
                "source": "rule",
                "rule_id": delivery.rule_id,
            },
        )
        if created:
            from automations.services import annotation_announce  # services imports this module

            annotation_announce(annotation=annotation)
        return Outcome(ok=True, result={"annotation_id": annotation.pk})


# --- wallet_topup ------------------------------------------------------------------------------

CURRENCY = re.compile(r"^[A-Z]{3}$")


def billing_topup_service():
    """The billing app's top-up service, or None while billing is not installed.

    The seam (docs/automations.md): `billing.services.wallet_topup(*, organization_id, wallet_id,
    amount, currency, idempotency_key, source)`; it must credit at most once per idempotency key.
    """
    from django.apps import apps

    if not apps.is_installed("billing"):
        return None
    try:
        from billing import services as billing_services  # type: ignore[import-not-found]
    except ImportError:
        return None
    return getattr(billing_services, "wallet_topup", None)


class WalletTopupHandler(Handler):
    type = ActionType.WALLET_TOPUP

    def validate(self, config: dict, *, organization) -> dict:
        errors: dict[str, str] = {}
        _unknown_keys(errors, config, {"wallet_id", "amount", "currency"})
        wallet_id = config.get("wallet_id")
        if isinstance(wallet_id, bool) or not isinstance(wallet_id, int) or wallet_id < 1:
            errors["wallet_id"] = "must be a wallet id (a positive integer)"
        amount = config.get("amount")
        try:
            value = Decimal(str(amount)) if isinstance(amount, str | int) and not isinstance(amount, bool) else None
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite() or value <= 0 or value > Decimal("1000000"):
            errors["amount"] = 'must be a decimal string (e.g. "25.00") above 0 and at most 1000000'
        elif value.as_tuple().exponent < -4:
            errors["amount"] = "at most 4 decimal places"
        currency = config.get("currency")
        if not isinstance(currency, str) or not CURRENCY.match(currency):
            errors["currency"] = "must be an ISO 4217 code such as EUR"
        if errors:
            raise ConfigError(errors)
        return {"wallet_id": wallet_id, "amount": str(value), "currency": currency}

    def render(self, config: dict, context: dict) -> dict:
        return dict(config)

    def execute(self, delivery: Delivery) -> Outcome:
        topup = billing_topup_service()
        if topup is None:
            return Outcome(ok=False, waiting=True, error="waiting for billing: the billing service is not installed")
        try:
            result = topup(
                organization_id=delivery.organization_id,
                wallet_id=delivery.payload["wallet_id"],
                amount=Decimal(delivery.payload["amount"]),
                currency=delivery.payload["currency"],
                idempotency_key=delivery.idempotency_key,
                source=f"automations.delivery:{delivery.pk}",
            )
        except Exception as exc:
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])
        return Outcome(ok=True, result=result if isinstance(result, dict) else {"result": str(result)})


HANDLERS: dict[str, Handler] = {
    handler.type: handler
    for handler in (
        WebhookHandler(),
        PluginHandler(),
        RelayCommandHandler(),
        EmailHandler(),
        AnnotateHandler(),
        WalletTopupHandler(),
    )
}


def handler_for(action_type: str) -> Handler:
    return HANDLERS[action_type]


def template_context(event: dict, rule: dict | None = None) -> dict:
    """Templates see the event's fields at the top level (`{meter_id}`) and as `{event.x}`."""
    return {**event, "event": event, "rule": rule or {}}


def template_context_from_delivery(delivery: Delivery) -> dict:
    rule = {"id": delivery.rule_id, "name": delivery.rule.name if delivery.rule else ""}
    return template_context(delivery.context, rule)
