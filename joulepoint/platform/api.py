"""Platform-wide API plumbing: JSON error bodies for every failure, including Django's own."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import exception_handler as drf_exception_handler

from joulepoint.platform.degraded import SharedCacheUnavailable


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": "Request body is larger than the limit.", "code": "body_too_large"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SharedCacheUnavailable):
        return Response(
            {"detail": str(exc), "code": "shared_cache_unavailable"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(exc.retry_after)},
        )
    response = drf_exception_handler(exc, context)
    # API exceptions may carry structured detail beyond DRF's `detail` (e.g. per-item errors).
    extra = getattr(exc, "extra", None)
    if response is not None and extra:
        response.data.update(extra)
    return response


def json_not_found(request, exception=None):
    return JsonResponse({"detail": "Not found.", "path": request.path}, status=404)


def json_server_error(request):
    return JsonResponse({"detail": "Internal server error."}, status=500)


def json_bad_request(request, exception=None):
    return JsonResponse({"detail": "Bad request."}, status=400)


class OptionalSlashRouter(SimpleRouter):
    """Routes that answer with and without a trailing slash; APPEND_SLASH's redirect would lose
    a POST body, so both forms are matched directly."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


class Pagination(LimitOffsetPagination):
    """limit/offset pages of at most `max_limit` rows, so one request cannot read a whole table."""

    max_limit = 1000
