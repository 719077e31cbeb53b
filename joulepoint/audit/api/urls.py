from __future__ import annotations

from joulepoint.audit.api import views
from joulepoint.platform.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("audit", views.AuditEntryViewSet, basename="audit-entry")

urlpatterns = router.urls
