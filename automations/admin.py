"""Admin for automations: rules and actions are edited here too; deliveries, alerts and relay
commands are platform rows with admin actions (retry, acknowledge/clear, approve/reject)."""

from __future__ import annotations

from django.contrib import admin, messages

from automations.alerts import alert_acknowledge, alert_clear
from automations.deliveries.services import delivery_retry
from automations.engine.cache import rules_changed
from automations.models import Action, Alert, Annotation, CircuitBreaker, Delivery, RelayCommand, Rule, RuleAction
from automations.relay import NotAllowed, relay_command_decide, relay_command_may_decide
from joulepoint.tenancy.admin import MemberInlinePermissions, OrganizationScopedAdmin, ReadOnlyScopedAdmin
from joulepoint.tenancy.selectors import user_organization_ids


class RuleActionInline(MemberInlinePermissions, admin.TabularInline):
    model = RuleAction
    extra = 0

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "action" and not request.user.is_superuser:
            formfield.queryset = formfield.queryset.for_orgs(user_organization_ids(user=request.user))
        return formfield


@admin.register(Rule)
class RuleAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization", "event_key", "throttle_seconds", "alert_severity", "is_active"]
    list_filter = ["event_key", "is_active"]
    search_fields = ["name"]
    inlines = [RuleActionInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        rules_changed(organization_id=obj.organization_id)


@admin.register(Action)
class ActionAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization", "type", "is_active"]
    list_filter = ["type", "is_active"]
    search_fields = ["name"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyScopedAdmin):
    list_display = ["id", "organization", "action_type", "status", "attempts", "response_code", "latency_ms"]
    list_filter = ["status", "action_type"]
    actions = ["retry"]

    @admin.action(description="Retry the selected dead deliveries")
    def retry(self, request, queryset):
        done = 0
        for delivery in queryset.filter(status__in=[Delivery.Status.DEAD, Delivery.Status.WAITING]):
            delivery_retry(delivery=delivery)
            done += 1
        self.message_user(request, f"{done} deliveries queued again.")


@admin.register(Alert)
class AlertAdmin(ReadOnlyScopedAdmin):
    list_display = ["id", "organization", "severity", "status", "subject", "occurrences", "created_at"]
    list_filter = ["status", "severity"]
    actions = ["acknowledge", "clear"]

    @admin.action(description="Acknowledge the selected alerts")
    def acknowledge(self, request, queryset):
        for alert in queryset:
            alert_acknowledge(alert=alert, by=f"user:{request.user.get_username()}")

    @admin.action(description="Clear the selected alerts")
    def clear(self, request, queryset):
        for alert in queryset:
            alert_clear(alert=alert, by=f"user:{request.user.get_username()}")


@admin.register(RelayCommand)
class RelayCommandAdmin(ReadOnlyScopedAdmin):
    """Approve or reject from the change list: allowed to superusers and to members holding the
    command's approver role (or admin) in its organization."""

    list_display = ["id", "organization", "meter", "command", "status", "expires_at", "decided_by", "decided_at"]
    list_filter = ["status", "command"]
    actions = ["approve", "reject"]

    def _decide(self, request, queryset, approve: bool) -> None:
        done, refused = 0, 0
        for command in queryset:
            allowed = request.user.is_superuser or relay_command_may_decide(
                command=command, user=request.user, scopes=set()
            )
            if not allowed:
                refused += 1
                continue
            try:
                relay_command_decide(command=command, approve=approve, user=request.user, note="admin")
                done += 1
            except NotAllowed:
                refused += 1
        verb = "approved" if approve else "rejected"
        self.message_user(request, f"{done} command(s) {verb}.")
        if refused:
            self.message_user(
                request, f"{refused} command(s) skipped: not awaiting approval or not your role.", messages.WARNING
            )

    @admin.action(description="Approve the selected relay commands")
    def approve(self, request, queryset):
        self._decide(request, queryset, True)

    @admin.action(description="Reject the selected relay commands")
    def reject(self, request, queryset):
        self._decide(request, queryset, False)


@admin.register(Annotation)
class AnnotationAdmin(OrganizationScopedAdmin):
    list_display = ["meter", "ts", "text", "source"]
    list_filter = ["source"]


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(ReadOnlyScopedAdmin):
    list_display = ["endpoint", "organization", "state", "consecutive_failures", "retry_at"]
