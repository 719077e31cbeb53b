"""Charging routes (chargers, ID tokens, sessions), included from energy.api.urls. Every path
answers with and without a trailing slash (no redirects)."""

from __future__ import annotations

from energy.load.api.charging import views as charging
from joulepoint.platform.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("chargers", charging.ChargerViewSet, basename="charger")
router.register("id-tokens", charging.IdTokenViewSet, basename="idtoken")
router.register("charging-sessions", charging.ChargingSessionViewSet, basename="chargingsession")

urlpatterns = router.urls
