"""Bench-only URLconf: every product route, plus `/bench/bare` (a DRF view that returns 200).

The bare view is the baseline for single-reading ingest: the same server processes, the same
middleware and DRF request/response cycle, but no authentication, throttle, parsing or query.
"""

from __future__ import annotations

from django.urls import re_path
from rest_framework.response import Response
from rest_framework.views import APIView

from joulepoint import urls as product_urls


class BareView(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    def get(self, request):
        return Response({"ok": True})

    def post(self, request):
        return Response({"ok": True})


handler400 = product_urls.handler400
handler404 = product_urls.handler404
handler500 = product_urls.handler500

urlpatterns = [
    re_path(r"^bench/bare/?$", BareView.as_view(), name="bench-bare"),
    *product_urls.urlpatterns,
]
