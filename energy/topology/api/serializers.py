"""Topology API shapes. Shapes and ranges only; the graph rules (DAG, one site, one node per
meter) live in energy.topology.services, one place for the API, the admin and the demo."""

from __future__ import annotations

from rest_framework import serializers

from energy.models import Meter, Site
from energy.power_quality.api.serializers import FiniteFloatField
from energy.topology.models import DEFAULT_STALE_AFTER_SECONDS, Edge, Node, TopologySettings
from energy.topology.services import STALE_AFTER_MAX_SECONDS
from joulepoint.tenancy.viewsets import TenantRelatedField


def _optional_float(help_text: str, **kwargs) -> FiniteFloatField:
    return FiniteFloatField(required=False, allow_null=True, help_text=help_text, **kwargs)


class NodeSerializer(serializers.ModelSerializer):
    site = TenantRelatedField(queryset=Site.objects.all())
    meter = TenantRelatedField(queryset=Meter.objects.all(), required=False, allow_null=True)
    x = _optional_float("Optional 3D position")
    y = _optional_float("Optional 3D position")
    z = _optional_float("Optional 3D position")

    class Meta:
        model = Node
        fields = ["id", "site", "name", "kind", "meter", "sign_convention", "x", "y", "z", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class EdgeSerializer(serializers.ModelSerializer):
    parent = TenantRelatedField(queryset=Node.objects.all())
    child = TenantRelatedField(queryset=Node.objects.all())
    cable_length_m = _optional_float("Metres, ≥ 0", min_value=0)
    resistance_ohm_per_phase = _optional_float("Ω per phase conductor, ≥ 0 (I²R losses)", min_value=0)
    loss_factor = _optional_float("Share of the carried power lost, 0-1", min_value=0, max_value=1)

    class Meta:
        model = Edge
        fields = [
            "id", "site", "parent", "child", "cable_length_m", "resistance_ohm_per_phase", "loss_factor", "created_at",
        ]  # fmt: skip
        read_only_fields = ["id", "site", "created_at"]


class TopologySettingsInSerializer(serializers.Serializer):
    """PUT replaces both (an omitted one takes its default); PATCH changes the ones given."""

    allow_multiple_parents = serializers.BooleanField(
        required=False, help_text="Allow a node under several parents (a meshed or ring-fed site); default false"
    )
    stale_after_seconds = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=STALE_AFTER_MAX_SECONDS,
        help_text=f"A node's reading older than this is stale; default {DEFAULT_STALE_AFTER_SECONDS}",
    )


class TopologySettingsSerializer(serializers.Serializer):
    """A site's effective topology settings: its own row, or the defaults (`is_default`)."""

    site_id = serializers.IntegerField(source="pk")
    allow_multiple_parents = serializers.BooleanField()
    stale_after_seconds = serializers.IntegerField()
    is_default = serializers.BooleanField(help_text="The site has no settings of its own: these are the defaults")

    def to_representation(self, site) -> dict:
        found: TopologySettings | None = getattr(site, "topology_settings", None)
        effective = found if found is not None else TopologySettings()
        return {
            "site_id": site.pk,
            "allow_multiple_parents": effective.allow_multiple_parents,
            "stale_after_seconds": effective.stale_after_seconds,
            "is_default": found is None,
        }


# The graph document, for the OpenAPI schema (the view answers the selector's dict as is).
class GraphReadingSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField()
    age_seconds = serializers.FloatField(help_text="Seconds before `at` (or now)")
    total_power = serializers.FloatField(allow_null=True, help_text="W, as the meter reported it")
    current_a = serializers.FloatField(allow_null=True)
    current_b = serializers.FloatField(allow_null=True)
    current_c = serializers.FloatField(allow_null=True)


class GraphPositionSerializer(serializers.Serializer):
    x = serializers.FloatField()
    y = serializers.FloatField(allow_null=True)
    z = serializers.FloatField(allow_null=True)


class GraphNodeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Node.Kind.choices)
    meter_id = serializers.IntegerField(allow_null=True)
    sign_convention = serializers.ChoiceField(choices=Node.SignConvention.choices)
    position = GraphPositionSerializer(allow_null=True)
    parents = serializers.ListField(child=serializers.IntegerField())
    power_w = serializers.FloatField(allow_null=True, help_text="W into the node, import positive")
    derived = serializers.BooleanField(help_text="Unmetered: the sum of its children")
    stale = serializers.BooleanField(help_text="The reading is older than stale_after_seconds")
    reading = GraphReadingSerializer(allow_null=True)
    losses_w = serializers.FloatField(allow_null=True, help_text="Measured input minus measured children")
    unmetered_w = serializers.FloatField(allow_null=True, help_text="Input not accounted for by metered children")


class GraphEdgeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    parent = serializers.IntegerField()
    child = serializers.IntegerField()
    cable_length_m = serializers.FloatField(allow_null=True)
    resistance_ohm_per_phase = serializers.FloatField(allow_null=True)
    loss_factor = serializers.FloatField(allow_null=True)
    power_w = serializers.FloatField(allow_null=True)
    losses_w = serializers.FloatField(allow_null=True)
    loss_method = serializers.ChoiceField(choices=["i2r", "loss_factor"], allow_null=True)


class GraphTotalsSerializer(serializers.Serializer):
    import_w = serializers.FloatField()
    export_w = serializers.FloatField()
    generation_w = serializers.FloatField()
    consumption_w = serializers.FloatField()
    losses_w = serializers.FloatField()
    unmetered_w = serializers.FloatField()
    edge_losses_w = serializers.FloatField(help_text="Estimated cable losses (I²R or loss factor)")
    stale_nodes = serializers.IntegerField()


class GraphSiteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class GraphSerializer(serializers.Serializer):
    site = GraphSiteSerializer()
    at = serializers.DateTimeField(allow_null=True)
    computed_at = serializers.DateTimeField()
    stale_after_seconds = serializers.IntegerField()
    nodes = GraphNodeSerializer(many=True)
    edges = GraphEdgeSerializer(many=True)
    totals = GraphTotalsSerializer()
