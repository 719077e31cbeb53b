"""Writes of a site's topology: nodes and edges, kept a DAG.

Every write locks the site's row first, so two concurrent edges cannot close a cycle that
neither saw, then checks the whole rule set and raises TopologyInvalid (nothing written) naming
the field and the nodes involved. Callers: the API views, the admin forms and the demo.
After commit, subscribers of the site's live topology are told the structure changed
(a `topology.changed` notice on the site's group, docs/live.md).
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from typing import Any

from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from energy.live.fanout import live_notice_send
from energy.models.devices import Meter
from energy.models.sites import Site
from energy.topology.models import Edge, Node, TopologySettings
from energy.topology.selectors import VERSION_KEY, VERSION_TTL_SECONDS
from joulepoint.platform.cache import cache_window_claim
from joulepoint.platform.degraded import REDIS_ERRORS, redis_outage_log

TOPOLOGY_CHANGED = "topology.changed"
NODE_FIELDS = ("name", "kind", "meter", "sign_convention", "x", "y", "z")
EDGE_FIELDS = ("parent", "child", "cable_length_m", "resistance_ohm_per_phase", "loss_factor")
SETTINGS_FIELDS = ("allow_multiple_parents", "stale_after_seconds")
# A week: beyond it a "latest" reading says nothing about now; 0 would make every reading stale.
STALE_AFTER_MAX_SECONDS = 7 * 24 * 3600


class TopologyInvalid(ValueError):
    """A write that would break a rule; `errors` maps field → message, `nodes` names the node
    ids involved (the cycle, the two parents, the node already holding the meter)."""

    def __init__(self, errors: dict[str, str], nodes: list[int] | None = None):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors
        self.nodes = sorted(set(nodes or []))


def _label(node: Node) -> str:
    return f"node {node.pk} ({node.name})"


def site_lock(site_id: int) -> None:
    """Take the site's row lock until the end of the caller's transaction: one writer per site at
    a time, as the cycle and second-parent checks read the whole graph."""
    list(Site.objects.select_for_update().filter(pk=site_id).values_list("pk", flat=True))


def topology_settings_of(*, site_id: int) -> TopologySettings:
    """The site's settings row, or unsaved defaults when it has none."""
    found = TopologySettings.objects.filter(site_id=site_id).first()
    return found if found is not None else TopologySettings(site_id=site_id)


def _check_number(errors: dict[str, str], name: str, value, *, upper: float | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors[name] = "must be a finite number"
    elif value < 0:
        errors[name] = "must not be negative"
    elif upper is not None and value > upper:
        errors[name] = f"must be at most {upper}"


def node_check(node: Node) -> None:
    """The rules a node must keep (kind, sign convention, finite position, its meter of its site
    and on no other node); raises TopologyInvalid. Also used by the admin's forms."""
    errors: dict[str, str] = {}
    nodes: list[int] = []
    if node.kind not in Node.Kind.values:
        errors["kind"] = f"must be one of {', '.join(Node.Kind.values)}"
    if node.sign_convention not in Node.SignConvention.values:
        errors["sign_convention"] = f"must be one of {', '.join(Node.SignConvention.values)}"
    if not (node.name or "").strip():
        errors["name"] = "must not be blank"
    for axis in ("x", "y", "z"):
        value = getattr(node, axis)
        if value is not None and (isinstance(value, bool) or not math.isfinite(value)):
            errors[axis] = "must be a finite number"
    if node.meter_id is not None:
        meter = Meter.objects.filter(pk=node.meter_id).values("organization_id", "site_id").first()
        if meter is None or meter["organization_id"] != node.organization_id:
            errors["meter"] = "does not exist"
        elif meter["site_id"] != node.site_id:
            errors["meter"] = f"meter {node.meter_id} is of site {meter['site_id']}, the node of site {node.site_id}"
        else:
            holder = Node.objects.filter(meter_id=node.meter_id).exclude(pk=node.pk).first()
            if holder is not None:
                errors["meter"] = f"meter {node.meter_id} is already on {_label(holder)}; a meter is on one node only"
                nodes.append(holder.pk)
                if node.pk:
                    nodes.append(node.pk)
    if errors:
        raise TopologyInvalid(errors, nodes)


def _changed(*, site_id: int, organization_id: int, change: str, **ids: int) -> None:
    def send() -> None:
        live_notice_send(
            organization_id=organization_id,
            site_id=site_id,
            key=TOPOLOGY_CHANGED,
            payload={"site_id": site_id, "change": change, **ids},
            ident=str(uuid.uuid4()),
            occurred_at=timezone.now(),
        )

    transaction.on_commit(send)


@transaction.atomic
def node_create(*, site: Site, values: dict[str, Any]) -> Node:
    """Create a node on `site` (its organization's). `values`: name, kind, and optionally meter
    (a Meter of the same site, on no other node), sign_convention, x, y, z.
    Raises TopologyInvalid, nothing written. Tenant: the site's organization."""
    site_lock(site.pk)
    unknown = set(values) - set(NODE_FIELDS)
    if unknown:
        raise TopologyInvalid({name: "is not a node field" for name in sorted(unknown)})
    node = Node(organization_id=site.organization_id, site=site, **values)
    node_check(node)
    node.save()
    _changed(site_id=site.pk, organization_id=site.organization_id, change="node.created", node_id=node.pk)
    return node


@transaction.atomic
def node_update(*, node: Node, values: dict[str, Any]) -> Node:
    """Change a node's fields (not its site: a node with edges cannot move between graphs;
    delete and recreate it). Raises TopologyInvalid, nothing written. Tenant: the node's."""
    site_lock(node.site_id)
    if "site" in values and getattr(values["site"], "pk", values["site"]) != node.site_id:
        raise TopologyInvalid({"site": "a node cannot move to another site; delete it and create a new one"})
    values = {key: value for key, value in values.items() if key != "site"}
    unknown = set(values) - set(NODE_FIELDS)
    if unknown:
        raise TopologyInvalid({name: "is not a node field" for name in sorted(unknown)})
    for key, value in values.items():
        setattr(node, key, value)
    node_check(node)
    node.save()
    _changed(site_id=node.site_id, organization_id=node.organization_id, change="node.updated", node_id=node.pk)
    return node


@transaction.atomic
def node_delete(*, node: Node) -> None:
    """Delete a node and its edges. Tenant: the node's organization."""
    site_lock(node.site_id)
    site_id, organization_id, node_id = node.site_id, node.organization_id, node.pk
    node.delete()
    _changed(site_id=site_id, organization_id=organization_id, change="node.deleted", node_id=node_id)


def _path(adjacency: dict[int, list[int]], start: int, goal: int) -> list[int] | None:
    """A path start → … → goal along `adjacency` (iterative DFS), or None."""
    stack: list[tuple[int, list[int]]] = [(start, [start])]
    seen = {start}
    while stack:
        current, path = stack.pop()
        if current == goal:
            return path
        for nxt in adjacency.get(current, ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def edge_check(edge: Edge) -> None:
    """The rules an edge must keep against the rest of its site's graph as stored; raises
    TopologyInvalid. The writers call it with the site locked; the admin's forms call it too."""
    errors: dict[str, str] = {}
    _check_number(errors, "cable_length_m", edge.cable_length_m)
    _check_number(errors, "resistance_ohm_per_phase", edge.resistance_ohm_per_phase)
    _check_number(errors, "loss_factor", edge.loss_factor, upper=1.0)
    if errors:
        raise TopologyInvalid(errors)
    parent, child = edge.parent, edge.child
    if parent.pk == child.pk:
        raise TopologyInvalid({"child": f"is the parent itself: a self-loop on {_label(parent)}"}, [parent.pk])
    for node in (parent, child):
        if node.organization_id != edge.organization_id:
            field = "parent" if node is parent else "child"
            raise TopologyInvalid({field: "does not exist"})
    if parent.site_id != child.site_id:
        raise TopologyInvalid(
            {
                "child": f"{_label(child)} is of site {child.site_id} and {_label(parent)} of site "
                f"{parent.site_id}: an edge joins two nodes of one site"
            },
            [parent.pk, child.pk],
        )
    others = Edge.objects.filter(site_id=parent.site_id).exclude(pk=edge.pk)
    pairs = list(others.values_list("parent_id", "child_id"))
    if (parent.pk, child.pk) in pairs:
        raise TopologyInvalid({"child": f"an edge {parent.pk} → {child.pk} already exists"}, [parent.pk, child.pk])
    settings = topology_settings_of(site_id=parent.site_id)
    if not settings.allow_multiple_parents:
        existing = [p for p, c in pairs if c == child.pk]
        if existing:
            raise TopologyInvalid(
                {
                    "child": f"{_label(child)} already has parent node {existing[0]}; this site allows one "
                    "parent per node (topology settings: allow_multiple_parents)"
                },
                [child.pk, parent.pk, *existing],
            )
    adjacency: dict[int, list[int]] = defaultdict(list)
    for p, c in pairs:
        adjacency[p].append(c)
    cycle = _path(adjacency, child.pk, parent.pk)
    if cycle is not None:
        loop = " → ".join(str(n) for n in [parent.pk, *cycle])
        raise TopologyInvalid({"child": f"would close a cycle: {loop}"}, cycle)


@transaction.atomic
def edge_create(*, parent: Node, child: Node, values: dict[str, Any] | None = None) -> Edge:
    """Connect parent → child (two nodes of one site), keeping the site's graph a DAG: no
    self-loop, no cycle, no node of another site or organization, no second parent unless the
    site allows it. `values`: cable_length_m, resistance_ohm_per_phase (≥ 0), loss_factor (0-1).
    Raises TopologyInvalid, nothing written. Tenant: the parent's organization."""
    site_lock(parent.site_id)
    values = dict(values or {})
    unknown = set(values) - set(EDGE_FIELDS)
    if unknown:
        raise TopologyInvalid({name: "is not an edge field" for name in sorted(unknown)})
    edge = Edge(organization_id=parent.organization_id, site_id=parent.site_id, parent=parent, child=child, **values)
    edge_check(edge)
    edge.save()
    _changed(site_id=edge.site_id, organization_id=edge.organization_id, change="edge.created", edge_id=edge.pk)
    return edge


@transaction.atomic
def edge_update(*, edge: Edge, values: dict[str, Any]) -> Edge:
    """Change an edge (its ends too), under the same rules as edge_create. Tenant: the edge's."""
    site_lock(edge.site_id)
    unknown = set(values) - set(EDGE_FIELDS)
    if unknown:
        raise TopologyInvalid({name: "is not an edge field" for name in sorted(unknown)})
    for key, value in values.items():
        setattr(edge, key, value)
    if edge.parent.site_id != edge.site_id:
        raise TopologyInvalid({"parent": "an edge cannot move to another site; delete it and create a new one"})
    edge_check(edge)
    edge.save()
    _changed(site_id=edge.site_id, organization_id=edge.organization_id, change="edge.updated", edge_id=edge.pk)
    return edge


@transaction.atomic
def edge_delete(*, edge: Edge) -> None:
    """Delete an edge. Tenant: the edge's organization."""
    site_lock(edge.site_id)
    site_id, organization_id, edge_id = edge.site_id, edge.organization_id, edge.pk
    edge.delete()
    _changed(site_id=site_id, organization_id=organization_id, change="edge.deleted", edge_id=edge_id)


def _nodes_with_several_parents(site_id: int) -> dict[int, list[int]]:
    """child node id → its parents' ids, for the site's nodes that have more than one."""
    parents: dict[int, list[int]] = defaultdict(list)
    for parent_id, child_id in (
        Edge.objects.filter(site_id=site_id).order_by("parent_id").values_list("parent_id", "child_id")
    ):
        parents[child_id].append(parent_id)
    return {child: found for child, found in sorted(parents.items()) if len(found) > 1}


def topology_settings_check(settings: TopologySettings) -> None:
    """The rules a site's settings must keep against its graph as stored (stale_after_seconds
    in range; no node with several parents if they are forbidden); raises TopologyInvalid.
    Also used by the admin's form."""
    errors: dict[str, str] = {}
    stale = settings.stale_after_seconds
    if isinstance(stale, bool) or not isinstance(stale, int) or not 1 <= stale <= STALE_AFTER_MAX_SECONDS:
        errors["stale_after_seconds"] = f"must be a whole number of seconds from 1 to {STALE_AFTER_MAX_SECONDS}"
    if not isinstance(settings.allow_multiple_parents, bool):
        errors["allow_multiple_parents"] = "must be true or false"
    if errors:
        raise TopologyInvalid(errors)
    if not settings.allow_multiple_parents:
        shared = _nodes_with_several_parents(settings.site_id)
        if shared:
            names = dict(Node.objects.filter(pk__in=shared).values_list("pk", "name"))
            listed = "; ".join(
                f"node {child} ({names.get(child, '?')}) has parents {', '.join(map(str, parents))}"
                for child, parents in shared.items()
            )
            raise TopologyInvalid(
                {"allow_multiple_parents": f"cannot be false while nodes have several parents: {listed}; "
                 "remove the extra edges first"},
                list(shared),
            )  # fmt: skip


@transaction.atomic
def topology_settings_set(*, site: Site, values: dict[str, Any]) -> TopologySettings:
    """Change the site's topology settings (creating its row on first write). `values`:
    allow_multiple_parents (bool), stale_after_seconds (1 to STALE_AFTER_MAX_SECONDS).
    Forbidding several parents while some node has several is refused, naming those nodes
    (remove the extra edges first). Raises TopologyInvalid, nothing written. Watching sockets
    reload the graph after commit (stale_after_seconds changes what is stale).
    Tenant: the site's organization."""
    site_lock(site.pk)
    unknown = set(values) - set(SETTINGS_FIELDS)
    if unknown:
        raise TopologyInvalid({name: "is not a topology settings field" for name in sorted(unknown)})
    settings = topology_settings_of(site_id=site.pk)
    for key, value in values.items():
        setattr(settings, key, value)
    settings.site_id = site.pk
    topology_settings_check(settings)
    settings.organization_id = site.organization_id
    settings.save()
    _changed(site_id=site.pk, organization_id=site.organization_id, change="settings.updated")
    return settings


def topology_version_bump(*, site_id: int) -> None:
    """Give the site's structure a new version token, now and again when the transaction
    commits: every process's cached structure of the site is then read afresh
    (energy.topology.selectors). Now, so this transaction's own reads see the change; at the
    commit, because a reader in between may have cached the structure as it was before it.
    Nothing to do where structures are not cached (no shared cache)."""
    if not django_settings.TOPOLOGY_STRUCTURE_CACHE:
        return
    key = VERSION_KEY.format(site_id=int(site_id))

    def bump() -> None:
        try:
            cache.set(key, uuid.uuid4().hex, timeout=VERSION_TTL_SECONDS)
        except REDIS_ERRORS as error:
            # A structure write must not fail for the cache. Other processes keep their copy
            # until its token expires (VERSION_TTL_SECONDS); a Redis back without its data has
            # no token, which drops every copy at once.
            redis_outage_log("topology structure changes told no other process", error)

    bump()
    transaction.on_commit(bump)


def structure_changed(sender, instance, **kwargs) -> None:
    """Signal receiver (energy.apps): a node, edge, settings row or site saved or deleted, or a
    meter deleted (its node loses it), through the services or not."""
    site_id = instance.pk if isinstance(instance, Site) else instance.site_id
    if site_id is not None:
        topology_version_bump(site_id=site_id)


def topology_push_claim(*, site_id: int, interval_seconds: float) -> bool:
    """Whether the caller computes and sends the site's next live topology update: one caller per
    site and interval, across every server process (the claim is in Redis in production), so a
    site's watchers cost at most one recompute per interval however many sockets and processes
    watch it, and all of them receive that one update (energy.live.consumers)."""
    return cache_window_claim(f"topology:push:{int(site_id)}", interval_seconds)
