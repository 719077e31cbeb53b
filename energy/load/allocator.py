"""The allocator: share what a site may still draw among its charging sessions. Pure (no ORM), so
the property tests and bench/load.py run it on plain values.

Rules (docs/load.md, "Allocator"):
- Sessions are served in order: higher priority first, then the earlier departure (a session
  without a departure after those with one), then the session id (stable).
- Admission: in that order, each session gets its minimum current if the minimum still fits in
  both budgets (power, and the per-phase current of the grid connection); otherwise it is paused
  (0 A). A session paused by the previous run resumes only when its minimum plus
  `resume_margin_a` fits, so a session at the edge does not toggle every run.
- Water-filling: what is left after the minimums goes to the admitted sessions one priority level
  at a time, highest first: within a level every session is raised to the same current (A per
  phase, the unit of the charging profile), each capped at its maximum; a lower level gets
  anything only once every session of the levels above is at its maximum. While any session is
  paused, sessions of a lower priority than it stay at their minimum (priority is never bought
  with a smaller minimum).
- Hysteresis: a setpoint is not raised by less than `hysteresis_a` over the previous one (the
  previous, lower value is kept); lowering always happens, since it is what keeps the site under
  its limit.
- Currents are rounded down to 0.1 A (what stations accept), so rounding never exceeds a budget.

Power per session = current * phases * nominal voltage (phase-neutral).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Comparisons of sums of floats: a minimum that fits "exactly" must not be refused for 1e-12 W.
EPSILON = 1e-6
CURRENT_STEP_A = 0.1
DEFAULT_HYSTERESIS_A = 1.0
DEFAULT_RESUME_MARGIN_A = 1.0


@dataclass(frozen=True, slots=True)
class SessionDemand:
    """One open session as the allocator sees it. `max_current_a` is already the lower of the
    charger's and the EVSE's maximum; `previous_current_a` is the last setpoint (None: never
    allocated; 0: paused)."""

    session_id: int
    charger_id: int
    priority: int
    min_current_a: float
    max_current_a: float
    phases: int = 3
    voltage_v: float = 230.0
    departure_ts: float | None = None
    previous_current_a: float | None = None

    @property
    def watts_per_amp(self) -> float:
        return self.phases * self.voltage_v


@dataclass(frozen=True, slots=True)
class Grant:
    session_id: int
    charger_id: int
    current_a: float
    power_w: float
    paused: bool


def session_order_key(demand: SessionDemand) -> tuple:
    departure = demand.departure_ts if demand.departure_ts is not None else math.inf
    return (-demand.priority, departure, demand.session_id)


def _floor_step(current: float) -> float:
    return round(math.floor(current / CURRENT_STEP_A + 1e-9) * CURRENT_STEP_A, 1)


def _level_for_budget(tier: Sequence[SessionDemand], budget: float, weight) -> float:
    """The highest common level L with sum of w_i * (clamp(L, min_i, max_i) - min_i) <= budget,
    exactly: the sum is piecewise linear in L, its slope rising by w_i at min_i and falling at
    max_i, so one sorted sweep over those breakpoints finds L (O(n log n) for 500 sessions)."""
    slope_change: dict[float, float] = {}
    for demand in tier:
        w = weight(demand)
        slope_change[demand.min_current_a] = slope_change.get(demand.min_current_a, 0.0) + w
        slope_change[demand.max_current_a] = slope_change.get(demand.max_current_a, 0.0) - w
    points = sorted(slope_change)
    used = 0.0
    slope = 0.0
    for low, high in itertools.pairwise(points):
        slope += slope_change[low]
        step = slope * (high - low)
        if used + step > budget:
            return low + (budget - used) / slope if slope > 0 else low
        used += step
    return points[-1] if points else 0.0


def allocate(
    demands: Iterable[SessionDemand],
    *,
    available_w: float,
    phase_available_a: float | None = None,
    hysteresis_a: float = DEFAULT_HYSTERESIS_A,
    resume_margin_a: float = DEFAULT_RESUME_MARGIN_A,
) -> list[Grant]:
    """Setpoints for `demands` within `available_w` (W the chargers may draw together) and, when
    given, `phase_available_a` (A per phase left at the grid connection; every session's current
    is counted on one phase as a worst case, since a single-phase charger's phase is not known).
    Returns one grant per demand, in serving order."""
    ordered = sorted(demands, key=session_order_key)
    power_left = max(available_w, 0.0)
    current_left = math.inf if phase_available_a is None else max(phase_available_a, 0.0)
    granted: dict[int, float] = {}
    paused_priority: int | None = None

    for demand in ordered:
        minimum = demand.min_current_a
        if demand.previous_current_a == 0:
            minimum += resume_margin_a  # resume only with room to spare
        usable = demand.max_current_a >= demand.min_current_a
        if (
            usable
            and minimum * demand.watts_per_amp <= power_left + EPSILON
            and minimum <= current_left + EPSILON
            and demand.max_current_a > 0
        ):
            granted[demand.session_id] = demand.min_current_a
            power_left -= demand.min_current_a * demand.watts_per_amp
            current_left -= demand.min_current_a
        elif paused_priority is None:
            paused_priority = demand.priority

    # Water-fill level by level; below a paused session's priority, nobody gets more than its minimum.
    levels = sorted({d.priority for d in ordered if d.session_id in granted}, reverse=True)
    for priority in levels:
        if paused_priority is not None and priority < paused_priority:
            break
        tier = [d for d in ordered if d.priority == priority and d.session_id in granted]
        level = min(
            _level_for_budget(tier, max(power_left, 0.0), lambda d: d.watts_per_amp),
            _level_for_budget(tier, max(current_left, 0.0), lambda d: 1.0),
        )
        saturated = True
        for demand in tier:
            target = min(max(level, demand.min_current_a), demand.max_current_a)
            extra = target - demand.min_current_a
            granted[demand.session_id] = target
            power_left -= extra * demand.watts_per_amp
            current_left -= extra
            saturated = saturated and target >= demand.max_current_a - EPSILON
        if not saturated:
            break

    grants: list[Grant] = []
    for demand in ordered:
        current = granted.get(demand.session_id)
        if current is None:
            grants.append(Grant(demand.session_id, demand.charger_id, 0.0, 0.0, True))
            continue
        current = max(_floor_step(current), min(demand.min_current_a, current))
        previous = demand.previous_current_a
        if previous and previous < current < previous + hysteresis_a and previous >= demand.min_current_a:
            current = previous
        grants.append(Grant(demand.session_id, demand.charger_id, current, current * demand.watts_per_amp, False))
    return grants
