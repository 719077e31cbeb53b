"""Energy routes. Every path answers with and without a trailing slash (no redirects)."""

from __future__ import annotations

from django.urls import re_path

from energy.api import pq_views, views
from joulepoint.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("sites", views.SiteViewSet, basename="site")
router.register("meters", views.MeterViewSet, basename="meter")
router.register("groups", views.MeterGroupViewSet, basename="metergroup")
router.register("gateways", views.GatewayViewSet, basename="gateway")
# Power quality and protection (docs/power-quality.md).
router.register("pq/config", pq_views.PQConfigViewSet, basename="pq-config")
router.register("pq/events", pq_views.PQEventViewSet, basename="pq-event")
router.register("protection/events", pq_views.ProtectionEventViewSet, basename="protection-event")
router.register("protection/breakers", pq_views.BreakerStateViewSet, basename="protection-breaker")

readings = views.ReadingViewSet.as_view({"get": "list", "post": "create"})
readings_bulk = views.ReadingViewSet.as_view({"post": "bulk"})

urlpatterns = [
    re_path(r"^energy-data/?$", readings, name="reading-list"),
    re_path(r"^energy-data/bulk/?$", readings_bulk, name="reading-bulk"),
    *router.urls,
]
