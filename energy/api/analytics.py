"""Analytics API doors (GET /api/energy/analytics/…): parse parameters, call one computation.

Not model endpoints: each view takes the organization from the token (OAuth2, energy:read)
and resolves the subject through `energy.analytics.params.subject_resolve`, which only ever
looks at that organization's rows.
"""

from __future__ import annotations

from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from energy.analytics import annotations, export, forecast, kpi, live, matrix, retention
from energy.analytics.models import MAX_EXPECTED_INTERVAL_SECONDS, MAX_RETENTION_DAYS
from energy.analytics.params import (
    INTERVALS,
    parse_choice,
    parse_fields,
    parse_int,
    parse_interval,
    parse_range,
    parse_tz,
    subject_resolve,
)
from energy.analytics.policy import Retention, retention_for
from energy.models import READING_FIELDS
from joulepoint.tenancy.viewsets import OrganizationAPIView


def _param(name: str, description: str, type_=OpenApiTypes.STR, enum=None, default=None) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, description=description, enum=enum, default=default)


SUBJECT_PARAMS = [
    _param("meter", "Meter id (exactly one of meter, group, account)", OpenApiTypes.INT),
    _param("group", "Meter group id", OpenApiTypes.INT),
    _param("account", "Billing account id (once billing is installed)", OpenApiTypes.INT),
]
TZ_PARAM = _param("tz", "IANA time zone for local days and hours; default the site's zone")
FIELD_LIST = ", ".join(READING_FIELDS)


def _range_params(default: str) -> list[OpenApiParameter]:
    return [
        _param("start", f"ISO 8601 date or date-time, inclusive (naive values are local to tz); default {default}"),
        _param("end", "ISO 8601 date or date-time, exclusive; default now"),
    ]


ERRORS = {
    400: OpenApiResponse(description="A bad parameter; the body names it (`param`) and says why"),
    401: OpenApiResponse(description="No OAuth2 bearer token"),
    403: OpenApiResponse(description="The token lacks energy:read"),
    404: OpenApiResponse(description="No such meter or group in the token's organization"),
}


class CSVRenderer(BaseRenderer):
    """Lets clients ask for text/csv; errors on a CSV request are rendered as one text line."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict):
            return str(data.get("detail", data)).encode()
        return str(data).encode()


class AnalyticsView(OrganizationAPIView):
    scope_domain = "energy"

    def subject_and_tz(self, request):
        subject = subject_resolve(organization=self.organization, query=request.query_params)
        return subject, parse_tz(request.query_params.get("tz"), subject.timezone)


class LiveTrailView(AnalyticsView):
    @extend_schema(
        summary="Last N minutes of readings (raw or min/avg/max downsampled)",
        parameters=[
            *SUBJECT_PARAMS,
            _param("minutes", "How far back, 1-1440 (default 15)", OpenApiTypes.INT),
            _param("fields", f"Comma-separated fields (default total_power): {FIELD_LIST}"),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        subject = subject_resolve(organization=self.organization, query=request.query_params)
        query = request.query_params
        minutes = parse_int(query.get("minutes"), "minutes", default=15, low=1, high=1440)
        fields = parse_fields(query.get("fields"), default=("total_power",))
        return Response(
            live.live_trail_compute(
                organization_id=self.organization.pk,
                subject=subject,
                minutes=minutes,
                fields=fields,
                now=timezone.now(),
            )
        )


class AnnotationsView(AnalyticsView):
    @extend_schema(
        summary="Annotations on the subject's meter timelines (rules' annotate actions and notes by hand)",
        parameters=[
            *SUBJECT_PARAMS,
            *_range_params("end minus 24 h"),
            TZ_PARAM,
            _param(
                "limit",
                f"At most this many, oldest first, 1-{annotations.MAX_LIMIT} (default {annotations.DEFAULT_LIMIT}); "
                "`truncated` says whether more matched",
                OpenApiTypes.INT,
            ),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        subject, tz = self.subject_and_tz(request)
        query = request.query_params
        time_range = parse_range(query, tz=tz, default=timedelta(days=1))
        limit = parse_int(
            query.get("limit"), "limit", default=annotations.DEFAULT_LIMIT, low=1, high=annotations.MAX_LIMIT
        )
        return Response(
            annotations.annotations_compute(
                organization_id=self.organization.pk, subject=subject, time_range=time_range, limit=limit
            )
        )


class KPIView(AnalyticsView):
    @extend_schema(
        summary="Energy, peak demand, load factor, voltage, power factor, completeness and events",
        parameters=[*SUBJECT_PARAMS, *_range_params("end minus 24 h"), TZ_PARAM],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        subject, tz = self.subject_and_tz(request)
        time_range = parse_range(request.query_params, tz=tz, default=timedelta(days=1))
        return Response(kpi.kpi_compute(organization=self.organization, subject=subject, time_range=time_range, tz=tz))


class MatrixView(AnalyticsView):
    @extend_schema(
        summary="Energy heatmap: local day x hour (or weekday x hour), kWh",
        parameters=[
            *SUBJECT_PARAMS,
            *_range_params("the last 28 days"),
            TZ_PARAM,
            _param("shape", "day (default) or weekday (mean per weekday)", enum=["day", "weekday"]),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        subject, tz = self.subject_and_tz(request)
        time_range = parse_range(request.query_params, tz=tz, default=timedelta(days=28))
        shape = parse_choice(request.query_params.get("shape"), "shape", choices=("day", "weekday"), default="day")
        return Response(matrix.matrix_compute(subject=subject, time_range=time_range, tz=tz, shape=shape))


class ExportView(AnalyticsView):
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        summary="CSV of readings, raw or resampled, streamed",
        parameters=[
            *SUBJECT_PARAMS,
            *_range_params("end minus 24 h"),
            TZ_PARAM,
            _param("fields", f"Comma-separated fields (default total_power,total_energy): {FIELD_LIST}"),
            _param(
                "interval",
                f"raw (default; ranges up to ANALYTICS_RAW_MAX_DAYS days) or {', '.join(INTERVALS)}",
                enum=list(export.EXPORT_INTERVALS),
            ),
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR, **ERRORS},
    )
    def get(self, request):
        subject, tz = self.subject_and_tz(request)
        query = request.query_params
        interval = parse_interval(query.get("interval"), allowed=export.EXPORT_INTERVALS, default="raw")
        fields = parse_fields(query.get("fields"), default=("total_power", "total_energy"))
        raw_max = settings.ANALYTICS_RAW_MAX_DAYS
        time_range = parse_range(
            query,
            tz=tz,
            default=timedelta(days=1),
            max_days=raw_max if interval == "raw" else None,
            max_hint=" for raw data; ask for interval=1min or coarser" if interval == "raw" else "",
        )
        chunks = export.export_csv(subject=subject, time_range=time_range, tz=tz, fields=fields, interval=interval)
        if isinstance(request._request, ASGIRequest):
            chunks = _async_chunks(chunks)
        response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
        name = f"{subject.kind}-{subject.id}-{interval}-{time_range.start:%Y%m%dT%H%M}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


async def _async_chunks(chunks):
    """Under ASGI, Django would drain a sync iterator into a list first; pull chunk by chunk
    in the sync thread instead, so the export stays in constant memory there too."""
    done = object()
    while True:
        chunk = await sync_to_async(next, thread_sensitive=True)(chunks, done)
        if chunk is done:
            return
        yield chunk


class ForecastView(AnalyticsView):
    @extend_schema(
        summary="Naive demand or generation forecast with a backtest (MAE, MAPE)",
        parameters=[
            *SUBJECT_PARAMS,
            TZ_PARAM,
            _param(
                "target",
                "demand (non-PV meters) or generation (PV meters); default from the meters",
                enum=list(forecast.TARGETS),
            ),
            _param(
                "method",
                "Forecast method (default seasonal_naive_daily); model: the subject's assigned production model",
                enum=list(forecast.ALL_METHODS),
            ),
            _param("horizon", "Hours ahead, 1-168 (default 24)", OpenApiTypes.INT),
            _param("interval", "Step (default 1h)", enum=list(forecast.FORECAST_INTERVALS)),
            _param("history_days", "Days of history to use, 1-90 (default 28)", OpenApiTypes.INT),
            _param("window", "moving_average window in hours, 1-720 (default 24)", OpenApiTypes.INT),
            _param("end", "Forecast from this instant (ISO 8601; default now)"),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        subject, tz = self.subject_and_tz(request)
        query = request.query_params
        target = parse_choice(
            query.get("target"), "target", choices=forecast.TARGETS, default=forecast.default_target(subject)
        )
        result = forecast.forecast_compute(
            subject=subject,
            target=target,
            method=parse_choice(
                query.get("method"), "method", choices=forecast.ALL_METHODS, default="seasonal_naive_daily"
            ),
            interval=parse_interval(query.get("interval"), allowed=forecast.FORECAST_INTERVALS, default="1h"),
            horizon_hours=parse_int(query.get("horizon"), "horizon", default=24, low=1, high=168),
            history_days=parse_int(query.get("history_days"), "history_days", default=28, low=1, high=90),
            window_hours=parse_int(query.get("window"), "window", default=24, low=1, high=720),
            end=parse_range(query, tz=tz, default=timedelta(days=1)).end,
            tz=tz,
        )
        return Response(result)


class AnalyticsSettingsSerializer(serializers.Serializer):
    """An organization's retention and expected reporting interval (null days: keep forever)."""

    raw_retention_days = serializers.IntegerField(
        min_value=1,
        max_value=MAX_RETENTION_DAYS,
        allow_null=True,
        help_text="Delete raw readings older than this many days; null keeps them forever",
    )
    rollup_retention_days = serializers.IntegerField(
        min_value=1,
        max_value=MAX_RETENTION_DAYS,
        allow_null=True,
        help_text="Delete rollups (1 min, 15 min, 1 h) older than this many days; at least "
        "raw_retention_days, or null (forever; required when raw readings are kept forever)",
    )
    expected_interval_seconds = serializers.IntegerField(
        min_value=1,
        max_value=MAX_EXPECTED_INTERVAL_SECONDS,
        required=False,
        help_text="How often meters are expected to report, the base of data completeness "
        "(default 60; PUT without it resets it to 60)",
    )
    # A plain string, not an enum: a generic "SourceEnum" component would collide in the schema.
    source = serializers.CharField(
        read_only=True,
        help_text="organization: its own settings; defaults: it has none yet and the platform's apply",
    )

    @staticmethod
    def shape(settings_in_force: Retention) -> dict:
        return {
            "raw_retention_days": settings_in_force.raw_days,
            "rollup_retention_days": settings_in_force.rollup_days,
            "expected_interval_seconds": settings_in_force.expected_interval_seconds,
            "source": settings_in_force.source,
        }


SETTINGS_ERRORS = {
    400: OpenApiResponse(description="Invalid body: a JSON object naming each bad field; nothing was written"),
    401: ERRORS[401],
    403: OpenApiResponse(description="The token lacks energy:read (GET) or energy:write (PUT, PATCH)"),
}


class AnalyticsSettingsView(OrganizationAPIView):
    """How long the organization keeps raw readings and rollups, and how often its meters are
    expected to report. Expired rows are deleted by the hourly retention run."""

    # Not an AnalyticsView: no subject, the organization is the token's. Reads need energy:read,
    # writes energy:write (OrganizationTokenHasScope, by method). The admin edits the same row.
    scope_domain = "energy"

    @extend_schema(
        summary="Retention and expected reporting interval of the token's organization",
        responses={200: AnalyticsSettingsSerializer, 401: ERRORS[401], 403: SETTINGS_ERRORS[403]},
    )
    def get(self, request):
        in_force = retention_for(self.organization.pk)
        return Response(AnalyticsSettingsSerializer.shape(in_force))

    @extend_schema(
        summary="Replace the retention settings (a missing expected_interval_seconds becomes 60)",
        request=AnalyticsSettingsSerializer,
        responses={200: AnalyticsSettingsSerializer, **SETTINGS_ERRORS},
    )
    def put(self, request):
        return self._write(request, partial=False)

    @extend_schema(
        summary="Change some retention settings; the others keep their value",
        request=AnalyticsSettingsSerializer(partial=True),
        responses={200: AnalyticsSettingsSerializer, **SETTINGS_ERRORS},
    )
    def patch(self, request):
        return self._write(request, partial=True)

    def _write(self, request, *, partial: bool) -> Response:
        serializer = AnalyticsSettingsSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        try:
            in_force = retention.analytics_settings_update(
                organization=self.organization, values=dict(serializer.validated_data), partial=partial
            )
        except retention.AnalyticsSettingsInvalid as exc:
            raise ValidationError({field: [message] for field, message in exc.errors.items()}) from None
        return Response(AnalyticsSettingsSerializer.shape(in_force))
