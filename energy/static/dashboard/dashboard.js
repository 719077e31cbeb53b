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
  // Times in the site's zone, formatted in the browser's locale; power in kW as the headers say.
  const siteZone = root.dataset.timezone || "UTC";
  const clock = new Intl.DateTimeFormat(undefined, { timeZone: siteZone, hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const hourMinute = new Intl.DateTimeFormat(undefined, { timeZone: siteZone, hour: "2-digit", minute: "2-digit" });
  const dayTime = new Intl.DateTimeFormat(undefined, { timeZone: siteZone, day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
  const kw = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const kwh = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const fmtW = (w) => (w == null ? "–" : kw.format(w / 1000) + " kW");
  const fmtKWh = (value) => (value == null ? "–" : kwh.format(value) + " kWh");
  const fmtWhen = (seconds) => {
    const date = new Date(seconds * 1000);
    return (Date.now() - date < 86400000 ? clock : dayTime).format(date);
  };
  const PQ_LABELS = { sag: "Voltage sag", swell: "Voltage swell", interruption: "Interruption", thd: "Harmonic distortion", imbalance: "Voltage imbalance" };
  const PROTECTION_LABELS = { trip: "Breaker tripped", breaker_open: "Breaker opened", breaker_closed: "Breaker closed", earth_leakage: "Earth leakage" };
  const $ = (id) => document.getElementById(id);
  const text = (value) => String(value).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

  function chartFor(meta) {
    const el = document.createElement("div");
    el.className = "chart";
    el.dataset.meter = meta.id;
    el.dataset.points = "0";
    el.dataset.kind = meta.kind;
    el.innerHTML = `<h3>${text(meta.name)} <small>${text(meta.kind_label || meta.kind)} · ${text(meta.serial)} · power in kW</small> <span class="now"></span></h3>`;
    $("charts").appendChild(el);
    const xs = meta.series.map((p) => p[0]);
    const ys = meta.series.map((p) => (p[1] == null ? null : p[1] / 1000));
    const notes = []; // [{t, text}]: annotations, drawn as dashed vertical markers
    const plot = new uPlot(
      {
        width: Math.max(360, el.clientWidth - 12),
        height: 180,
        legend: { show: false },
        scales: { x: { time: true } },
        axes: [
          { stroke: "#8b9bab", grid: { stroke: "#243142" }, values: (u, splits) => splits.map((v) => hourMinute.format(new Date(v * 1000))) },
          { stroke: "#8b9bab", grid: { stroke: "#243142" }, size: 60, label: "kW", labelSize: 18, values: (u, splits) => splits.map((v) => kw.format(v)) },
        ],
        series: [{}, { label: "power kW", stroke: "#f5b301", width: 2, fill: "rgba(245,179,1,.08)" }],
        plugins: [notesPlugin(notes)],
      },
      [xs, ys],
      el
    );
    const lastW = meta.series.length ? meta.series[meta.series.length - 1][1] : null;
    const entry = { meta, xs, ys, notes, plot, el, last: lastW, lastTs: xs.length ? xs[xs.length - 1] : null };
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
    m.el.title = m.notes.map((n) => `${fmtWhen(n.t)} ${n.text}`).join("\n");
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
    $("kpi-last").textContent = lastTs ? fmtWhen(lastTs) : "–";
  }

  function feed(message, cls, when) {
    const t = when || Date.now() / 1000;
    const li = document.createElement("li");
    if (cls) li.className = cls;
    li.dataset.t = String(t);
    const time = document.createElement("time");
    time.textContent = fmtWhen(t);
    li.appendChild(time);
    li.appendChild(document.createTextNode(message));
    // Newest first, whichever arrives first (snapshot events, notes and live events interleave).
    const list = $("feed");
    let before = list.firstChild;
    while (before && Number(before.dataset.t) > t) before = before.nextSibling;
    list.insertBefore(li, before);
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
        m.ys.splice(i, 0, r.total_power / 1000);
        if (i === m.xs.length - 1) m.last = r.total_power;
      }
      m.lastTs = Math.max(m.lastTs || 0, t);
      touched.add(m);
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

  // The feed holds events only (readings stay in the charts): power quality, protection, alerts.
  function meterName(id) {
    const m = meters.get(id);
    return m ? m.meta.name : `meter ${id}`;
  }

  function onEvent(key, p, when) {
    const t = when || Date.parse(p.start || p.timestamp || "") / 1000 || Date.now() / 1000;
    if (key === "pq.event") {
      if (p.action === "closed") return; // the opening is the news; the end only closes it
      const worst = p.worst_value != null ? ` (${kw.format(p.worst_value)} ${p.unit || ""})` : "";
      feed(`${meterName(p.meter_id)}: ${PQ_LABELS[p.kind] || p.kind}${worst}`, "event pq", t);
    } else if (key === "protection.event") {
      const leak = p.earth_leakage_ma != null ? ` (${kw.format(p.earth_leakage_ma)} mA)` : "";
      feed(`${meterName(p.meter_id)}: ${PROTECTION_LABELS[p.kind] || p.kind}${leak}`, "event protection", t);
    } else if (key === "demand_response") {
      const what = p.limit_kw != null ? `${kw.format(p.limit_kw)} kW` : `−${kw.format(p.reduction_percent)} %`;
      feed(`Demand response ${p.phase}: ${what}${p.program ? ` (${p.program})` : ""}`, "event load", t);
    } else if (key === "peak.detected") {
      feed(`Peak ${p.phase}: 15-min average ${kw.format(p.average_kw)} kW (threshold ${kw.format(p.threshold_kw)} kW)`, "event load", t);
    } else if (key === "alert.triggered") {
      if (p.site_id != null && p.site_id !== siteId) return;
      feed(`Alert (${p.severity}): ${p.message}`, "event alert", Date.now() / 1000);
      addAlert({ id: p.alert_id, meter_id: p.meter_id, severity: p.severity, status: p.status, message: p.message, created_at: new Date().toISOString() });
    }
  }

  const alerts = new Map(); // id -> li
  function addAlert(a) {
    const list = $("alerts");
    const none = list.querySelector(".none");
    if (none) none.remove();
    const old = alerts.get(a.id);
    const li = document.createElement("li");
    li.className = `${a.severity} ${a.status}`;
    li.dataset.alert = a.id;
    li.innerHTML = `<span class="sev">${text(a.severity)}</span><span class="msg">${a.meter_id != null ? text(meterName(a.meter_id)) + ": " : ""}${text(a.message)}</span><time>${fmtWhen(Date.parse(a.created_at) / 1000)}</time>`;
    if (a.status === "active") {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Acknowledge";
      button.addEventListener("click", () => acknowledge(a, button));
      li.appendChild(button);
    } else {
      li.insertAdjacentHTML("beforeend", "<small>acknowledged</small>");
    }
    if (old) list.replaceChild(li, old);
    else list.insertBefore(li, list.firstChild);
    alerts.set(a.id, li);
  }

  function acknowledge(a, button) {
    button.disabled = true;
    const token = root.querySelector("input[name=csrfmiddlewaretoken]").value;
    fetch(root.dataset.acknowledge.replace(/\/0\/acknowledge/, `/${a.id}/acknowledge`), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": token },
    })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((updated) => addAlert(updated))
      .catch((status) => {
        button.disabled = false;
        button.title = `Could not acknowledge (${status})`;
      });
  }

  function showEnergy(energy) {
    if (!energy) return;
    $("kpi-today").textContent = fmtKWh(energy.today.grid_import_kwh);
    $("kpi-today-pv").textContent = `from the grid · PV ${fmtKWh(energy.today.pv_kwh)}`;
    $("kpi-month").textContent = fmtKWh(energy.month.grid_import_kwh);
    $("kpi-month-pv").textContent = `from the grid · PV ${fmtKWh(energy.month.pv_kwh)}`;
  }

  // Billing accounts of the site (when the billing app is installed): wallet balance and the cost
  // of the current billing cycle so far, in the account's currency and the browser's locale.
  function showAccounts(accounts) {
    if (!accounts) return;
    $("accounts-card").hidden = accounts.length === 0;
    const list = $("accounts");
    list.replaceChildren();
    for (const a of accounts) {
      const money = new Intl.NumberFormat(undefined, { style: "currency", currency: a.currency });
      const li = document.createElement("li");
      li.dataset.account = a.id;
      li.className = a.low_balance ? "low" : "";
      const balance = a.balance == null ? "" : `<span class="balance">Balance <b>${money.format(Number(a.balance))}</b></span>`;
      li.innerHTML = `<strong>${text(a.name)}</strong> <small>${text(a.mode)}</small>${balance}<span class="cycle-cost">This cycle so far <b>${money.format(Number(a.cycle_cost))}</b></span>`;
      list.appendChild(li);
    }
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
      else if (msg.type === "event") { onEvent(msg.key, msg.payload); if (window.jpLoad) window.jpLoad.onEvent(msg.key, msg.payload); }
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
      for (const e of (snap.events || []).slice().reverse()) onEvent(e.key, e.payload, Date.parse(e.ts) / 1000);
      for (const a of snap.annotations || []) onAnnotation(a);
      for (const a of (snap.alerts || []).slice().reverse()) addAlert(a);
      showEnergy(snap.energy);
      showAccounts(snap.accounts);
      updateTiles();
      connect();
    });
  setInterval(updateTiles, 5000);
  // The energy tiles follow the day: refreshed from the snapshot every five minutes.
  setInterval(() => fetch(root.dataset.snapshot, { credentials: "same-origin" }).then((r) => r.json()).then((snap) => showEnergy(snap.energy)), 300000);
  // Balances move with every prepaid debit and top-up: the accounts follow every 30 seconds.
  setInterval(() => fetch(root.dataset.snapshot, { credentials: "same-origin" }).then((r) => r.json()).then((snap) => showAccounts(snap.accounts)), 30000);
})();
