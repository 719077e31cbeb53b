"""Load management's routes (included by energy.api.urls): limits and allocation here, the
chargers, ID tokens and charging sessions from api/charging/urls.py."""

from __future__ import annotations

from django.urls import include, path, re_path

from energy.load.api import allocation, limits
from joulepoint.platform.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("constraints", limits.SiteConstraintViewSet, basename="load-constraint")
router.register("schedules", limits.LoadScheduleViewSet, basename="load-schedule")
router.register("demand-response/events", limits.DemandResponseEventViewSet, basename="load-demand-response")
router.register("load/setpoints", allocation.SetpointViewSet, basename="load-setpoint")

urlpatterns = [
    re_path(r"^load/forecast/?$", allocation.HeadroomForecastView.as_view(), name="load-forecast"),
    re_path(r"^load/windows/?$", allocation.LimitWindowsView.as_view(), name="load-windows"),
    *router.urls,
    path("", include("energy.load.api.charging.urls")),
]
