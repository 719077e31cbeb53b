"""Power and losses over a graph, hand-computed (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from energy.topology.flows import EdgeInfo, NodeInfo, Sample, Structure, graph_compute

NOW = datetime(2025, 10, 16, 10, 1, tzinfo=UTC)
FRESH = NOW - timedelta(seconds=60)


def _structure(nodes, edges) -> Structure:
    return Structure(site_id=1, site_name="Site", nodes=nodes, edges=edges, stale_after_seconds=300)


def _node(id_, kind="load", meter=None, sign="import_positive"):
    return NodeInfo(id=id_, name=f"n{id_}", kind=kind, meter_id=meter, sign_convention=sign)


def _by_id(document, key="nodes"):
    return {row["id"]: row for row in document[key]}


def test_an_unmetered_node_with_metered_children_is_derived_and_the_loss_is_its_parents():
    structure = _structure(
        [_node(1, "grid_connection", meter=10), _node(2, "switchboard"), _node(3, meter=30), _node(4, meter=40)],
        [EdgeInfo(1, 1, 2), EdgeInfo(2, 2, 3), EdgeInfo(3, 2, 4)],
    )
    samples = {10: Sample(FRESH, 1000.0), 30: Sample(FRESH, 400.0), 40: Sample(FRESH, 500.0)}
    document = graph_compute(structure=structure, samples=samples, now=NOW, at=None)
    nodes = _by_id(document)
    assert nodes[2]["power_w"] == 900.0 and nodes[2]["derived"] is True
    assert nodes[1]["losses_w"] == 100.0 and nodes[1]["unmetered_w"] is None
    assert document["totals"]["import_w"] == 1000.0
    assert document["totals"]["consumption_w"] == 900.0
    assert document["totals"]["losses_w"] == 100.0


def test_a_child_with_two_parents_makes_the_remainder_unmetered():
    structure = _structure(
        [_node(1, "switchboard", meter=10), _node(2, "switchboard", meter=20), _node(3, meter=30)],
        [EdgeInfo(1, 1, 3), EdgeInfo(2, 2, 3)],
    )
    samples = {10: Sample(FRESH, 300.0), 20: Sample(FRESH, 200.0), 30: Sample(FRESH, 480.0)}
    nodes = _by_id(graph_compute(structure=structure, samples=samples, now=NOW, at=None))
    assert nodes[1]["losses_w"] is None and nodes[1]["unmetered_w"] == 300.0
    assert nodes[3]["parents"] == [1, 2]


def test_a_generation_positive_meter_is_negated_and_counts_as_generation():
    structure = _structure([_node(1, "pv", meter=10, sign="generation_positive")], [])
    nodes_and_totals = graph_compute(structure=structure, samples={10: Sample(FRESH, 2500.0)}, now=NOW, at=None)
    assert _by_id(nodes_and_totals)[1]["power_w"] == -2500.0
    assert nodes_and_totals["totals"]["generation_w"] == 2500.0


def test_edge_losses_from_phase_currents_or_a_loss_factor():
    structure = _structure(
        [_node(1, "switchboard"), _node(2, meter=20), _node(3, meter=30)],
        [EdgeInfo(1, 1, 2, resistance_ohm_per_phase=0.05), EdgeInfo(2, 1, 3, loss_factor=0.02)],
    )
    samples = {20: Sample(FRESH, 6900.0, 10.0, 10.0, 20.0), 30: Sample(FRESH, 1000.0)}
    document = graph_compute(structure=structure, samples=samples, now=NOW, at=None)
    edges = _by_id(document, "edges")
    assert edges[1]["losses_w"] == 30.0 and edges[1]["loss_method"] == "i2r"  # 0.05 x (100 + 100 + 400)
    assert edges[2]["losses_w"] == 20.0 and edges[2]["loss_method"] == "loss_factor"
    assert document["totals"]["edge_losses_w"] == 50.0


def test_an_empty_graph_has_zero_totals():
    document = graph_compute(structure=_structure([], []), samples={}, now=NOW, at=None)
    assert document["nodes"] == [] and document["edges"] == []
    assert document["totals"]["import_w"] == 0.0 and document["totals"]["stale_nodes"] == 0
