"""Topology rows: a site's nodes, the edges between them (parent → child, a DAG) and the site's
topology settings. Writes go through energy.topology.services, which keeps the graph a DAG;
docs/topology.md explains the model and the power and loss conventions.

Imported by energy/models/__init__.py, so these are models of the `energy` app.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from energy.models.devices import Meter
from energy.models.sites import Site
from joulepoint.tenancy.models import Organization, TenantModel

# A reading older than this (seconds) is shown but marked stale, and losses are not computed
# from it: a five-minute-old figure next to fresh ones would report the difference as a loss.
DEFAULT_STALE_AFTER_SECONDS = 300


class TopologySettings(TenantModel):
    """How a site's graph may be shaped; a site without a row uses the defaults (a tree: one
    parent per node, readings stale after DEFAULT_STALE_AFTER_SECONDS). Tenant: `organization`
    (the site's)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="topology_settings")
    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="topology_settings")
    allow_multiple_parents = models.BooleanField(
        default=False, help_text="Allow a node to hang under several parents (a meshed or ring-fed site)"
    )
    stale_after_seconds = models.PositiveIntegerField(
        default=DEFAULT_STALE_AFTER_SECONDS, help_text="A node's reading older than this is stale"
    )

    class Meta:
        verbose_name = "topology settings"
        verbose_name_plural = "topology settings"

    def __str__(self) -> str:
        return f"Topology settings of site {self.site_id}"


class Node(TenantModel):
    """A point of a site's energy graph. Optionally linked to one meter (a meter is on one node
    at most: the one-to-one column enforces it) whose `total_power` is the power flowing into
    the node from its parents, read with the node's sign convention. Tenant: `organization`
    (the site's, repeated so `for_org` needs no join)."""

    class Kind(models.TextChoices):
        GRID_CONNECTION = "grid_connection", "Grid connection"
        TRANSFORMER = "transformer", "Transformer"
        SWITCHBOARD = "switchboard", "Switchboard"
        FEEDER = "feeder", "Feeder"
        METER_POINT = "meter_point", "Meter point"
        EV_CHARGER = "ev_charger", "EV charger"
        PV = "pv", "PV"
        BATTERY = "battery", "Battery"
        LOAD = "load", "Load"

    class SignConvention(models.TextChoices):
        IMPORT_POSITIVE = "import_positive", "Import positive (power into the node is positive)"
        GENERATION_POSITIVE = "generation_positive", "Generation positive (power out of the node is positive)"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="topology_nodes")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="topology_nodes")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    meter = models.OneToOneField(Meter, on_delete=models.SET_NULL, null=True, blank=True, related_name="topology_node")
    sign_convention = models.CharField(
        max_length=20, choices=SignConvention.choices, default=SignConvention.IMPORT_POSITIVE
    )
    x = models.FloatField(null=True, blank=True, help_text="Optional 3D position (any unit; the view scales it)")
    y = models.FloatField(null=True, blank=True)
    z = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "topology node"
        indexes = [models.Index(fields=["site", "id"], name="topology_node_site_idx")]

    def __str__(self) -> str:
        return self.name


class Edge(TenantModel):
    """Power flows parent → child. Both nodes are of the edge's site. A cable may carry its
    length, its resistance per phase (Ω, for I²R losses from the child's phase currents) or a
    loss factor (a share of the power carried). Tenant: `organization`."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="topology_edges")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="topology_edges")
    parent = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="child_edges")
    child = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="parent_edges")
    cable_length_m = models.FloatField(null=True, blank=True, help_text="Metres")
    resistance_ohm_per_phase = models.FloatField(null=True, blank=True, help_text="Ω per phase conductor")
    loss_factor = models.FloatField(null=True, blank=True, help_text="Share of the carried power lost, 0-1")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "topology edge"
        constraints = [
            models.UniqueConstraint(fields=["parent", "child"], name="uniq_topology_edge"),
            models.CheckConstraint(condition=~Q(parent=F("child")), name="topology_edge_no_self_loop"),
            models.CheckConstraint(
                condition=Q(resistance_ohm_per_phase__isnull=True) | Q(resistance_ohm_per_phase__gte=0),
                name="topology_edge_resistance_gte_0",
            ),
            models.CheckConstraint(
                condition=Q(loss_factor__isnull=True) | (Q(loss_factor__gte=0) & Q(loss_factor__lte=1)),
                name="topology_edge_loss_factor_0_1",
            ),
            models.CheckConstraint(
                condition=Q(cable_length_m__isnull=True) | Q(cable_length_m__gte=0),
                name="topology_edge_length_gte_0",
            ),
        ]
        indexes = [models.Index(fields=["site", "id"], name="topology_edge_site_idx")]

    def __str__(self) -> str:
        return f"{self.parent_id} → {self.child_id}"


class SiteTopology(Site):
    """A site seen as its energy graph: the admin's page per site with the node and edge editors
    (a proxy: no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = "site topology"
        verbose_name_plural = "site topologies"
