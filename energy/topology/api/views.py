"""Topology API doors: thin views over energy.topology (services for writes, selectors for the graph).

- /api/energy/topology/nodes[/{id}]     CRUD (energy:read / energy:write)
- /api/energy/topology/edges[/{id}]     CRUD
- GET /api/energy/topology/nodes/graph?site=ID[&at=ISO]   the graph with live power and losses
- /api/energy/topology/settings[/{site}]   GET each site's settings; PUT, PATCH one site's
"""

from __future__ import annotations

from contextlib import contextmanager

import orjson
from django.db import IntegrityError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from energy.ingest.validation import parse_timestamp
from energy.models import Site
from energy.topology import selectors, services
from energy.topology.api import filters
from energy.topology.api import serializers as s
from energy.topology.models import DEFAULT_STALE_AFTER_SECONDS, Edge, Node
from joulepoint.tenancy.viewsets import OrganizationModelViewSet, OrganizationViewSet

ID_REGEX = "[0-9]{1,18}"
BIGINT_MAX = 2**63 - 1


@contextmanager
def _invalid_as_400():
    try:
        yield
    except services.TopologyInvalid as exc:
        error = ValidationError({field: [message] for field, message in exc.errors.items()})
        if exc.nodes:
            error.extra = {"nodes": exc.nodes}  # ids stay integers (joulepoint.platform.api merges `extra`)
        raise error from None
    except IntegrityError:
        # A concurrent write took the meter or the edge between the check and the insert.
        raise ValidationError({"detail": "This conflicts with a concurrent change; retry."}) from None


def _site_param(raw: str | None) -> int:
    if raw is None or raw == "":
        raise ValidationError({"site": ["is required (a site id)"]})
    if not raw.isdigit() or not 1 <= int(raw) <= BIGINT_MAX:
        raise ValidationError({"site": ["must be a site id (a positive integer)"]})
    return int(raw)


def _at_param(raw: str | None):
    if raw is None or raw == "":
        return None
    try:
        # A '+' of an offset arrives as a space when the caller did not URL-encode it.
        return parse_timestamp(raw.replace(" ", "+"))
    except ValueError as exc:
        raise ValidationError({"at": [str(exc)]}) from None


class GraphRenderer(JSONRenderer):
    """orjson for the graph document: thousands of nodes, where the stdlib encoder was a large
    share of the request (bench/topology.py)."""

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return orjson.dumps(data)


class NodeViewSet(OrganizationModelViewSet):
    """Nodes of the sites' energy graphs; a node may carry one meter of its site."""

    queryset = Node.objects.all()
    serializer_class = s.NodeSerializer
    scope_domain = "energy"
    filterset_class = filters.NodeFilter
    ordering_fields = ["id", "name", "kind"]
    ordering = ["id"]
    lookup_value_regex = ID_REGEX

    def perform_create(self, serializer) -> None:
        values = dict(serializer.validated_data)
        site = values.pop("site")
        with _invalid_as_400():
            serializer.instance = services.node_create(site=site, values=values)

    def perform_update(self, serializer) -> None:
        with _invalid_as_400():
            serializer.instance = services.node_update(node=serializer.instance, values=dict(serializer.validated_data))

    def perform_destroy(self, instance: Node) -> None:
        services.node_delete(node=instance)

    @extend_schema(
        parameters=[
            OpenApiParameter("site", OpenApiTypes.INT, OpenApiParameter.QUERY, required=True, description="Site id"),
            OpenApiParameter(
                "at", OpenApiTypes.DATETIME, OpenApiParameter.QUERY, description="Replay: the graph as of this instant"
            ),
        ],
        responses={
            200: s.GraphSerializer,
            400: OpenApiResponse(description="Missing or bad site or at, naming the parameter"),
            404: OpenApiResponse(description="No such site in this organization"),
        },
        summary="The site's energy graph with live power and losses",
        description="Nodes and edges of one site with each node's latest power, stale flag and losses, per-edge "
        "losses and site totals; `at` replays the graph from the latest readings at or before it (docs/topology.md).",
    )
    @action(
        detail=False,
        methods=["get"],
        url_path="graph",
        filterset_class=None,
        pagination_class=None,
        renderer_classes=[GraphRenderer],
    )
    def graph(self, request):
        site_id = _site_param(request.query_params.get("site"))
        at = _at_param(request.query_params.get("at"))
        document = selectors.topology_graph(organization_id=self.organization.pk, site_id=site_id, at=at)
        if document is None:
            raise NotFound("No such site.")
        return Response(document)


class EdgeViewSet(OrganizationModelViewSet):
    """Edges parent → child of the sites' energy graphs, kept a DAG."""

    queryset = Edge.objects.all()
    serializer_class = s.EdgeSerializer
    scope_domain = "energy"
    filterset_class = filters.EdgeFilter
    ordering_fields = ["id"]
    ordering = ["id"]
    lookup_value_regex = ID_REGEX

    def perform_create(self, serializer) -> None:
        values = dict(serializer.validated_data)
        parent, child = values.pop("parent"), values.pop("child")
        with _invalid_as_400():
            serializer.instance = services.edge_create(parent=parent, child=child, values=values)

    def perform_update(self, serializer) -> None:
        with _invalid_as_400():
            serializer.instance = services.edge_update(edge=serializer.instance, values=dict(serializer.validated_data))

    def perform_destroy(self, instance: Edge) -> None:
        services.edge_delete(edge=instance)


SETTINGS_ERRORS = {
    400: OpenApiResponse(description="Invalid body, or several parents forbidden while nodes have them (`nodes`)"),
    404: OpenApiResponse(description="No such site in this organization"),
}


class TopologySettingsViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Each site's topology settings (its own, or the defaults); the id in the path is the site's."""

    queryset = Site.objects.select_related("topology_settings")
    serializer_class = s.TopologySettingsSerializer
    scope_domain = "energy"
    filterset_class = filters.TopologySettingsFilter
    ordering_fields = ["id"]
    ordering = ["id"]
    lookup_value_regex = ID_REGEX

    def _set(self, request, *, partial: bool) -> Response:
        site = self.get_object()  # first: another tenant's site is a 404 whatever the body
        serializer = s.TopologySettingsInSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        if not partial:
            values = {"allow_multiple_parents": False, "stale_after_seconds": DEFAULT_STALE_AFTER_SECONDS, **values}
        with _invalid_as_400():
            services.topology_settings_set(site=site, values=values)
        return Response(s.TopologySettingsSerializer(self.get_queryset().get(pk=site.pk)).data)

    @extend_schema(
        request=s.TopologySettingsInSerializer,
        responses={200: s.TopologySettingsSerializer, **SETTINGS_ERRORS},
        summary="Replace a site's topology settings (omitted fields take their defaults)",
    )
    def update(self, request, *args, **kwargs):
        return self._set(request, partial=False)

    @extend_schema(
        request=s.TopologySettingsInSerializer,
        responses={200: s.TopologySettingsSerializer, **SETTINGS_ERRORS},
        summary="Change some of a site's topology settings",
    )
    def partial_update(self, request, *args, **kwargs):
        return self._set(request, partial=True)
