"""Energy routes. Every path answers with and without a trailing slash (no redirects)."""

from __future__ import annotations

from django.urls import re_path

from energy.api import analytics, views
from joulepoint.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("sites", views.SiteViewSet, basename="site")
router.register("meters", views.MeterViewSet, basename="meter")
router.register("groups", views.MeterGroupViewSet, basename="metergroup")
router.register("gateways", views.GatewayViewSet, basename="gateway")

readings = views.ReadingViewSet.as_view({"get": "list", "post": "create"})
readings_bulk = views.ReadingViewSet.as_view({"post": "bulk"})

urlpatterns = [
    re_path(r"^energy-data/?$", readings, name="reading-list"),
    re_path(r"^energy-data/bulk/?$", readings_bulk, name="reading-bulk"),
    re_path(r"^analytics/live_trail/?$", analytics.LiveTrailView.as_view(), name="analytics-live-trail"),
    re_path(r"^analytics/kpi/?$", analytics.KPIView.as_view(), name="analytics-kpi"),
    re_path(r"^analytics/matrix/?$", analytics.MatrixView.as_view(), name="analytics-matrix"),
    re_path(r"^analytics/export/?$", analytics.ExportView.as_view(), name="analytics-export"),
    re_path(r"^analytics/forecast/?$", analytics.ForecastView.as_view(), name="analytics-forecast"),
    *router.urls,
]
