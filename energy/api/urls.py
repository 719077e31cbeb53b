"""Energy routes. Every path answers with and without a trailing slash (no redirects)."""

from __future__ import annotations

from django.urls import include, path, re_path

from energy.api import analytics, views
from energy.power_quality.api import views as power_quality
from energy.topology.api import views as topology
from joulepoint.platform.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("sites", views.SiteViewSet, basename="site")
router.register("meters", views.MeterViewSet, basename="meter")
router.register("groups", views.MeterGroupViewSet, basename="metergroup")
router.register("gateways", views.GatewayViewSet, basename="gateway")
# Power quality and protection (docs/power-quality.md).
router.register("pq/config", power_quality.PQConfigViewSet, basename="pq-config")
router.register("pq/events", power_quality.PQEventViewSet, basename="pq-event")
router.register("protection/events", power_quality.ProtectionEventViewSet, basename="protection-event")
router.register("protection/breakers", power_quality.BreakerStateViewSet, basename="protection-breaker")
router.register("commands", views.DeviceCommandViewSet, basename="devicecommand")
# Topology (docs/topology.md).
router.register("topology/nodes", topology.NodeViewSet, basename="topology-node")
router.register("topology/edges", topology.EdgeViewSet, basename="topology-edge")
router.register("topology/settings", topology.TopologySettingsViewSet, basename="topology-settings")

readings = views.ReadingViewSet.as_view({"get": "list", "post": "create"})
readings_bulk = views.ReadingViewSet.as_view({"post": "bulk"})
device_commands = views.DeviceCommandPollView.as_view({"get": "list"})
device_command_ack = views.DeviceCommandPollView.as_view({"post": "ack"})

urlpatterns = [
    re_path(r"^energy-data/?$", readings, name="reading-list"),
    re_path(r"^energy-data/bulk/?$", readings_bulk, name="reading-bulk"),
    re_path(r"^devices/commands/?$", device_commands, name="device-commands"),
    re_path(r"^devices/commands/(?P<pk>[0-9]{1,18})/ack/?$", device_command_ack, name="device-command-ack"),
    re_path(r"^analytics/live_trail/?$", analytics.LiveTrailView.as_view(), name="analytics-live-trail"),
    re_path(r"^analytics/kpi/?$", analytics.KPIView.as_view(), name="analytics-kpi"),
    re_path(r"^analytics/annotations/?$", analytics.AnnotationsView.as_view(), name="analytics-annotations"),
    re_path(r"^analytics/matrix/?$", analytics.MatrixView.as_view(), name="analytics-matrix"),
    re_path(r"^analytics/export/?$", analytics.ExportView.as_view(), name="analytics-export"),
    re_path(r"^analytics/forecast/?$", analytics.ForecastView.as_view(), name="analytics-forecast"),
    re_path(r"^analytics/settings/?$", analytics.AnalyticsSettingsView.as_view(), name="analytics-settings"),
    *router.urls,
    # Load management: limits, demand response, setpoints, forecast, chargers, sessions (docs/load.md).
    path("", include("energy.load.api.urls")),
]
