"""Automations API doors: thin views over the automations services and tenant-scoped querysets."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from automations import plugins
from automations.alerts import alert_acknowledge, alert_clear
from automations.annotations import annotation_announce
from automations.api import filters, serializers
from automations.deliveries.services import delivery_retry
from automations.engine.cache import rules_changed
from automations.engine.dry_run import rule_dry_run
from automations.models import Action, Alert, Annotation, Delivery, RelayCommand, Rule
from automations.relay import NotAllowed, relay_command_decide, relay_command_may_decide
from automations.selectors import deliveries_metrics
from joulepoint.tenancy.filters import UtcDateTimeField
from joulepoint.tenancy.permissions import OrganizationTokenHasScope
from joulepoint.tenancy.viewsets import OrganizationModelViewSet, OrganizationViewSet


class ActionViewSet(OrganizationModelViewSet):
    """Actions. A webhook's signing secret is shown once, in the create answer (masked after)."""

    queryset = Action.objects.all()
    serializer_class = serializers.ActionSerializer
    scope_domain = "automations"
    filterset_class = filters.ActionFilter
    ordering_fields = ["id", "name", "type", "created_at"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)
        context = {**self.get_serializer_context(), "reveal_secret": True}
        return Response(
            serializers.ActionSerializer(serializer.instance, context=context).data, status=status.HTTP_201_CREATED
        )

    def perform_destroy(self, instance):
        if instance.rule_actions.exists():
            raise exceptions.ValidationError({"detail": "This action is used by rules; remove it from them first."})
        instance.delete()


class RuleViewSet(OrganizationModelViewSet):
    queryset = Rule.objects.prefetch_related("rule_actions")
    serializer_class = serializers.RuleSerializer
    scope_domain = "automations"
    filterset_class = filters.RuleFilter
    ordering_fields = ["id", "name", "event_key", "created_at"]
    action_scopes = {"dry_run": ["automations:read"], "dry_run_unsaved": ["automations:read"]}

    def perform_destroy(self, instance):
        organization_id = instance.organization_id
        instance.delete()
        transaction.on_commit(lambda: rules_changed(organization_id=organization_id))

    @extend_schema(request=serializers.DryRunSerializer, responses=serializers.DryRunResultSerializer)
    @action(detail=True, methods=["post"], url_path="dry-run")
    def dry_run(self, request, pk=None):
        """What this saved rule would do with a sample event; nothing is written or sent."""
        rule = self.get_object()
        body = serializers.DryRunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        actions = [ra.action for ra in rule.rule_actions.select_related("action")]
        return Response(rule_dry_run(rule=rule, actions=actions, event=body.validated_data["event"]))

    @extend_schema(
        request=serializers.UnsavedDryRunSerializer,
        responses=serializers.DryRunResultSerializer,
        operation_id="automations_rules_dry_run_unsaved",
    )
    @action(detail=False, methods=["post"], url_path="dry-run")
    def dry_run_unsaved(self, request):
        """Dry run of an unsaved rule body (validated like a create, never saved)."""
        body = serializers.UnsavedDryRunSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data["rule"])
        rule_actions = data.pop("rule_actions", [])
        rule = Rule(organization=self.organization, **data)
        actions = [item["action_id"] for item in rule_actions]
        return Response(rule_dry_run(rule=rule, actions=actions, event=body.validated_data["event"]))


class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Every action execution: status, attempts, next attempt, response code, latency, last error."""

    queryset = Delivery.objects.all()
    serializer_class = serializers.DeliverySerializer
    scope_domain = "automations"
    filterset_class = filters.DeliveryFilter
    ordering_fields = ["id", "created_at", "status", "attempts", "latency_ms"]
    action_scopes = {"retry": ["automations:write"]}

    @extend_schema(request=None, responses=serializers.DeliverySerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """A dead (or waiting) delivery gets a fresh round of attempts with the same webhook-id."""
        try:
            delivery = delivery_retry(delivery=self.get_object())
        except ValueError as exc:
            raise exceptions.ValidationError({"detail": str(exc)}) from None
        return Response(self.get_serializer(delivery).data)

    @extend_schema(
        parameters=[OpenApiParameter("since", str, description="ISO 8601; only deliveries created since")],
        responses=serializers.MetricsSerializer,
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def metrics(self, request):
        since = request.query_params.get("since")
        parsed = None
        if since:
            try:
                parsed = UtcDateTimeField().clean(since)
            except DjangoValidationError:
                raise exceptions.ValidationError({"since": ["not an ISO 8601 date-time"]}) from None
        return Response(deliveries_metrics(organization_id=self.organization.pk, since=parsed))


def _actor(request) -> str:
    user = getattr(request.auth, "user", None)
    application = getattr(request.auth, "application", None)
    if user is not None:
        return f"user:{user.get_username()}"
    return f"application:{application.client_id}" if application else "unknown"


class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    queryset = Alert.objects.all()
    serializer_class = serializers.AlertSerializer
    scope_domain = "automations"
    filterset_class = filters.AlertFilter
    ordering_fields = ["id", "created_at", "last_seen_at", "severity", "status"]

    @extend_schema(request=None, responses=serializers.AlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        alert = alert_acknowledge(alert=self.get_object(), by=_actor(request))
        return Response(self.get_serializer(alert).data)

    @extend_schema(request=None, responses=serializers.AlertSerializer)
    @action(detail=True, methods=["post"])
    def clear(self, request, pk=None):
        alert = alert_clear(alert=self.get_object(), by=_actor(request))
        return Response(self.get_serializer(alert).data)


class RelayApprovalPermission(OrganizationTokenHasScope):
    """relay:approve on the token; or a token with automations:write acting for a user, in which
    case the view checks that user's role on the command. Documented in the schema as relay:approve."""

    def has_permission(self, request, view) -> bool:
        try:
            return super().has_permission(request, view)
        except exceptions.PermissionDenied:
            token = request.auth
            if getattr(token, "user", None) is not None and token.is_valid(["automations:write"]):
                return True
            raise


class RelayCommandViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Relay commands created by rules; approve or reject with relay:approve or the approver role."""

    queryset = RelayCommand.objects.select_related("decided_by")
    serializer_class = serializers.RelayCommandSerializer
    scope_domain = "automations"
    filterset_class = filters.RelayCommandFilter
    ordering_fields = ["id", "created_at", "expires_at", "status"]
    action_scopes = {"approve": ["relay:approve"], "reject": ["relay:approve"]}

    def dangerously_get_permissions(self):
        # Approval is by scope or by the approver role of the token's user (RelayApprovalPermission).
        if self.action in ("approve", "reject"):
            return [RelayApprovalPermission()]
        return super().dangerously_get_permissions()

    def _decide(self, request, approve: bool):
        command = self.get_object()
        token = request.auth
        user = getattr(token, "user", None)
        scopes = set(token.scope.split())
        if not relay_command_may_decide(command=command, user=user, scopes=scopes):
            raise exceptions.PermissionDenied(
                f"Approving needs the relay:approve scope or the {command.approver_role!r} role in this organization."
            )
        body = serializers.RelayDecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            command = relay_command_decide(
                command=command,
                approve=approve,
                user=user,
                application=token.application,
                note=body.validated_data["note"],
            )
        except NotAllowed as exc:
            return Response({"detail": str(exc), "status": command.status}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(command).data)

    @extend_schema(request=serializers.RelayDecisionSerializer, responses=serializers.RelayCommandSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._decide(request, True)

    @extend_schema(request=serializers.RelayDecisionSerializer, responses=serializers.RelayCommandSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._decide(request, False)


@extend_schema_view(create=extend_schema(summary="Annotate a meter's timeline by hand"))
class AnnotationViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    OrganizationViewSet,
):
    """Notes on meter timelines (`?meter=&start=&end=`), written by rules or by hand."""

    queryset = Annotation.objects.all()
    serializer_class = serializers.AnnotationSerializer
    scope_domain = "automations"
    filterset_class = filters.AnnotationFilter
    ordering_fields = ["ts", "id"]

    def perform_create(self, serializer) -> None:
        annotation = serializer.save(organization=self.organization, source="user")
        annotation_announce(annotation=annotation)


class PluginViewSet(viewsets.ViewSet):
    """Registered plugins for `plugin_action` (settings list and entry points)."""

    scope_domain = "automations"
    permission_classes = [OrganizationTokenHasScope]

    @extend_schema(responses=serializers.PluginSerializer(many=True))
    def list(self, request):
        data = [
            {"name": name, "description": (type(plugin).__doc__ or "").strip().split("\n")[0]}
            for name, plugin in sorted(plugins.registry().items())
        ]
        return Response(data)
