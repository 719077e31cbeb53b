// Joulepoint Edge topology view: the site's energy graph over /ws/live/ ({"topology": [site]}),
// drawn with 3d-force-graph (WebGL) or force-graph (2D canvas) when WebGL is missing or asked for.
// Node size follows power, particles follow the flow, red links carry cable losses, grey = stale.
(function () {
  "use strict";
  const root = document.getElementById("topology");
  if (!root) return;
  const siteId = Number(root.dataset.site);
  const $ = (id) => document.getElementById(id);
  const nodes = new Map(); // id -> graph node object (kept across updates: it holds the layout)
  const links = new Map(); // edge id -> graph link object
  let graph = null;
  let updates = 0;
  const KIND_COLOR = {
    grid_connection: "#58a6ff", transformer: "#a371f7", switchboard: "#c9d1d9", feeder: "#8b9bab",
    meter_point: "#d2a8ff", ev_charger: "#3fb950", pv: "#f5b301", battery: "#39c5cf", load: "#f0883e",
  };
  const GREY = "#4b5563";
  const fmtW = (w) => (w == null ? "–" : Math.abs(w) >= 1000 ? (w / 1000).toFixed(2) + " kW" : w.toFixed(0) + " W");

  function webgl() {
    try {
      const canvas = document.createElement("canvas");
      return !!(window.WebGLRenderingContext && (canvas.getContext("webgl2") || canvas.getContext("webgl")));
    } catch (e) {
      return false;
    }
  }
  let mode = webgl() && window.ForceGraph3D ? "3d" : "2d";

  const dim = (n) => n.stale || n.power_w == null;
  const nodeColor = (n) => (dim(n) ? GREY : KIND_COLOR[n.kind] || "#e6edf3");
  const nodeVal = (n) => 1 + Math.sqrt(Math.abs(n.power_w || 0) / 100);
  function nodeLabel(n) {
    const lines = [`<b>${n.name}</b> (${n.kind.replace("_", " ")})`, `power ${fmtW(n.power_w)}${n.derived ? " (sum of children)" : ""}`];
    if (n.losses_w != null) lines.push(`losses ${fmtW(n.losses_w)}`);
    if (n.unmetered_w != null) lines.push(`unmetered ${fmtW(n.unmetered_w)}`);
    if (n.reading) lines.push(`reading ${n.reading.age_seconds.toFixed(0)} s old${n.stale ? " (stale)" : ""}`);
    else if (n.meter_id == null) lines.push("no meter");
    return lines.join("<br>");
  }
  const linkPower = (l) => Math.abs(l.power_w || 0);
  const linkParticles = (l) => (l.power_w == null || l.power_w === 0 ? 0 : Math.min(8, Math.max(1, Math.ceil(linkPower(l) / 2000))));
  const linkSpeed = (l) => 0.003 + Math.min(0.02, linkPower(l) / 400000);
  const linkColor = (l) => (l.losses_w > 0 ? "rgba(248,81,73,0.9)" : "rgba(139,155,171,0.5)");
  const linkWidth = (l) => (l.losses_w > 0 ? 1 + Math.min(4, l.losses_w / 25) : 0.6);
  function linkLabel(l) {
    const parts = [`flow ${fmtW(l.power_w)}`];
    if (l.losses_w != null) parts.push(`losses ${fmtW(l.losses_w)} (${l.loss_method === "i2r" ? "I²R" : "loss factor"})`);
    if (l.cable_length_m != null) parts.push(`${l.cable_length_m} m`);
    return parts.join(" · ");
  }

  // Levels top-down by depth in the DAG (the longest path from a root), pinned on the vertical
  // axis: links are oriented by flow (below), so the library's own dagMode, which follows link
  // direction, would lift a PV feeding back above its switchboard.
  function levels() {
    const depth = new Map();
    const visit = (n, seen) => {
      if (depth.has(n.id)) return depth.get(n.id);
      if (seen.has(n.id)) return 0; // a cycle cannot be stored; guard anyway
      seen.add(n.id);
      const parents = (n.parents || []).map((id) => nodes.get(id)).filter(Boolean);
      const d = parents.length ? 1 + Math.max(...parents.map((p) => visit(p, seen))) : 0;
      depth.set(n.id, d);
      return d;
    };
    const step = mode === "3d" ? -70 : 70; // three.js y points up, the 2D canvas's down
    for (const n of nodes.values()) visit(n, new Set());
    const middle = Math.max(0, ...depth.values()) / 2; // centred, where the camera looks
    for (const n of nodes.values()) {
      if (n.position) continue; // a stored position wins
      n.fy = (depth.get(n.id) - middle) * step;
    }
  }

  // Particles run source → target, so a link is oriented by its flow: a PV feeding back has its
  // particles travelling up the graph.
  function oriented(l) {
    const reverse = l.power_w != null && l.power_w < 0;
    l.source = nodes.get(reverse ? l.child : l.parent);
    l.target = nodes.get(reverse ? l.parent : l.child);
    l.reverse = reverse;
    return l;
  }

  function draw() {
    const el = $("graph");
    if (graph && graph._destructor) graph._destructor();
    el.innerHTML = "";
    root.dataset.mode = mode;
    $("mode-toggle").textContent = mode === "3d" ? "Switch to 2D" : "Switch to 3D";
    $("mode-toggle").dataset.mode = mode;
    const make = mode === "3d" ? window.ForceGraph3D : window.ForceGraph;
    graph = make()(el)
      .width(el.clientWidth)
      .height(el.clientHeight)
      .backgroundColor("#17212c")
      .nodeId("id")
      .nodeLabel(nodeLabel)
      .linkLabel(linkLabel)
      .linkDirectionalParticleWidth(mode === "3d" ? 2.5 : 3)
      .cooldownTicks(200);
    graph.d3Force("charge").strength(-160); // spread siblings apart on their level
    let fitted = false;
    graph.onEngineStop(() => {
      if (!fitted) graph.zoomToFit(400, 40); // frame the whole graph once its layout settles
      fitted = true;
    });
    if (mode === "2d") {
      // Names under the nodes (the 3D view shows them on hover only).
      graph.nodeRelSize(5).nodeCanvasObjectMode(() => "after").nodeCanvasObject((n, ctx, scale) => {
        ctx.font = `${11 / scale}px system-ui, sans-serif`;
        ctx.textAlign = "center";
        ctx.textBaseline = "top";
        ctx.fillStyle = dim(n) ? "#8b9bab" : "#e6edf3";
        ctx.fillText(n.name, n.x, n.y + 5 * Math.sqrt(nodeVal(n)) + 2 / scale);
      });
    }
    style();
    levels();
    graph.graphData({ nodes: [...nodes.values()], links: [...links.values()].map(oriented) });
    const drawn = graph;
    setTimeout(() => drawn === graph && drawn.zoomToFit(400, 60), 700); // frame it early too
  }

  function style() {
    if (!graph) return;
    graph
      .nodeColor(nodeColor)
      .nodeVal(nodeVal)
      .linkColor(linkColor)
      .linkWidth(linkWidth)
      .linkDirectionalParticles(linkParticles)
      .linkDirectionalParticleSpeed(linkSpeed)
      .linkDirectionalParticleColor(() => "#f5b301");
  }

  function table() {
    const body = $("node-table").querySelector("tbody");
    body.innerHTML = "";
    for (const n of nodes.values()) {
      const tr = document.createElement("tr");
      tr.dataset.node = n.id;
      tr.dataset.power = n.power_w == null ? "" : String(n.power_w);
      if (dim(n)) tr.className = "stale";
      const loss = n.losses_w != null ? fmtW(n.losses_w) : n.unmetered_w != null ? `${fmtW(n.unmetered_w)} unmetered` : "–";
      for (const [text, cls] of [[n.name + (n.stale ? " (stale)" : ""), ""], [fmtW(n.power_w), "num"], [loss, "num"]]) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  function totals(t) {
    $("total-import").textContent = fmtW(t.import_w);
    $("total-export").textContent = fmtW(t.export_w);
    $("total-generation").textContent = fmtW(t.generation_w);
    $("total-consumption").textContent = fmtW(t.consumption_w);
    $("total-losses").textContent = `${fmtW(t.losses_w)} / ${fmtW(t.edge_losses_w)}`;
    $("total-unmetered").textContent = fmtW(t.unmetered_w);
  }

  function onGraph(doc) {
    const previous = new Map(nodes);
    nodes.clear();
    links.clear();
    for (const n of doc.nodes) {
      const kept = previous.get(n.id) || {};
      const node = Object.assign(kept, n);
      if (n.position) Object.assign(node, { fx: n.position.x, fy: n.position.y, fz: n.position.z });
      nodes.set(n.id, node);
    }
    for (const e of doc.edges) links.set(e.id, Object.assign({}, e));
    totals(doc.totals);
    table();
    draw();
  }

  function onUpdate(msg) {
    let flipped = false;
    for (const n of msg.nodes) if (nodes.has(n.id)) Object.assign(nodes.get(n.id), n);
    for (const e of msg.edges) {
      const link = links.get(e.id);
      if (!link) continue;
      Object.assign(link, e);
      if ((link.power_w != null && link.power_w < 0) !== !!link.reverse) flipped = true;
    }
    totals(msg.totals);
    table();
    if (flipped) graph.graphData({ nodes: [...nodes.values()], links: [...links.values()].map(oriented) });
    else style();
    updates += 1;
    root.dataset.updates = String(updates);
  }

  function setStatus(state) {
    const el = $("status");
    el.dataset.state = state;
    el.textContent = state;
    el.className = "status " + (state === "live" ? "online" : "offline");
  }

  $("mode-toggle").addEventListener("click", () => {
    if (mode === "2d" && !(webgl() && window.ForceGraph3D)) return; // no WebGL here: 2D only
    mode = mode === "3d" ? "2d" : "3d";
    draw();
  });
  window.addEventListener("resize", () => graph && graph.width($("graph").clientWidth).height($("graph").clientHeight));

  let backoff = 500;
  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws/live/`);
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "ready") ws.send(JSON.stringify({ type: "subscribe", topology: [siteId] }));
      else if (msg.type === "subscribed") { setStatus("live"); backoff = 500; }
      else if (msg.type === "topology") onGraph(msg.graph);
      else if (msg.type === "topology.update") onUpdate(msg);
    };
    ws.onclose = (ev) => {
      setStatus(ev.code === 4401 || ev.code === 4403 ? "logged out" : "reconnecting");
      if (ev.code === 4401 || ev.code === 4403) return;
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }
  connect();
})();
