// Joulepoint Edge live dashboard: a snapshot over HTTP, then /ws/live/ with the session cookie.
(function () {
  "use strict";
  const root = document.getElementById("dashboard");
  if (!root) return;
  const siteId = Number(root.dataset.site);
  const meters = new Map(); // id -> {meta, xs, ys, notes, plot, el, last, lastTs}
  const seenNotes = new Set(); // annotation ids already drawn (snapshot and live may overlap)
  let liveCount = 0;
  let lastTs = null;
  let windowSeconds = 900;
  const fmtW = (w) => (w == null ? "–" : Math.abs(w) >= 1000 ? (w / 1000).toFixed(2) + " kW" : w.toFixed(0) + " W");
  const $ = (id) => document.getElementById(id);

  function chartFor(meta) {
    const el = document.createElement("div");
    el.className = "chart";
    el.dataset.meter = meta.id;
    el.dataset.points = "0";
    el.innerHTML = `<h3>${meta.name} <small>${meta.kind} · ${meta.serial}</small> <span class="now"></span></h3>`;
    $("charts").appendChild(el);
    const xs = meta.series.map((p) => p[0]);
    const ys = meta.series.map((p) => p[1]);
    const notes = []; // [{t, text}]: annotations, drawn as dashed vertical markers
    const plot = new uPlot(
      {
        width: Math.max(360, el.clientWidth - 12),
        height: 180,
        legend: { show: false },
        scales: { x: { time: true } },
        axes: [{ stroke: "#8b9bab", grid: { stroke: "#243142" } }, { stroke: "#8b9bab", grid: { stroke: "#243142" }, size: 60 }],
        series: [{}, { label: "power W", stroke: "#f5b301", width: 2, fill: "rgba(245,179,1,.08)" }],
        plugins: [notesPlugin(notes)],
      },
      [xs, ys],
      el
    );
    const entry = { meta, xs, ys, notes, plot, el, last: ys.length ? ys[ys.length - 1] : null, lastTs: xs.length ? xs[xs.length - 1] : null };
    el.dataset.points = String(xs.length);
    el.querySelector(".now").textContent = fmtW(entry.last);
    meters.set(meta.id, entry);
    return entry;
  }

  // Annotation markers: a dashed line at each note's time, inside the plotted range.
  function notesPlugin(notes) {
    return {
      hooks: {
        draw: [
          (u) => {
            const ctx = u.ctx;
            const [min, max] = [u.scales.x.min, u.scales.x.max];
            ctx.save();
            ctx.strokeStyle = "#58a6ff";
            ctx.fillStyle = "#58a6ff";
            ctx.setLineDash([4, 3]);
            ctx.lineWidth = 1;
            ctx.font = "10px system-ui, sans-serif";
            for (const note of notes) {
              if (note.t < min || note.t > max) continue;
              const x = Math.round(u.valToPos(note.t, "x", true));
              ctx.beginPath();
              ctx.moveTo(x, u.bbox.top);
              ctx.lineTo(x, u.bbox.top + u.bbox.height);
              ctx.stroke();
              ctx.fillText(note.text.slice(0, 24), x + 3, u.bbox.top + 10);
            }
            ctx.restore();
          },
        ],
      },
    };
  }

  function onAnnotation(a) {
    if (seenNotes.has(a.id)) return;
    const m = meters.get(a.meter_id);
    if (!m) return;
    seenNotes.add(a.id);
    const t = Date.parse(a.ts) / 1000;
    m.notes.push({ t, text: a.text });
    m.el.dataset.annotations = String(m.notes.length);
    m.el.title = m.notes.map((n) => `${new Date(n.t * 1000).toLocaleTimeString()} ${n.text}`).join("\n");
    m.plot.redraw();
    feed(`${m.meta.name} · note: ${a.text}`, "annotation", t);
  }

  function updateTiles() {
    let grid = 0, hasGrid = false, all = 0, pv = 0, reporting = 0;
    const cutoff = Date.now() / 1000 - 300;
    for (const m of meters.values()) {
      if (m.last != null) {
        all += m.last;
        if (m.meta.kind === "grid") { grid += m.last; hasGrid = true; }
        if (m.meta.kind === "pv") pv += m.last;
      }
      if (m.lastTs && m.lastTs >= cutoff) reporting += 1;
    }
    $("kpi-power").textContent = fmtW(hasGrid ? grid : all);
    $("kpi-pv").textContent = fmtW(pv);
    $("kpi-reporting").textContent = `${reporting} / ${meters.size}`;
    $("kpi-count").textContent = String(liveCount);
    $("kpi-last").textContent = lastTs ? new Date(lastTs * 1000).toLocaleTimeString() : "–";
  }

  function feed(text, cls, when) {
    const li = document.createElement("li");
    if (cls) li.className = cls;
    const time = document.createElement("time");
    time.textContent = (when ? new Date(when * 1000) : new Date()).toLocaleTimeString();
    li.appendChild(time);
    li.appendChild(document.createTextNode(text));
    const list = $("feed");
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 100) list.removeChild(list.lastChild);
  }

  function onReadings(readings) {
    const touched = new Set();
    for (const r of readings) {
      const m = meters.get(r.meter_id);
      if (!m) continue;
      const t = Date.parse(r.timestamp) / 1000;
      liveCount += 1;
      lastTs = Math.max(lastTs || 0, t);
      if (r.total_power != null) {
        // Keep time order: most arrive last, late ones are inserted in place.
        let i = m.xs.length;
        while (i > 0 && m.xs[i - 1] > t) i -= 1;
        m.xs.splice(i, 0, t);
        m.ys.splice(i, 0, r.total_power);
        if (i === m.xs.length - 1) m.last = r.total_power;
      }
      m.lastTs = Math.max(m.lastTs || 0, t);
      touched.add(m);
      feed(`${m.meta.name}: ${fmtW(r.total_power)}${r.voltage_a != null ? " · " + r.voltage_a.toFixed(1) + " V" : ""}`);
    }
    const horizon = (lastTs || Date.now() / 1000) - windowSeconds;
    for (const m of touched) {
      while (m.xs.length && m.xs[0] < horizon) { m.xs.shift(); m.ys.shift(); }
      m.plot.setData([m.xs, m.ys]);
      m.el.dataset.points = String(m.xs.length);
      m.el.querySelector(".now").textContent = fmtW(m.last);
    }
    updateTiles();
  }

  function setStatus(state) {
    const el = $("status");
    el.dataset.state = state;
    el.textContent = state;
    el.className = "status " + (state === "live" ? "online" : "offline");
  }

  let backoff = 500;
  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws/live/`);
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "ready") ws.send(JSON.stringify({ type: "subscribe", sites: [siteId] }));
      else if (msg.type === "subscribed") { setStatus("live"); backoff = 500; }
      else if (msg.type === "readings") onReadings(msg.readings);
      else if (msg.type === "event" && msg.key === "annotation.created") onAnnotation(msg.payload);
      else if (msg.type === "event") feed(`${msg.key}: ${JSON.stringify(msg.payload)}`, "event");
      else if (msg.type === "error") feed(`error: ${msg.code} ${msg.detail || ""}`, "event");
    };
    ws.onclose = (ev) => {
      setStatus(ev.code === 4401 || ev.code === 4403 ? "logged out" : "reconnecting");
      if (ev.code === 4401 || ev.code === 4403) return;
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  fetch(root.dataset.snapshot, { credentials: "same-origin" })
    .then((r) => r.json())
    .then((snap) => {
      windowSeconds = snap.window_seconds;
      for (const meta of snap.meters) chartFor(meta);
      for (const a of snap.annotations || []) onAnnotation(a);
      updateTiles();
      connect();
    });
  setInterval(updateTiles, 5000);
})();
