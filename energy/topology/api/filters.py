"""Filters of the topology lists."""

from __future__ import annotations

import django_filters

from energy.models import Site
from energy.topology.models import Edge, Node
from joulepoint.tenancy.filters import IdFilter


class NodeFilter(django_filters.FilterSet):
    site = IdFilter(field_name="site_id")
    meter = IdFilter(field_name="meter_id")
    kind = django_filters.ChoiceFilter(choices=Node.Kind.choices)

    class Meta:
        model = Node
        fields = ["site", "meter", "kind"]


class EdgeFilter(django_filters.FilterSet):
    site = IdFilter(field_name="site_id")
    parent = IdFilter(field_name="parent_id")
    child = IdFilter(field_name="child_id")

    class Meta:
        model = Edge
        fields = ["site", "parent", "child"]


class TopologySettingsFilter(django_filters.FilterSet):
    site = IdFilter(field_name="id")

    class Meta:
        model = Site
        fields = ["site"]
