"""The live topology overlay a dashboard socket holds per watched site (energy.live.consumers):
the site's structure and the latest sample of each of its meters, advanced by the readings
frames the socket receives anyway, and recomputed with the same function as the graph endpoint
(energy.topology.flows.graph_compute). Only loading it reads the database."""

from __future__ import annotations

from datetime import datetime

from energy.ingest.validation import parse_timestamp
from energy.topology.flows import PHASES, Sample, Structure, graph_compute
from energy.topology.selectors import latest_samples, topology_structure

# Fields of a node or an edge that readings change; an update frame carries only these.
NODE_LIVE_FIELDS = ("id", "power_w", "derived", "stale", "reading", "losses_w", "unmetered_w")
EDGE_LIVE_FIELDS = ("id", "power_w", "losses_w", "loss_method")


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class TopologyOverlay:
    """One site's graph with live samples. Not shared between sockets; not thread-safe."""

    def __init__(self, structure: Structure, samples: dict[int, Sample], *, organization_id: int) -> None:
        self.organization_id = organization_id
        self.structure = structure
        self.samples = samples
        self.meter_ids = structure.meter_ids

    @property
    def site_id(self) -> int:
        return self.structure.site_id

    def apply(self, readings: list[dict]) -> bool:
        """Take the readings of a live frame (docs/live.md's `readings`); True when a node's
        sample moved forward. A reading older than the sample held is ignored (a late batch)."""
        changed = False
        for reading in readings:
            meter_id = reading.get("meter_id")
            if meter_id not in self.meter_ids:
                continue
            try:
                ts = parse_timestamp(reading.get("timestamp"))
            except ValueError:
                continue
            held = self.samples.get(meter_id)
            if held is not None and held.ts > ts:
                continue
            self.samples[meter_id] = Sample(
                ts, _number(reading.get("total_power")), *(_number(reading.get(phase)) for phase in PHASES)
            )
            changed = True
        return changed

    def document(self, *, now: datetime) -> dict:
        """The whole graph, as GET /api/energy/topology/nodes/graph answers it."""
        return graph_compute(structure=self.structure, samples=self.samples, now=now, at=None)

    def next_stale_in(self, *, now: datetime) -> float | None:
        """Seconds until the next fresh sample turns stale (its node greys without any reading
        arriving), or None when every sample already is stale or there are none."""
        limit = self.structure.stale_after_seconds
        ages = [(now - sample.ts).total_seconds() for sample in self.samples.values()]
        left = [limit - age for age in ages if age <= limit]
        return min(left) if left else None

    def update(self, *, now: datetime) -> dict:
        """What readings change: per node and edge only the live fields, and the totals."""
        document = self.document(now=now)
        return {
            "computed_at": document["computed_at"],
            "nodes": [{key: node[key] for key in NODE_LIVE_FIELDS} for node in document["nodes"]],
            "edges": [{key: edge[key] for key in EDGE_LIVE_FIELDS} for edge in document["edges"]],
            "totals": document["totals"],
        }


def topology_overlay_load(*, organization_ids: list[int], site_id: int) -> TopologyOverlay | None:
    """The overlay of a site of one of these organizations, or None (missing or another
    tenant's, indistinguishably). Reads the structure and the latest samples (one query)."""
    for organization_id in organization_ids:
        structure = topology_structure(organization_id=organization_id, site_id=site_id)
        if structure is not None:
            samples = latest_samples(organization_id=organization_id, site_id=site_id) if structure.meter_ids else {}
            return TopologyOverlay(structure, samples, organization_id=organization_id)
    return None
