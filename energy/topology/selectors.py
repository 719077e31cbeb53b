"""Reads of a site's topology: its structure, the latest sample of each node's meter (one
index-backed query per site), and the graph document of GET /api/energy/topology/nodes/graph.
Every query is scoped to the caller's organization."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from energy.models.readings import Reading
from energy.models.sites import Site
from energy.topology.flows import EdgeInfo, NodeInfo, Sample, Structure, graph_compute
from energy.topology.models import DEFAULT_STALE_AFTER_SECONDS, Edge, Node


def _site_row(organization_id: int, site_id: int) -> tuple[str, int] | None:
    """(site name, stale_after_seconds) in one query, or None when not this organization's."""
    site = (
        Site.objects.for_org(organization_id)
        .filter(pk=site_id)
        .values_list("name", "topology_settings__stale_after_seconds")
        .first()
    )
    if site is None:
        return None
    name, stale_after = site
    return name, stale_after if stale_after is not None else DEFAULT_STALE_AFTER_SECONDS


def _edges(organization_id: int, site_id: int) -> list[EdgeInfo]:
    return [
        EdgeInfo(*row)
        for row in Edge.objects.for_org(organization_id)
        .filter(site_id=site_id)
        .order_by("id")
        .values_list("id", "parent_id", "child_id", "cable_length_m", "resistance_ohm_per_phase", "loss_factor")
    ]


def topology_structure(*, organization_id: int, site_id: int) -> Structure | None:
    """The site's nodes and edges, or None when the site is not of this organization."""
    site = _site_row(organization_id, site_id)
    if site is None:
        return None
    nodes = [
        NodeInfo(*row)
        for row in Node.objects.for_org(organization_id)
        .filter(site_id=site_id)
        .order_by("id")
        .values_list("id", "name", "kind", "meter_id", "sign_convention", "x", "y", "z")
    ]
    return Structure(
        site_id=site_id,
        site_name=site[0],
        nodes=nodes,
        edges=_edges(organization_id, site_id),
        stale_after_seconds=site[1],
    )


# PostgreSQL: one backward probe of the (meter, ts) unique index per metered node, the row read
# in the same probe (LATERAL). The ORM has no LATERAL join; its portable form below needs a
# second probe per meter (by primary key), which bench/topology.py measured at about twice the
# time on a 1,000-meter site. Tenant: the nodes are the organization's; a node's meter is of
# the node's site (energy.topology.services.node_check).
LATEST_SAMPLES_PG = """
SELECT n.meter_id, r.ts, r.total_power, r.current_a, r.current_b, r.current_c
FROM energy_node n
CROSS JOIN LATERAL (
    SELECT ts, total_power, current_a, current_b, current_c FROM energy_reading
    WHERE meter_id = n.meter_id {at_condition}
    ORDER BY ts DESC LIMIT 1
) r
WHERE n.organization_id = %(organization_id)s AND n.site_id = %(site_id)s AND n.meter_id IS NOT NULL
"""


# The graph endpoint on PostgreSQL: the nodes and each metered node's latest sample in one
# query (the LATERAL probe above as a LEFT JOIN), one round trip and one 2,000-row transfer
# fewer than reading the structure and the samples apart (bench/topology.py).
NODES_WITH_SAMPLES_PG = """
SELECT n.id, n.name, n.kind, n.meter_id, n.sign_convention, n.x, n.y, n.z,
       r.ts, r.total_power, r.current_a, r.current_b, r.current_c
FROM energy_node n
LEFT JOIN LATERAL (
    SELECT ts, total_power, current_a, current_b, current_c FROM energy_reading
    WHERE meter_id = n.meter_id {at_condition}
    ORDER BY ts DESC LIMIT 1
) r ON n.meter_id IS NOT NULL
WHERE n.organization_id = %(organization_id)s AND n.site_id = %(site_id)s
ORDER BY n.id
"""


def _nodes_with_samples_pg(
    organization_id: int, site_id: int, at: datetime | None
) -> tuple[list[NodeInfo], dict[int, Sample]]:
    query = NODES_WITH_SAMPLES_PG.format(at_condition="AND ts <= %(at)s" if at is not None else "")
    nodes, samples = [], {}
    with connection.cursor() as cursor:
        cursor.execute(query, {"at": at, "organization_id": organization_id, "site_id": site_id})
        for row in cursor.fetchall():
            nodes.append(NodeInfo(*row[:8]))
            if row[8] is not None:
                samples[row[3]] = Sample(*row[8:])
    return nodes, samples


def latest_samples(*, organization_id: int, site_id: int, at: datetime | None = None) -> dict[int, Sample]:
    """meter id → its latest reading at or before `at` (default: the latest), for the metered
    nodes of the site. One query, index-backed: each meter's latest reading is found by a
    backward scan of the (meter, ts) unique index (LIMIT 1), never by reading its history."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # The bound goes into the index condition (meter_id = … AND ts <= …), so a replay far
            # back starts its backward scan at `at` instead of filtering newer rows.
            query = LATEST_SAMPLES_PG.format(at_condition="AND ts <= %(at)s" if at is not None else "")
            cursor.execute(query, {"at": at, "organization_id": organization_id, "site_id": site_id})
            return {meter_id: Sample(*values) for meter_id, *values in cursor.fetchall()}
    latest = Reading.objects.filter(meter_id=OuterRef("meter_id"))
    if at is not None:
        latest = latest.filter(ts__lte=at)
    latest_ids = (
        Node.objects.for_org(organization_id)
        .filter(site_id=site_id, meter__isnull=False)
        .annotate(latest_id=Subquery(latest.order_by("-ts").values("pk")[:1]))
        .values("latest_id")
    )
    rows = (
        Reading.objects.filter(pk__in=latest_ids)
        .order_by()
        .values_list("meter_id", "ts", "total_power", "current_a", "current_b", "current_c")
    )
    return {meter_id: Sample(*values) for meter_id, *values in rows}


# The per-process structure cache. A site's structure (nodes, edges, settings, name) changes
# rarely and is most of what a graph request read and built (2,000 nodes: two thirds of its
# time, bench/topology.py); its readings change all the time. A structure is kept under its
# site's version token, which every structure write replaces (energy.topology.services.
# topology_version_bump: at the write and again at its commit) in the shared cache, so every
# process drops its copy at the next request. A request then reads the token (one cache get)
# and the latest samples (one query), and computes.
VERSION_KEY = "topology:version:{site_id}"
# A token lives this long, so a change whose new token could not be written (Redis unreachable
# for a moment) reaches every process within it; an expired token costs each process one read
# of the structure.
VERSION_TTL_SECONDS = 300
STRUCTURES_MAX = 64
_structures: OrderedDict[tuple[int, int], tuple[str, Structure]] = OrderedDict()
_structures_lock = threading.Lock()


def topology_version(site_id: int) -> str | None:
    """The site's structure version token (made on first use), or None when the cache cannot be
    read (the caller then reads the structure from the database: never a stale one)."""
    key = VERSION_KEY.format(site_id=int(site_id))
    try:
        token = cache.get(key)
        if token is None:
            token = uuid.uuid4().hex
            if not cache.add(key, token, timeout=VERSION_TTL_SECONDS):
                token = cache.get(key)
    except Exception:  # an unreachable cache costs the cached structure, not the answer
        return None
    return token


def _structure_cached(organization_id: int, site_id: int) -> Structure | None:
    """topology_structure through the per-process cache; None when not this organization's."""
    token = topology_version(site_id) if settings.TOPOLOGY_STRUCTURE_CACHE else None
    if token is None:
        return topology_structure(organization_id=organization_id, site_id=site_id)
    key = (organization_id, site_id)
    with _structures_lock:
        held = _structures.get(key)
        if held is not None and held[0] == token:
            _structures.move_to_end(key)
            return held[1]
    structure = topology_structure(organization_id=organization_id, site_id=site_id)
    if structure is not None:
        with _structures_lock:
            _structures[key] = (token, structure)
            _structures.move_to_end(key)
            while len(_structures) > STRUCTURES_MAX:
                _structures.popitem(last=False)
    return structure


def topology_graph(
    *, organization_id: int, site_id: int, at: datetime | None = None, now: datetime | None = None
) -> dict | None:
    """The graph document of a site (energy.topology.flows.graph_compute), or None when the
    site is not of this organization (the caller answers 404). A site without nodes gives
    empty lists and zero totals. The structure comes from the per-process cache when its
    version is current; the readings are always read."""
    structure = _structure_cached(organization_id, site_id)
    if structure is None:
        return None
    samples = latest_samples(organization_id=organization_id, site_id=site_id, at=at) if structure.meter_ids else {}
    return graph_compute(structure=structure, samples=samples, now=now or timezone.now(), at=at)


def topology_graph_uncached(
    *, organization_id: int, site_id: int, at: datetime | None = None, now: datetime | None = None
) -> dict | None:
    """topology_graph reading the structure from the database (bench/topology.py's baseline)."""
    if connection.vendor != "postgresql":
        structure = topology_structure(organization_id=organization_id, site_id=site_id)
        if structure is None:
            return None
        samples = latest_samples(organization_id=organization_id, site_id=site_id, at=at) if structure.meter_ids else {}
    else:
        site = _site_row(organization_id, site_id)
        if site is None:
            return None
        nodes, samples = _nodes_with_samples_pg(organization_id, site_id, at)
        structure = Structure(
            site_id=site_id,
            site_name=site[0],
            nodes=nodes,
            edges=_edges(organization_id, site_id),
            stale_after_seconds=site[1],
        )
    return graph_compute(structure=structure, samples=samples, now=now or timezone.now(), at=at)
