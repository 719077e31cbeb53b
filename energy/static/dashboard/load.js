// The site dashboard's load management panel: site import against the effective limit and each
// charger's setpoint against its actual power, from the `load.allocation` notices every
// allocation run sends to the site's live group (energy.load.services.allocation_snapshot).
(function () {
  const fmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const kW = (w) => (w == null ? "–" : `${fmt.format(w / 1000)} kW`);
  const $ = (id) => document.getElementById(id);

  function render(p) {
    const panel = $("load-panel");
    if (!panel) return;
    panel.hidden = false;
    $("load-import").textContent = kW(p.grid_power_w);
    $("load-limit").textContent = kW(p.effective_limit_w);
    $("load-source").textContent = `(${p.limit_source.replace("_", " ")})`;
    const meter = $("load-meter");
    meter.max = Math.max(p.effective_limit_w || 1, 1);
    meter.value = Math.max(p.grid_power_w || 0, 0);
    const body = $("load-chargers").querySelector("tbody");
    body.replaceChildren(
      ...p.chargers.map((c) => {
        const row = document.createElement("tr");
        row.dataset.charger = c.charger_id;
        const setpoint = c.paused ? "paused" : `${kW(c.setpoint_w)} (${fmt.format(c.setpoint_a)} A)`;
        for (const text of [c.name, setpoint, kW(c.actual_w)]) {
          const cell = document.createElement("td");
          cell.textContent = text;
          row.append(cell);
        }
        return row;
      })
    );
    const windows = $("load-windows");
    if (windows) {
      const time = (iso) => new Date(iso).toLocaleString(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" });
      const limit = (w) => (w.max_import_kw != null ? `${fmt.format(w.max_import_kw)} kW` : `−${fmt.format(w.reduction_percent)} %`);
      windows.replaceChildren(
        ...(p.windows || []).map((w) => {
          const item = document.createElement("li");
          item.className = w.kind;
          item.textContent = `${w.kind === "demand_response" ? "Demand response" : "Schedule"} “${w.name}”: ` +
            `${time(w.starts_at)}–${time(w.ends_at)}, ${limit(w)}`;
          return item;
        })
      );
      if (!windows.children.length) {
        const none = document.createElement("li");
        none.className = "none";
        none.textContent = "No lowered limits in the next 24 h.";
        windows.append(none);
      }
    }
    $("load-updated").textContent = `updated ${new Date(p.computed_at).toLocaleTimeString()}` +
      (p.warnings && p.warnings.length ? ` — ${p.warnings.join("; ")}` : "");
  }

  window.jpLoad = {
    onEvent(key, payload) {
      if (key === "load.allocation") render(payload);
    },
  };
})();
