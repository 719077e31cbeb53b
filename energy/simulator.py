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

import hashlib
import hmac
import logging
import math
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import orjson

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


# -- sending ---------------------------------------------------------------------------------
def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class MeterCredential:
    id: int
    kind: str
    device_key: str
    device_secret: str
    name: str = ""


@dataclass
class PostResult:
    sent: int = 0
    stored: int = 0
    duplicates: int = 0
    dropped: int = 0
    pending: int = 0
    error: str | None = None
    retry_after: float | None = None


class ReadingSender:
    """Posts each meter's readings with its key and an HMAC signature; keeps what could not be
    sent (server down, 5xx, 429) and sends the backlog in one bulk request when it can."""

    BULK_PATH = "/api/energy/energy-data/bulk"
    SINGLE_PATH = "/api/energy/energy-data/"

    def __init__(self, base_url: str, meters: list[MeterCredential], *, client: httpx.Client | None = None,
                 max_backlog: int = 5000, timeout: float = 10.0):  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.meters = {meter.kind: meter for meter in meters}
        self.client = client or httpx.Client(timeout=timeout)
        self.backlog: dict[str, deque[dict]] = {kind: deque(maxlen=max_backlog) for kind in self.meters}
        self.server_down = False
        self.connected = False  # has the server ever answered?

    def close(self) -> None:
        self.client.close()

    def send(self, readings: dict[str, dict]) -> PostResult:
        """Queue one reading per meter and try to send every meter's backlog."""
        total = PostResult()
        for kind, reading in readings.items():
            if kind in self.backlog:
                self.backlog[kind].append(reading)
        for kind, meter in self.meters.items():
            result = self._flush(meter, self.backlog[kind])
            total.sent += result.sent
            total.stored += result.stored
            total.duplicates += result.duplicates
            total.dropped += result.dropped
            total.error = total.error or result.error
            if result.retry_after is not None:
                total.retry_after = max(total.retry_after or 0.0, result.retry_after)
            if result.error and result.retry_after is None and self.server_down:
                break  # the server is unreachable: don't wait on a timeout per meter
        total.pending = sum(len(queue) for queue in self.backlog.values())
        return total

    def _flush(self, meter: MeterCredential, queue: deque[dict]) -> PostResult:
        if not queue:
            return PostResult()
        batch = list(queue)[:1000]
        single = len(batch) == 1
        body = orjson.dumps(batch[0] if single else batch)
        headers = {
            "Content-Type": "application/json",
            "X-Device-Key": meter.device_key,
            "X-Signature": signature(meter.device_secret, body),
        }
        url = self.base_url + (self.SINGLE_PATH if single else self.BULK_PATH)
        try:
            response = self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            if not self.connected:
                # Started beside the server (make run): it may still be booting.
                logger.info("waiting for the server at %s (%s)", self.base_url, exc)
            elif not self.server_down:
                logger.warning("server unreachable at %s (%s); keeping readings and retrying", self.base_url, exc)
            self.server_down = True
            return PostResult(error=f"{type(exc).__name__}: {exc}")
        if self.server_down and self.connected:
            logger.warning("server is back at %s", self.base_url)
        self.server_down = False
        self.connected = True
        status = response.status_code
        if status in (200, 201):
            for _ in batch:
                queue.popleft()
            payload = response.json()
            if single:
                duplicate = bool(payload.get("duplicate")) or status == 200
                return PostResult(sent=1, stored=0 if duplicate else 1, duplicates=1 if duplicate else 0)
            return PostResult(sent=len(batch), stored=payload.get("stored", 0), duplicates=payload.get("duplicates", 0))
        detail = response.text[:500]
        if status == 429:
            retry_after = float(response.headers.get("Retry-After") or 5)
            logger.warning("meter %s rate limited; retrying in %.0f s", meter.kind, retry_after)
            return PostResult(error="429", retry_after=retry_after)
        if status >= 500:
            logger.warning("server error %s for meter %s; keeping readings: %s", status, meter.kind, detail)
            return PostResult(error=str(status))
        # 4xx: resending the same body cannot succeed; drop it and say why.
        for _ in batch:
            queue.popleft()
        hint = " (were the device keys rotated? rerun `manage.py demo_setup`)" if status in (401, 403) else ""
        logger.error("meter %s: %s rejected %d reading(s)%s: %s", meter.kind, status, len(batch), hint, detail)
        return PostResult(dropped=len(batch), error=str(status))


class MqttReadingSender:
    """Publishes each meter's readings over MQTT as a device does: logged in as its MQTT id
    (`meter-<id>`) with its device key, on `<prefix>/meter-<id>/readings` at QoS 1, and reading
    its own `…/ack` topic for what was stored (docs/live.md, "MQTT identity"). Readings wait in
    a backlog while a meter is not logged in (broker down, login refused) and go out once it is."""

    def __init__(self, url: str, meters: list[MeterCredential], *, prefix: str = "joulepoint",
                 max_backlog: int = 5000, connect_timeout: float = 5.0):  # fmt: skip
        from urllib.parse import urlsplit

        import paho.mqtt.client as mqtt

        parts = urlsplit(url)
        self.prefix = prefix
        self.meters = {meter.kind: meter for meter in meters}
        self.acks: deque[dict] = deque()  # appended by paho's network threads
        self.backlog: dict[str, deque[dict]] = {m.kind: deque(maxlen=max_backlog) for m in meters}
        self.in_flight: list = []  # paho's MQTTMessageInfo of publishes not yet acknowledged
        self.refused: set[str] = set()  # logins the broker turned away
        self.clients = {}
        for meter in meters:
            login = f"meter-{meter.id}"
            # A client id of its own per run: a second simulator must not take this one's session over.
            client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2,
                client_id=f"sim-{login}-{random.getrandbits(32):08x}",
                protocol=mqtt.MQTTv5,
            )
            client.username_pw_set(login, meter.device_key)
            if parts.scheme == "mqtts":
                client.tls_set()
            client.reconnect_delay_set(1, 10)
            client.on_connect = self._on_connect(login)
            client.on_message = lambda c, u, message: self.acks.append(orjson.loads(message.payload))
            client.connect_async(parts.hostname or "127.0.0.1", parts.port or 1883)
            client.loop_start()
            self.clients[meter.kind] = client
        self._wait_for_logins(connect_timeout)

    def _wait_for_logins(self, timeout: float) -> None:
        """Until every meter is logged in or refused (the first tick, or --once, finds them ready);
        a broker still down is no error: readings wait in the backlog."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            not client.is_connected() and f"meter-{self.meters[kind].id}" not in self.refused
            for kind, client in self.clients.items()
        ):
            time.sleep(0.05)

    def _on_connect(self, login: str):
        def on_connect(client, userdata, flags, reason_code, properties) -> None:
            if reason_code.is_failure:
                # A refused login (a rotated key): paho retries, the log says why.
                logger.error("MQTT login %s refused: %s (were the device keys rotated?)", login, reason_code)
                self.refused.add(login)
                return
            self.refused.discard(login)
            client.subscribe(f"{self.prefix}/{login}/ack", qos=1)

        return on_connect

    def send(self, readings: dict[str, dict]) -> PostResult:
        """Publish one reading per meter; `stored`/`duplicates` count the acks arrived since."""
        result = PostResult()
        for kind, reading in readings.items():
            if kind in self.backlog:
                self.backlog[kind].append(reading)
        for kind, meter in self.meters.items():
            client, queue = self.clients[kind], self.backlog[kind]
            topic = f"{self.prefix}/meter-{meter.id}/readings"
            while queue and client.is_connected():
                # Once handed to paho at QoS 1, a message outlives a short disconnect (resent on reconnect).
                self.in_flight.append(client.publish(topic, orjson.dumps(queue.popleft()), qos=1))
                result.sent += 1
        result.pending = sum(len(queue) for queue in self.backlog.values())
        self.in_flight = [info for info in self.in_flight if not _published(info)]
        while self.acks:
            ack = self.acks.popleft()
            result.stored += ack.get("stored", 0)
            result.duplicates += ack.get("duplicates", 0)
            if ack.get("type") == "error":
                result.dropped += 1
                result.error = result.error or f"{ack.get('code')}: {ack.get('detail')}"
                logger.error("MQTT reading refused: %s", ack)
        return result

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect once the broker has what was published (a few seconds at most)."""
        for info in self.in_flight:
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):  # the connection was lost meanwhile
                continue
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()


def _published(info) -> bool:
    try:
        return info.is_published()
    except (RuntimeError, ValueError):  # published while the connection was going: paho resends it
        return False


class SplitSender:
    """The HTTP sender for some meters and the MQTT sender for the others, summed per tick."""

    def __init__(self, *senders):
        self.senders = senders

    def send(self, readings: dict[str, dict]) -> PostResult:
        total = PostResult()
        for sender in self.senders:
            result = sender.send({kind: r for kind, r in readings.items() if kind in sender.meters})
            for name in ("sent", "stored", "duplicates", "dropped", "pending"):
                setattr(total, name, getattr(total, name) + getattr(result, name))
            total.error = total.error or result.error
            if result.retry_after is not None:
                total.retry_after = max(total.retry_after or 0.0, result.retry_after)
        return total

    def close(self) -> None:
        for sender in self.senders:
            sender.close()
