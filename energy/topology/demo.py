"""The demo depot's energy graph (`make run`): grid → transformer → main switchboard → three
feeders → PV, battery, two EV chargers and the depot load, built from the demo meters. The
second EV charger has no meter: the unmetered branch, whose share shows as `unmetered_w` at the
grid connection rather than as a loss. Cables carry resistances, so I²R losses move with the
simulator's phase currents."""

from __future__ import annotations

from energy.models import Meter, Site
from energy.topology import services
from energy.topology.models import Node

# (key, name, kind, meter kind or None, sign convention); the simulator reports PV as generation
# positive and everything else import positive (energy.simulator).
DEMO_NODES: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("grid", "Grid connection", Node.Kind.GRID_CONNECTION, Meter.Kind.GRID, "import_positive"),
    ("transformer", "Transformer 630 kVA", Node.Kind.TRANSFORMER, None, "import_positive"),
    ("main", "Main switchboard", Node.Kind.SWITCHBOARD, None, "import_positive"),
    ("feeder_pv", "Feeder 1: PV and storage", Node.Kind.FEEDER, None, "import_positive"),
    ("feeder_ev", "Feeder 2: EV bay", Node.Kind.FEEDER, None, "import_positive"),
    ("feeder_depot", "Feeder 3: depot building", Node.Kind.FEEDER, None, "import_positive"),
    ("pv", "Rooftop PV", Node.Kind.PV, Meter.Kind.PV, "generation_positive"),
    ("battery", "Battery storage", Node.Kind.BATTERY, Meter.Kind.BATTERY, "import_positive"),
    ("ev1", "EV charger 1", Node.Kind.EV_CHARGER, Meter.Kind.EV_CHARGER, "import_positive"),
    ("ev2", "EV charger 2 (unmetered)", Node.Kind.EV_CHARGER, None, "import_positive"),
    ("load", "Depot load", Node.Kind.LOAD, Meter.Kind.LOAD, "import_positive"),
)
# (parent, child, cable length m, resistance Ω per phase, loss factor)
DEMO_EDGES: tuple[tuple[str, str, float | None, float | None, float | None], ...] = (
    ("grid", "transformer", 15.0, None, 0.01),
    ("transformer", "main", 10.0, None, 0.002),
    ("main", "feeder_pv", 40.0, None, 0.004),
    ("main", "feeder_ev", 60.0, None, 0.006),
    ("main", "feeder_depot", 25.0, None, 0.003),
    ("feeder_pv", "pv", 35.0, 0.02, None),
    ("feeder_pv", "battery", 12.0, 0.01, None),
    ("feeder_ev", "ev1", 20.0, 0.03, None),
    ("feeder_ev", "ev2", 22.0, 0.03, None),
    ("feeder_depot", "load", 30.0, 0.015, None),
)


def topology_demo_ensure(*, site: Site, meters: dict[str, Meter]) -> dict:
    """Build the demo graph on `site` unless it has nodes already (a rerun, or a graph the user
    edited: both are kept). Returns {"nodes": count, "edges": count} for var/demo.json. Runs
    inside demo_ensure's transaction; tenant: the site's organization."""
    if not Node.objects.filter(site=site).exists():
        nodes: dict[str, Node] = {}
        for key, name, kind, meter_kind, sign in DEMO_NODES:
            values = {"name": name, "kind": kind, "sign_convention": sign, "meter": meters.get(meter_kind)}
            nodes[key] = services.node_create(site=site, values=values)
        for parent, child, length, resistance, factor in DEMO_EDGES:
            values = {"cable_length_m": length, "resistance_ohm_per_phase": resistance, "loss_factor": factor}
            services.edge_create(parent=nodes[parent], child=nodes[child], values=values)
    return {"nodes": Node.objects.filter(site=site).count(), "edges": site.topology_edges.count()}
