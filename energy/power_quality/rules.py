"""Power quality and protection rules: pure functions over a meter's readings in time order.

No database here. energy.power_quality.detection feeds these rules samples (from the batch being ingested
or from stored readings) and persists what they find. Standards cited where each rule lives:

- IEEE Std 1159 ("Recommended Practice for Monitoring Electric Power Quality"), Table 2
  "Categories and typical characteristics of power system electromagnetic phenomena": sag
  0.1-0.9 pu, swell above 1.1 pu, interruption below 0.1 pu; duration classes instantaneous
  (0.5-30 cycles), momentary (30 cycles-3 s), temporary (3 s-1 min) and long duration
  (> 1 min: sustained interruption, undervoltage, overvoltage); voltage imbalance and
  waveform distortion (THD) are steady-state phenomena.
- Voltage unbalance: the IEEE phase voltage unbalance rate (PVUR) and the NEMA (MG 1) line
  voltage unbalance rate (LVUR), both "largest deviation from the average of the three
  voltages, divided by that average, x 100" — over phase-neutral and line-line voltages
  respectively. (Vmax - Vmin)/Vavg is a common mistake that roughly doubles the figure.

A value exactly at a threshold is normal: events need a value strictly beyond it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

SAG = "sag"
SWELL = "swell"
INTERRUPTION = "interruption"
THD = "thd"
IMBALANCE = "imbalance"
PQ_KINDS = (SAG, SWELL, INTERRUPTION, THD, IMBALANCE)

# IEEE 1159: an interruption is a drop below 0.1 pu; fixed by the standard, not configurable.
INTERRUPTION_PU = 0.1

PHASE_FIELDS = (("a", "voltage_a"), ("b", "voltage_b"), ("c", "voltage_c"))
LINE_FIELDS = (("ab", "voltage_ab"), ("bc", "voltage_bc"), ("ca", "voltage_ca"))

INSTANTANEOUS = "instantaneous"
MOMENTARY = "momentary"
TEMPORARY = "temporary"
LONG_DURATION = "long_duration"

# Relative tolerance for "at the threshold": 0.9 x 230 is 207.00000000000003 in binary
# floating point, and a meter reporting 207.0 V is at the threshold, not below it.
_REL_TOL = 1e-9


def _below(value: float, limit: float) -> bool:
    return value < limit and not math.isclose(value, limit, rel_tol=_REL_TOL)


def _above(value: float, limit: float) -> bool:
    return value > limit and not math.isclose(value, limit, rel_tol=_REL_TOL)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """A meter's effective configuration (stored or default), as the rules need it."""

    nominal_voltage: float
    phases: int
    sag_pu: float
    swell_pu: float
    thd_pct: float
    imbalance_pct: float
    earth_leakage_ma: float
    nominal_frequency_hz: float

    def threshold_for(self, kind: str) -> float:
        return {
            SAG: self.sag_pu,
            SWELL: self.swell_pu,
            INTERRUPTION: INTERRUPTION_PU,
            THD: self.thd_pct,
            IMBALANCE: self.imbalance_pct,
        }[kind]


@dataclass(slots=True)
class Sample:
    """The fields of one reading that power quality and protection look at. (Not frozen: a
    frozen dataclass assigns through object.__setattr__, which made building one per ingested
    reading cost more than the rules themselves.)"""

    ts: datetime
    voltages: tuple[float | None, float | None, float | None]
    line_voltages: tuple[float | None, float | None, float | None]
    thd_v_pct: float | None
    earth_leakage_ma: float | None
    breaker_state: str | None
    carries_pq: bool
    carries_protection: bool


_NONE3 = (None, None, None)


def sample_from(ts: datetime, values: Mapping[str, object], extra: Mapping[str, object]) -> Sample:
    """Build a Sample from a reading's typed values and its `extra` (validated or stored).

    On the ingest hot path (one call per stored reading): plain lookups, no conversions;
    validation has already made every measurement a float.
    """
    get, eget = values.get, extra.get
    voltages = (get("voltage_a"), get("voltage_b"), get("voltage_c"))
    line_voltages = (eget("voltage_ab"), eget("voltage_bc"), eget("voltage_ca"))
    thd = get("thd_v_pct")
    leakage = eget("earth_leakage_ma")
    breaker = eget("breaker_state")
    if not isinstance(breaker, str):
        breaker = None
    return Sample(
        ts,
        voltages,
        line_voltages,
        thd,
        leakage,
        breaker,
        thd is not None or voltages != _NONE3 or line_voltages != _NONE3,
        leakage is not None or breaker is not None,
    )


@dataclass(frozen=True, slots=True)
class Check:
    """One rule evaluated on one reading: violating or not, the reading's magnitude in the
    rule's unit, and the phases that violated (or, for imbalance, deviated most)."""

    violating: bool
    value: float
    phases: tuple[str, ...] = ()
    method: str = ""


def _phase_pu(sample: Sample, limits: Thresholds) -> list[tuple[str, float]]:
    # A single-phase meter's voltage is voltage_a; anything it sends on b/c is ignored.
    fields = PHASE_FIELDS[:1] if limits.phases == 1 else PHASE_FIELDS
    return [
        (phase, voltage / limits.nominal_voltage)
        for (phase, _name), voltage in zip(fields, sample.voltages, strict=False)
        if voltage is not None
    ]


def unbalance_pct(voltages: Iterable[float]) -> tuple[float, int]:
    """IEEE PVUR / NEMA LVUR: max |V_i - V_avg| / V_avg x 100, and the index of that phase.

    The same formula serves phase-neutral (IEEE) and line-line (NEMA) voltages. Not
    (V_max - V_min) / V_avg, which roughly doubles the figure. 0 when the average is 0 (a
    dead three-phase supply is an interruption, not an unbalance).
    """
    values = list(voltages)
    average = sum(values) / len(values)
    if average <= 0:
        return 0.0, 0
    deviations = [abs(v - average) for v in values]
    worst = max(range(len(values)), key=deviations.__getitem__)
    return deviations[worst] / average * 100.0, worst


def check(kind: str, sample: Sample, limits: Thresholds) -> Check | None:
    """Evaluate one rule on one reading; None when the reading lacks the rule's measurement
    (such a reading neither extends nor closes an event)."""
    if kind in (SAG, SWELL, INTERRUPTION):
        per_phase = _phase_pu(sample, limits)
        if not per_phase:
            return None
        if kind == SWELL:
            # IEEE 1159: swell is an rms increase above 1.1 pu (configurable here).
            phases = tuple(p for p, pu in per_phase if _above(pu, limits.swell_pu))
            return Check(bool(phases), max(pu for _p, pu in per_phase), phases)
        # IEEE 1159: sag is 0.1-0.9 pu, interruption below 0.1 pu. A sag event here is "some
        # phase below the sag threshold", so an interruption also lies inside a sag event.
        limit = limits.sag_pu if kind == SAG else INTERRUPTION_PU
        phases = tuple(p for p, pu in per_phase if _below(pu, limit))
        return Check(bool(phases), min(pu for _p, pu in per_phase), phases)
    if kind == THD:
        if sample.thd_v_pct is None:
            return None
        return Check(_above(sample.thd_v_pct, limits.thd_pct), sample.thd_v_pct)
    if kind == IMBALANCE:
        if limits.phases != 3:
            return None  # a single-phase supply has no unbalance
        if all(v is not None for v in sample.line_voltages):
            names, voltages, method = ("ab", "bc", "ca"), sample.line_voltages, "nema_lvur"
        elif all(v is not None for v in sample.voltages):
            names, voltages, method = ("a", "b", "c"), sample.voltages, "ieee_pvur"
        else:
            return None
        pct, worst = unbalance_pct(voltages)
        violating = _above(pct, limits.imbalance_pct)
        return Check(violating, pct, (names[worst],) if violating else (), method)
    raise ValueError(f"unknown PQ kind {kind!r}")


# Which way is worse for each rule's magnitude.
LOWER_IS_WORSE = frozenset({SAG, INTERRUPTION})


def unit_for(kind: str) -> str:
    return "pu" if kind in (SAG, SWELL, INTERRUPTION) else "%"


@dataclass(slots=True)
class Span:
    """An event as the rules see it: a maximal run of violating readings of one kind."""

    kind: str
    start: datetime
    last_violation_at: datetime
    worst: float
    phases: set[str] = field(default_factory=set)
    count: int = 0
    method: str = ""
    end: datetime | None = None

    def absorb(self, result: Check, ts: datetime) -> None:
        self.last_violation_at = ts
        self.count += 1
        self.phases.update(result.phases)
        if self.kind in LOWER_IS_WORSE:
            self.worst = min(self.worst, result.value)
        else:
            self.worst = max(self.worst, result.value)
        if result.method:
            self.method = result.method


def scan(kind: str, samples: Iterable[Sample], limits: Thresholds, open_span: Span | None) -> list[Span]:
    """Run one rule over samples in timestamp order, continuing `open_span` if given.

    Returns every span touched, in order: closed ones with `end` set, and at most one still
    open (the last). An event opens at the first violating reading and closes at the first
    normal reading after it; readings without the measurement are skipped.
    """
    opened = {kind: open_span} if open_span is not None else {}
    return scan_all(samples, limits, opened, kinds=(kind,))[kind]


def scan_all(
    samples: Iterable[Sample], limits: Thresholds, open_spans: dict[str, Span], kinds: Iterable[str] = PQ_KINDS
) -> dict[str, list[Span]]:
    """`scan` for several rules in one pass over the samples (the ingest hot path).

    Each reading is first screened with plain arithmetic on its lowest and highest phase
    voltage, its THD and its unbalance, which decides "violating or not" exactly as `check`
    does (the comparisons are monotonic in those extremes); `check` itself, which finds the
    phases and magnitudes, runs only on violating readings.
    """
    kinds = tuple(kinds)
    spans: dict[str, list[Span]] = {k: ([open_spans[k]] if k in open_spans else []) for k in kinds}
    current: dict[str, Span | None] = {k: open_spans.get(k) for k in kinds}
    want_sag, want_swell, want_interruption = SAG in kinds, SWELL in kinds, INTERRUPTION in kinds
    want_voltage = want_sag or want_swell or want_interruption
    want_thd = THD in kinds
    want_imbalance = IMBALANCE in kinds and limits.phases == 3
    single_phase = limits.phases == 1
    nominal = limits.nominal_voltage
    sag_pu, swell_pu, thd_pct, imbalance_pct = limits.sag_pu, limits.swell_pu, limits.thd_pct, limits.imbalance_pct

    def step(kind: str, violating: bool, sample: Sample) -> None:
        span = current[kind]
        if violating:
            result = check(kind, sample, limits)
            if span is None:
                span = current[kind] = Span(kind=kind, start=sample.ts, last_violation_at=sample.ts, worst=result.value)
                spans[kind].append(span)
            span.absorb(result, sample.ts)
        elif span is not None:
            span.end = sample.ts
            current[kind] = None

    # The loop runs once per ingested reading: `step` is called only when a reading violates
    # a rule or may close an open event; a normal reading with nothing open costs comparisons.
    for sample in samples:
        if not sample.carries_pq:
            continue
        if want_voltage:
            va, vb, vc = sample.voltages
            if single_phase:
                present = (va,) if va is not None else ()
            elif va is not None and vb is not None and vc is not None:
                present = sample.voltages
            else:
                present = tuple(v for v in (va, vb, vc) if v is not None)
            if present:
                low, high = min(present) / nominal, max(present) / nominal
                if want_sag:
                    violating = low < sag_pu and _below(low, sag_pu)
                    if violating or current[SAG] is not None:
                        step(SAG, violating, sample)
                if want_interruption:
                    violating = low < INTERRUPTION_PU and _below(low, INTERRUPTION_PU)
                    if violating or current[INTERRUPTION] is not None:
                        step(INTERRUPTION, violating, sample)
                if want_swell:
                    violating = high > swell_pu and _above(high, swell_pu)
                    if violating or current[SWELL] is not None:
                        step(SWELL, violating, sample)
        if want_thd:
            thd = sample.thd_v_pct
            if thd is not None:
                violating = thd > thd_pct and _above(thd, thd_pct)
                if violating or current[THD] is not None:
                    step(THD, violating, sample)
        if want_imbalance:
            # NEMA on line-line voltages when all three are sent, else IEEE on phase voltages.
            if None not in sample.line_voltages:
                a, b, c = sample.line_voltages
            elif None not in sample.voltages:
                a, b, c = sample.voltages
            else:
                continue
            # unbalance_pct inlined, with the same arithmetic so the screen agrees with check().
            average = (a + b + c) / 3
            pct = max(abs(a - average), abs(b - average), abs(c - average)) / average * 100.0 if average > 0 else 0.0
            violating = pct > imbalance_pct and _above(pct, imbalance_pct)
            if violating or current[IMBALANCE] is not None:
                step(IMBALANCE, violating, sample)
    return spans


def duration_class(seconds: float, nominal_frequency_hz: float) -> str:
    """IEEE 1159 duration class: instantaneous 0.5-30 cycles, momentary 30 cycles-3 s,
    temporary 3 s-1 min, long duration over 1 min (each upper bound inclusive).

    Readings arrive every second or more, so an event's duration is bounded below by the
    reporting interval; anything under half a cycle is still called instantaneous.
    """
    if seconds * nominal_frequency_hz <= 30:
        return INSTANTANEOUS
    if seconds <= 3:
        return MOMENTARY
    if seconds <= 60:
        return TEMPORARY
    return LONG_DURATION


def ieee_category(kind: str, klass: str) -> str:
    """The IEEE 1159 phenomenon name for a closed event of this kind and duration class."""
    if kind == SAG:
        # Long-duration undervoltage: IEEE 1159 gives 0.8-0.9 pu; a deeper sag lasting over a
        # minute has no category of its own and is reported as undervoltage too.
        return "undervoltage" if klass == LONG_DURATION else f"{klass}_sag"
    if kind == SWELL:
        return "overvoltage" if klass == LONG_DURATION else f"{klass}_swell"
    if kind == INTERRUPTION:
        # IEEE 1159 has no instantaneous interruption: under 3 s it is momentary.
        if klass in (INSTANTANEOUS, MOMENTARY):
            return "momentary_interruption"
        return "sustained_interruption" if klass == LONG_DURATION else "temporary_interruption"
    if kind == THD:
        return "waveform_distortion"
    return "voltage_imbalance"


# Protection derived from readings -----------------------------------------------------------

TRIP = "trip"
EARTH_LEAKAGE = "earth_leakage"
BREAKER_OPEN = "breaker_open"
BREAKER_CLOSED = "breaker_closed"


@dataclass(frozen=True, slots=True)
class Transition:
    """A protection event derived from readings: what happened at which reading."""

    kind: str
    ts: datetime
    earth_leakage_ma: float | None = None


def physical_breaker(state: str) -> str:
    """`tripped` is an open breaker that protection opened."""
    return "open" if state == "tripped" else state


def breaker_transitions(samples: Iterable[Sample], previous: str) -> tuple[list[Transition], str]:
    """Events at each reading whose breaker position differs from the previous reading's.

    `previous` is the position of the latest earlier reading ("unknown" if none): an unknown
    breaker is taken to be closed, its normal position, so a first reading saying "closed" is
    no event and a first "open" is. Returns the events and the position after the last sample.
    """
    events: list[Transition] = []
    state = "closed" if previous == "unknown" else previous
    seen = previous
    for sample in samples:
        if sample.breaker_state is None:
            continue
        new = physical_breaker(sample.breaker_state)
        if new != state:
            if new == "closed":
                events.append(Transition(BREAKER_CLOSED, sample.ts))
            elif sample.breaker_state == "tripped":
                events.append(Transition(TRIP, sample.ts))
            else:
                events.append(Transition(BREAKER_OPEN, sample.ts))
        state = seen = new
    return events, seen


def leakage_over(value_ma: float, limit_ma: float) -> bool:
    return _above(value_ma, limit_ma)


def leakage_transitions(
    samples: Iterable[Sample], limit_ma: float, previous_over: bool
) -> tuple[list[Transition], bool]:
    """An earth_leakage event at each reading where the residual current rises above the
    meter's limit (the previous reading carrying it was at or under the limit)."""
    events: list[Transition] = []
    over = previous_over
    for sample in samples:
        if sample.earth_leakage_ma is None:
            continue
        now_over = leakage_over(sample.earth_leakage_ma, limit_ma)
        if now_over and not over:
            events.append(Transition(EARTH_LEAKAGE, sample.ts, sample.earth_leakage_ma))
        over = now_over
    return events, over
