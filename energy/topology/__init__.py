"""The site energy graph: nodes and edges (a DAG per site), its validation, the graph with live
power and losses, the live overlay and the demo topology (docs/topology.md)."""
