"""The OpenAPI schema view (`/api/schema/`).

Apart from platform.api because that module is DRF's settings target (pagination, exception
handler) and drf_spectacular.views imports DRF's settings: one module for both is an import cycle.
"""

from __future__ import annotations

import threading

from drf_spectacular.views import SpectacularAPIView


class SchemaView(SpectacularAPIView):
    """drf-spectacular's schema view, built by one thread at a time per process.

    Its generator keeps module-level state (GENERATOR_STATS, the extension registry), so two
    threads of one worker building the schema at once raise and answer 500
    (tfranzel/drf-spectacular#1123 and #1368, open upstream).
    """

    _generation = threading.Lock()

    def _get_schema_response(self, request):
        with self._generation:
            return super()._get_schema_response(request)
