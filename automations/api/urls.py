"""Automations routes (seed: /api/automations/rules, /actions, /deliveries/metrics). Every path
answers with and without a trailing slash."""

from __future__ import annotations

from automations.api import views
from joulepoint.platform.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("rules", views.RuleViewSet, basename="automation-rule")
router.register("actions", views.ActionViewSet, basename="automation-action")
router.register("deliveries", views.DeliveryViewSet, basename="automation-delivery")
router.register("alerts", views.AlertViewSet, basename="automation-alert")
router.register("relay-commands", views.RelayCommandViewSet, basename="automation-relay-command")
router.register("annotations", views.AnnotationViewSet, basename="automation-annotation")
router.register("plugins", views.PluginViewSet, basename="automation-plugin")

urlpatterns = router.urls
