from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularSwaggerView
from oauth2_provider import urls as oauth2_urls

from joulepoint.platform.schema import SchemaView

# The admin is the facility managers' back office: our name on it, and "View site" opens the dashboard.
admin.site.site_header = "Joulepoint Edge"
admin.site.site_title = "Joulepoint Edge"
admin.site.index_title = "Sites and settings"
admin.site.site_url = "/dashboard/"

handler400 = "joulepoint.platform.api.json_bad_request"
handler404 = "joulepoint.platform.api.json_not_found"
handler500 = "joulepoint.platform.api.json_server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("o/", include(oauth2_urls)),
    re_path(r"^api/schema/?$", SchemaView.as_view(), name="schema"),
    re_path(r"^api/docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/energy/", include("energy.api.urls")),
    path("api/energy/", include("billing.api.urls")),
    path("dashboard/", include("energy.live.dashboard")),
    path("api/automations/", include("automations.api.urls")),
    path("api/ml/", include("mlops.api.urls")),
    path("api/", include("joulepoint.audit.api.urls")),
]
