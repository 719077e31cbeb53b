"""A demo depot that behaves like a real one: the physics behind `manage.py simulate`.

`DepotSimulator.step(now)` returns one reading per meter kind (grid, load, pv, battery,
ev_charger) in the ingest format. Sign conventions (each meter measures its own device):

- load, ev_charger: power drawn (>= 0); `total_energy` is the consumption register.
- pv: power generated (>= 0); `total_energy` is the generation register.
- battery: + charging / - discharging; `total_energy` counts charged kWh, `export_energy`
  discharged kWh; `soc_pct` (an extra field) is the state of charge.
- grid: + import / - export, and grid = load + ev + battery_charge - pv - battery_discharge;
  `total_energy` counts imported kWh, `export_energy` exported kWh.

Registers only grow. Voltages are phase-neutral around 230 V with a small imbalance, currents
follow I = S / V per phase, and frequency wanders around 50 Hz.

`ReadingSender` posts over real HTTP with each meter's `X-Device-Key` and `X-Signature`,
keeps unsent readings while the server is down and sends the backlog in bulk when it is back.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

logger = logging.getLogger("energy.simulator")

KINDS = ("grid", "load", "pv", "battery", "ev_charger")

# The depot.
PV_PEAK_KW = 30.0  # kWp of the rooftop array
PV_INVERTER_KW = 27.0  # AC rating: output is clipped here
PV_LOSSES = 0.86
BATTERY_KWH = 60.0
BATTERY_MAX_KW = 20.0
BATTERY_SOC_MIN = 0.10
BATTERY_SOC_MAX = 0.95
BATTERY_EFFICIENCY = 0.95  # each way
EVENING_PEAK = (17, 22)  # local hours when the battery shaves the peak
# Off-peak top-up: in these local hours the battery charges from the grid up to NIGHT_SOC_TARGET
# (in winter the PV never exceeds the depot's load, so without it the battery would sit empty).
NIGHT_CHARGE = (0, 5)
NIGHT_SOC_TARGET = 0.5
NIGHT_CHARGE_KW = 8.0
EV_POWER_KW = (7.0, 11.0)
EV_SESSION_KWH = (8.0, 35.0)
# Weekday depot load by local hour (kW): night base, workshop day, evening tail.
LOAD_PROFILE_KW = (
    9.0, 8.5, 8.0, 8.0, 8.5, 10.0, 14.0, 20.0, 24.0, 25.0, 25.0, 26.0,
    25.0, 25.0, 24.0, 23.0, 22.0, 21.0, 18.0, 15.0, 13.0, 11.0, 10.0, 9.5,
)  # fmt: skip
WEEKEND_LOAD_FACTOR = 0.6
# EV sessions started per hour by local hour (arrivals in the morning and evening).
EV_ARRIVALS_PER_HOUR = (
    0.05, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.8, 0.6, 0.3, 0.2, 0.3,
    0.4, 0.3, 0.2, 0.3, 0.5, 0.8, 0.8, 0.6, 0.4, 0.2, 0.1, 0.05,
)  # fmt: skip
# A gap longer than this (simulator stopped) is not integrated into the registers.
MAX_INTEGRATION_SECONDS = 900.0
# Registers of a first start: the most a meter can count per hour times the hours since
# REGISTER_EPOCH, so a restart that lost its state file still starts above anything an earlier
# run could have counted (registers never go back, even across restarts).
REGISTER_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
REGISTER_RATE_KW = {"grid": 65.0, "load": 32.0, "pv": PV_INVERTER_KW, "battery": BATTERY_MAX_KW, "ev_charger": 11.5}
EXPORT_RATE_KW = {"grid": PV_INVERTER_KW + BATTERY_MAX_KW, "battery": BATTERY_MAX_KW}


# A disturbance scales the grid meter's phase voltages for one reading: a sag to 0.78 pu and a
# swell to 1.13 pu are beyond the default thresholds (0.9 and 1.1 pu, IEEE 1159).
SAG_FACTOR = 0.78
SWELL_FACTOR = 1.14


def disturb(reading: dict, factor: float) -> None:
    """Scale one reading's phase voltages by `factor` (a sag below 1, a swell above)."""
    for name in ("voltage_a", "voltage_b", "voltage_c"):
        if reading.get(name) is not None:
            reading[name] = round(reading[name] * factor, 1)


def solar_elevation_deg(ts: datetime, latitude: float, longitude: float) -> float:
    """Sun elevation above the horizon (NOAA's approximation, within about a degree)."""
    ts = ts.astimezone(UTC)
    hour = ts.hour + ts.minute / 60 + ts.second / 3600
    gamma = 2 * math.pi / 365 * (ts.timetuple().tm_yday - 1 + (hour - 12) / 24)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    true_solar_minutes = hour * 60 + eqtime + 4 * longitude
    hour_angle = math.radians(true_solar_minutes / 4 - 180)
    lat = math.radians(latitude)
    cos_zenith = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(hour_angle)
    return 90.0 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))


def clear_sky_irradiance(elevation_deg: float) -> float:
    """Global horizontal irradiance under a clear sky, W/m² (Haurwitz)."""
    if elevation_deg <= 0:
        return 0.0
    cos_zenith = math.sin(math.radians(elevation_deg))
    return 1098.0 * cos_zenith * math.exp(-0.057 / cos_zenith)


def _clip(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


@dataclass
class _Walk:
    """A mean-reverting random walk (Ornstein-Uhlenbeck in discrete steps)."""

    value: float
    mean: float
    reversion: float  # per second
    volatility: float  # per sqrt(second)
    low: float
    high: float

    def advance(self, rng: random.Random, dt: float) -> float:
        if dt > 0:
            pull = 1 - math.exp(-self.reversion * dt)
            self.value += (self.mean - self.value) * pull + rng.gauss(0, self.volatility * math.sqrt(dt))
            self.value = _clip(self.value, self.low, self.high)
        return self.value


@dataclass
class _Flow:
    """One meter's instant values before the electrical details are derived."""

    power_w: float
    reactive_var: float
    thd_i_pct: float
    phase_weights: tuple[float, float, float]


@dataclass
class DepotSimulator:
    """The demo depot's state: registers, battery charge, EV session, weather and grid walks."""

    timezone: str = "Europe/Berlin"
    latitude: float | None = None
    longitude: float | None = None
    seed: int | None = None
    registers: dict[str, float] = field(default_factory=dict)
    export_registers: dict[str, float] = field(default_factory=dict)
    soc: float = 0.5
    ev_power_kw: float = 0.0
    ev_remaining_kwh: float = 0.0
    last_ts: datetime | None = None
    # Supply disturbances seen at the grid connection: sags and swells per hour on average
    # (0: none, so a seeded run stays repeatable). The PQ-class instrument is the grid meter.
    disturbances_per_hour: float = 0.0
    # While set (a tripped charger breaker), no EV session runs.
    ev_blocked: bool = False

    def __post_init__(self) -> None:
        self.tz = ZoneInfo(self.timezone)
        self.rng = random.Random(self.seed)
        if self.latitude is None or self.longitude is None:
            # No coordinates: put the sun where the time zone says noon is, mid-latitude.
            offset = datetime.now(self.tz).utcoffset() or timedelta(0)
            self.latitude = 48.0 if self.latitude is None else self.latitude
            self.longitude = offset.total_seconds() / 240.0 if self.longitude is None else self.longitude
        self.cloud = _Walk(0.9, 0.8, 1 / 1800, 0.01, 0.15, 1.0)
        self.load_noise = _Walk(1.0, 1.0, 1 / 300, 0.004, 0.85, 1.15)
        self.voltage = _Walk(230.0, 230.0, 1 / 600, 0.05, 224.0, 236.0)
        self.imbalance = [_Walk(0.0, 0.0, 1 / 900, 0.02, -2.0, 2.0) for _ in range(3)]
        self.frequency = _Walk(50.0, 50.0, 1 / 60, 0.002, 49.92, 50.08)
        self.thd_v = _Walk(2.2, 2.2, 1 / 600, 0.01, 1.2, 3.8)

    # State that survives a restart of the simulator (JSON-friendly).
    def state(self) -> dict:
        return {
            "registers": self.registers,
            "export_registers": self.export_registers,
            "soc": self.soc,
            "ev_power_kw": self.ev_power_kw,
            "ev_remaining_kwh": self.ev_remaining_kwh,
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
        }

    def restore(self, state: dict) -> None:
        self.registers = {k: float(v) for k, v in (state.get("registers") or {}).items()}
        self.export_registers = {k: float(v) for k, v in (state.get("export_registers") or {}).items()}
        self.soc = _clip(float(state.get("soc", self.soc)), BATTERY_SOC_MIN, BATTERY_SOC_MAX)
        self.ev_power_kw = float(state.get("ev_power_kw", 0.0))
        self.ev_remaining_kwh = float(state.get("ev_remaining_kwh", 0.0))
        last_ts = state.get("last_ts")
        self.last_ts = datetime.fromisoformat(last_ts) if last_ts else None

    def _ensure_registers(self, now: datetime) -> None:
        hours = max(0.0, (now - REGISTER_EPOCH).total_seconds() / 3600)
        for kind, rate in REGISTER_RATE_KW.items():
            self.registers.setdefault(kind, round(rate * hours, 3))
        for kind, rate in EXPORT_RATE_KW.items():
            self.export_registers.setdefault(kind, round(rate * hours, 3))

    # -- the physics -----------------------------------------------------------------------
    def _pv_w(self, now: datetime, dt: float) -> tuple[float, float]:
        elevation = solar_elevation_deg(now, self.latitude, self.longitude)
        cloud = self.cloud.advance(self.rng, dt)
        if elevation <= 0:
            return 0.0, 0.0
        irradiance = clear_sky_irradiance(elevation) * cloud * self.rng.uniform(0.97, 1.03)
        power_kw = min(PV_INVERTER_KW, PV_PEAK_KW * irradiance / 1000 * PV_LOSSES)
        return power_kw * 1000, irradiance

    def _load_w(self, local: datetime, dt: float) -> float:
        hour = local.hour + local.minute / 60
        base = LOAD_PROFILE_KW[int(hour) % 24]
        following = LOAD_PROFILE_KW[(int(hour) + 1) % 24]
        kw = base + (following - base) * (hour - int(hour))
        if local.weekday() >= 5:
            kw *= WEEKEND_LOAD_FACTOR
        kw *= self.load_noise.advance(self.rng, dt)
        kw *= self.rng.uniform(0.98, 1.02)  # sample noise
        return kw * 1000

    def _ev_w(self, local: datetime, dt: float) -> float:
        if self.ev_blocked:
            self.ev_power_kw, self.ev_remaining_kwh = 0.0, 0.0
            return 0.0
        if self.ev_power_kw > 0:
            self.ev_remaining_kwh -= self.ev_power_kw * dt / 3600
            if self.ev_remaining_kwh <= 0:
                self.ev_power_kw, self.ev_remaining_kwh = 0.0, 0.0
        elif dt > 0:
            rate = EV_ARRIVALS_PER_HOUR[local.hour]
            if self.rng.random() < 1 - math.exp(-rate * dt / 3600):
                self.ev_power_kw = self.rng.uniform(*EV_POWER_KW)
                self.ev_remaining_kwh = self.rng.uniform(*EV_SESSION_KWH)
        if self.ev_power_kw <= 0:
            return 0.0
        ripple = self.rng.uniform(-0.01, 0.01)
        return _clip(self.ev_power_kw * (1 + ripple), *EV_POWER_KW) * 1000

    def _battery_w(self, local: datetime, dt: float, surplus_w: float) -> float:
        """+ charging from PV surplus (and off-peak at night up to a target), - discharging at the
        evening peak, within SoC limits."""
        dt_h = dt / 3600
        max_w = BATTERY_MAX_KW * 1000
        if surplus_w > 200 and self.soc < BATTERY_SOC_MAX:
            charge = min(surplus_w, max_w)
            if dt_h > 0:
                room_wh = (BATTERY_SOC_MAX - self.soc) * BATTERY_KWH * 1000 / BATTERY_EFFICIENCY
                charge = min(charge, room_wh / dt_h)
            return charge
        if NIGHT_CHARGE[0] <= local.hour < NIGHT_CHARGE[1] and self.soc < NIGHT_SOC_TARGET:
            charge = NIGHT_CHARGE_KW * 1000
            if dt_h > 0:
                room_wh = (NIGHT_SOC_TARGET - self.soc) * BATTERY_KWH * 1000 / BATTERY_EFFICIENCY
                charge = min(charge, room_wh / dt_h)
            return charge
        demand_w = -surplus_w
        if EVENING_PEAK[0] <= local.hour < EVENING_PEAK[1] and demand_w > 200 and self.soc > BATTERY_SOC_MIN:
            discharge = min(demand_w, max_w)
            if dt_h > 0:
                available_wh = (self.soc - BATTERY_SOC_MIN) * BATTERY_KWH * 1000 * BATTERY_EFFICIENCY
                discharge = min(discharge, available_wh / dt_h)
            return -discharge
        return 0.0

    def step(self, now: datetime) -> dict[str, dict]:
        """Advance to `now` (aware) and return the reading of each meter kind."""
        now = now.astimezone(UTC).replace(microsecond=0)
        self._ensure_registers(now)
        dt = 0.0 if self.last_ts is None else (now - self.last_ts).total_seconds()
        dt = _clip(dt, 0.0, MAX_INTEGRATION_SECONDS)
        self.last_ts = now
        local = now.astimezone(self.tz)

        pv_w, irradiance = self._pv_w(now, dt)
        load_w = self._load_w(local, dt)
        ev_w = self._ev_w(local, dt)
        # Powers are rounded before the balance so the grid equation holds on the wire too.
        pv_w, load_w, ev_w = round(pv_w, 1), round(load_w, 1), round(ev_w, 1)
        battery_w = round(self._battery_w(local, dt, pv_w - load_w - ev_w), 1)
        grid_w = round(load_w + ev_w + battery_w - pv_w, 1)

        dt_h = dt / 3600
        if battery_w > 0:
            self.soc += battery_w / 1000 * dt_h * BATTERY_EFFICIENCY / BATTERY_KWH
        else:
            self.soc += battery_w / 1000 * dt_h / BATTERY_EFFICIENCY / BATTERY_KWH
        self.soc = _clip(self.soc, BATTERY_SOC_MIN, BATTERY_SOC_MAX)
        powers = {"grid": grid_w, "load": load_w, "pv": pv_w, "battery": battery_w, "ev_charger": ev_w}
        for kind, power in powers.items():
            if power >= 0:
                self.registers[kind] += power / 1000 * dt_h
            else:
                self.export_registers[kind] = self.export_registers.get(kind, 0.0) - power / 1000 * dt_h

        flows = self._flows(powers)
        voltage = self.voltage.advance(self.rng, dt) + max(0.0, -grid_w) / 1000 * 0.04  # export lifts voltage
        offsets = [walk.advance(self.rng, dt) for walk in self.imbalance]
        frequency = self.frequency.advance(self.rng, dt)
        thd_v = self.thd_v.advance(self.rng, dt)
        timestamp = now.isoformat().replace("+00:00", "Z")

        readings: dict[str, dict] = {}
        for kind in KINDS:
            flow = flows[kind]
            phase_v = [round(voltage + offset + self.rng.gauss(0, 0.1), 1) for offset in offsets]
            # Currents and power factor follow from the values as sent, so a reading is consistent.
            power, reactive = round(flow.power_w, 1), round(flow.reactive_var, 1)
            reading = {
                "timestamp": timestamp,
                "total_power": power,
                "reactive_power": reactive,
                "total_energy": round(self.registers[kind], 4),
                "voltage_a": phase_v[0],
                "voltage_b": phase_v[1],
                "voltage_c": phase_v[2],
                "frequency": round(frequency + self.rng.gauss(0, 0.001), 3),
                "thd_v_pct": round(thd_v + self.rng.gauss(0, 0.05), 2),
            }
            if kind in self.export_registers:
                reading["export_energy"] = round(self.export_registers[kind], 4)
            apparent = math.hypot(power, reactive)
            for phase, weight, volts in zip("abc", flow.phase_weights, phase_v, strict=True):
                reading[f"current_{phase}"] = round(apparent * weight / volts, 2)
            if apparent >= 1.0:
                reading["power_factor"] = round(abs(power) / apparent, 3)
                reading["thd_i_pct"] = round(flow.thd_i_pct, 2)
            readings[kind] = reading
        readings["pv"]["irradiance_w_m2"] = round(irradiance, 1)
        readings["battery"]["soc_pct"] = round(self.soc * 100, 2)
        rate = self.disturbances_per_hour
        if rate > 0 and dt > 0 and self.rng.random() < 1 - math.exp(-rate * dt / 3600):
            disturb(readings["grid"], self.rng.choice((SAG_FACTOR, SWELL_FACTOR)))
        return readings

    def _flows(self, powers: dict[str, float]) -> dict[str, _Flow]:
        rng = self.rng
        load_pf = rng.uniform(0.92, 0.96)
        pv_rated = PV_INVERTER_KW * 1000
        pv_pf = 0.99 if powers["pv"] > 0.2 * pv_rated else 0.96

        def reactive(power: float, pf: float, sign: float = 1.0) -> float:
            return sign * abs(power) * math.tan(math.acos(pf))

        def balanced() -> tuple[float, float, float]:
            a, b = rng.uniform(-0.01, 0.01), rng.uniform(-0.01, 0.01)
            return (1 / 3 + a, 1 / 3 + b, 1 / 3 - a - b)

        load_weights = (0.36 + rng.uniform(-0.01, 0.01), 0.31 + rng.uniform(-0.01, 0.01))
        flows = {
            "load": _Flow(
                powers["load"],
                reactive(powers["load"], load_pf),
                rng.uniform(8.0, 14.0),
                (*load_weights, 1 - sum(load_weights)),
            ),
            "pv": _Flow(
                powers["pv"],
                reactive(powers["pv"], pv_pf, -1.0),  # the inverter absorbs a little reactive power
                3.0 + 20.0 * (1 - min(1.0, powers["pv"] / pv_rated)) ** 3,
                balanced(),
            ),
            "battery": _Flow(powers["battery"], reactive(powers["battery"], 0.98), rng.uniform(3.0, 5.0), balanced()),
            "ev_charger": _Flow(
                powers["ev_charger"], reactive(powers["ev_charger"], 0.99), rng.uniform(3.0, 6.0), balanced()
            ),
        }
        grid_q = sum(flow.reactive_var for flow in flows.values())
        # Harmonic currents add in quadrature; relative to a small grid current they look large.
        harmonic = math.sqrt(
            sum((math.hypot(f.power_w, f.reactive_var) * f.thd_i_pct / 100) ** 2 for f in flows.values())
        )
        grid_s = math.hypot(powers["grid"], grid_q)
        grid_thd = min(80.0, 100 * harmonic / grid_s) if grid_s >= 1.0 else 0.0
        grid_weights = [
            sum(math.hypot(f.power_w, f.reactive_var) * f.phase_weights[i] for f in flows.values()) for i in range(3)
        ]
        total = sum(grid_weights) or 1.0
        flows["grid"] = _Flow(powers["grid"], grid_q, grid_thd, tuple(w / total for w in grid_weights))
        return flows
