"""Power and losses over a site's graph, from the latest sample of each node's meter: pure
functions, shared by the graph endpoint (energy.topology.selectors) and the live overlay
(energy.topology.overlay), so both answer the same numbers for the same readings.

Conventions (docs/topology.md):
- A node's `power_w` is the power flowing into it from its parents (W, import positive): a
  meter read with `generation_positive` is negated. A PV node generating 5 kW has -5000 W.
- A reading older than the site's `stale_after_seconds` (at the request's time) is shown with
  `stale: true` but is not a measurement for losses.
- An unmetered node whose every child is known gets the sum of its children (`derived: true`).
- Losses of a metered node: its measured input minus the measured power of what hangs below it
  (descending through unmetered nodes). When a child has no fresh measurement (an unmetered
  leaf, a stale meter, a node with several parents whose split is unknown) the difference is
  reported as `unmetered_w`, never as loss.
- Edges: I²R from the child meter's phase currents and the edge's resistance per phase, else
  the loss factor times the power carried; unknown otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import NamedTuple

from joulepoint.platform.timefmt import isoz

PHASES = ("current_a", "current_b", "current_c")
SOURCE_KINDS = frozenset({"grid_connection"})
END_KINDS = frozenset({"load", "ev_charger", "pv", "battery"})


# Named tuples rather than frozen dataclasses: a 2,000-node site builds thousands of them per
# request, and a tuple is several times cheaper to make.
class NodeInfo(NamedTuple):
    id: int
    name: str
    kind: str
    meter_id: int | None
    sign_convention: str
    x: float | None = None
    y: float | None = None
    z: float | None = None


class EdgeInfo(NamedTuple):
    id: int
    parent: int
    child: int
    cable_length_m: float | None = None
    resistance_ohm_per_phase: float | None = None
    loss_factor: float | None = None


class Sample(NamedTuple):
    """The latest reading of a meter: what the graph needs of it."""

    ts: datetime
    total_power: float | None
    current_a: float | None = None
    current_b: float | None = None
    current_c: float | None = None


@dataclass
class Structure:
    """A site's graph as stored, without readings."""

    site_id: int
    site_name: str
    nodes: list[NodeInfo]
    edges: list[EdgeInfo]
    stale_after_seconds: int

    @cached_property
    def adjacency(self) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
        """(node → its children, node → its parents), in edge order; built once per structure,
        which a process keeps across requests (energy.topology.selectors). Read only."""
        children: dict[int, list[int]] = defaultdict(list)
        parents: dict[int, list[int]] = defaultdict(list)
        for edge in self.edges:
            children[edge.parent].append(edge.child)
            parents[edge.child].append(edge.parent)
        # Plain dicts: a look-up of a missing key must not insert into a structure others read.
        return dict(children), dict(parents)

    @cached_property  # a cached structure serves many requests (energy.topology.selectors)
    def meter_ids(self) -> set[int]:
        return {node.meter_id for node in self.nodes if node.meter_id is not None}


def _round(value: float | None) -> float | None:
    return value if value is None else round(value, 3)


class _Walk:
    """One evaluation of a structure against samples at a reference time."""

    def __init__(self, structure: Structure, samples: dict[int, Sample], ref: datetime) -> None:
        self.structure = structure
        self.samples = samples
        self.ref = ref
        self.children, self.parents = structure.adjacency
        self.measured: dict[int, float | None] = {}
        self.sample_of: dict[int, Sample | None] = {}
        self.stale: dict[int, bool] = {}
        self.age: dict[int, float] = {}  # seconds from the node's sample to ref
        for node in structure.nodes:
            sample = samples.get(node.meter_id) if node.meter_id is not None else None
            self.sample_of[node.id] = sample
            stale = False
            if sample is not None:
                age = self.age[node.id] = (ref - sample.ts).total_seconds()
                stale = age > structure.stale_after_seconds
            self.stale[node.id] = stale
            if sample is None or sample.total_power is None or stale:
                self.measured[node.id] = None
            else:
                sign = -1.0 if node.sign_convention == "generation_positive" else 1.0
                self.measured[node.id] = sign * sample.total_power
        self._below: dict[int, tuple[float, bool]] = {}
        self._power: dict[int, tuple[float | None, bool]] = {}

    def below(self, node_id: int) -> tuple[float, bool]:
        """(measured power of what hangs below node_id, whether any of it is unknown)."""
        if node_id in self._below:
            return self._below[node_id]
        total, unknown = 0.0, False
        for child in self.children.get(node_id, ()):
            if len(self.parents[child]) > 1:
                unknown = True  # how its power splits among its parents is not measured
            elif self.measured[child] is not None:
                total += self.measured[child]
            elif self.children.get(child):
                sub, sub_unknown = self.below(child)
                total += sub
                unknown = unknown or sub_unknown
            else:
                unknown = True
        self._below[node_id] = (total, unknown)
        return total, unknown

    def power(self, node_id: int) -> tuple[float | None, bool]:
        """(power into the node, whether it is derived from its children)."""
        found = self._power.get(node_id)
        if found is None:
            if self.measured[node_id] is not None:
                found = (self.measured[node_id], False)
            elif not self.children.get(node_id):
                found = (None, False)
            else:
                total, unknown = self.below(node_id)
                found = (None, False) if unknown else (round(total, 3), True)
            self._power[node_id] = found
        return found


def _edge_loss(
    edge: EdgeInfo, sample: Sample | None, fresh: bool, power: float | None
) -> tuple[float | None, str | None]:
    if edge.resistance_ohm_per_phase is not None and sample is not None and fresh:
        currents = [i for i in (sample.current_a, sample.current_b, sample.current_c) if i is not None]
        if currents:
            return edge.resistance_ohm_per_phase * sum(i * i for i in currents), "i2r"
    if edge.loss_factor is not None and power is not None:
        return edge.loss_factor * abs(power), "loss_factor"
    return None, None


def graph_compute(*, structure: Structure, samples: dict[int, Sample], now: datetime, at: datetime | None) -> dict:
    """The graph document: {site, at, stale_after_seconds, nodes, edges, totals}. `samples` maps
    meter id → its latest sample at or before `at` (or now)."""
    ref = at or now
    walk = _Walk(structure, samples, ref)
    # The loops below run once per node and edge of sites with thousands of them, inside a
    # request (bench/topology.py): locals instead of attribute look-ups, each node's dicts
    # written out rather than merged, and one ISO string per distinct timestamp (the samples
    # of one batch share theirs).
    stamps: dict[datetime, str] = {}
    measured, stale_of, sample_of, age_of = walk.measured, walk.stale, walk.sample_of, walk.age
    children, parents, power_of, below_of = walk.children, walk.parents, walk.power, walk.below
    no_parents: list[int] = []  # shared by every root; serialized, never mutated
    nodes = []
    import_w = export_w = generation_w = consumption_w = 0.0
    losses_total = unmetered_total = 0.0
    for node in structure.nodes:
        node_id = node.id
        power, derived = power_of(node_id)
        sample = sample_of[node_id]
        losses = unmetered = None
        input_w = measured[node_id]
        if input_w is not None and children.get(node_id):
            below, unknown = below_of(node_id)
            if unknown:
                unmetered = input_w - below
                unmetered_total += unmetered
            else:
                losses = input_w - below
                losses_total += losses
        if power is not None:
            if node.kind in SOURCE_KINDS:
                if power >= 0:
                    import_w += power
                else:
                    export_w -= power
            elif node.kind in END_KINDS:
                if power >= 0:
                    consumption_w += power
                else:
                    generation_w -= power
        if sample is None:
            reading = None
        else:
            ts = sample.ts
            stamp = stamps.get(ts)
            if stamp is None:
                stamp = stamps[ts] = isoz(ts)
            reading = {
                "timestamp": stamp,
                "age_seconds": round(age_of[node_id], 3),
                "total_power": sample.total_power,
                "current_a": sample.current_a,
                "current_b": sample.current_b,
                "current_c": sample.current_c,
            }
        nodes.append(
            {
                "id": node_id,
                "name": node.name,
                "kind": node.kind,
                "meter_id": node.meter_id,
                "sign_convention": node.sign_convention,
                "position": None if node.x is None else {"x": node.x, "y": node.y, "z": node.z},
                "parents": parents.get(node_id, no_parents),
                "power_w": power,
                "derived": derived,
                "stale": stale_of[node_id],
                "reading": reading,
                "losses_w": None if losses is None else round(losses, 3),
                "unmetered_w": None if unmetered is None else round(unmetered, 3),
            }
        )
    totals = {"import_w": import_w, "export_w": export_w, "generation_w": generation_w, "consumption_w": consumption_w}
    edges, edge_losses_total = [], 0.0
    for edge in structure.edges:
        child = edge.child
        power = power_of(child)[0] if len(parents[child]) == 1 else None
        loss, method = _edge_loss(edge, sample_of.get(child), measured.get(child) is not None, power)
        if loss is not None:
            edge_losses_total += loss
        edges.append(
            {
                "id": edge.id,
                "parent": edge.parent,
                "child": child,
                "cable_length_m": edge.cable_length_m,
                "resistance_ohm_per_phase": edge.resistance_ohm_per_phase,
                "loss_factor": edge.loss_factor,
                "power_w": power,
                "losses_w": None if loss is None else round(loss, 3),
                "loss_method": method,
            }
        )
    return {
        "site": {"id": structure.site_id, "name": structure.site_name},
        "at": isoz(at) if at is not None else None,
        "computed_at": isoz(now),
        "stale_after_seconds": structure.stale_after_seconds,
        "nodes": nodes,
        "edges": edges,
        "totals": {
            **{key: _round(value) for key, value in totals.items()},
            "losses_w": _round(losses_total),
            "unmetered_w": _round(unmetered_total),
            "edge_losses_w": _round(edge_losses_total),
            "stale_nodes": sum(1 for stale in walk.stale.values() if stale),
        },
    }
