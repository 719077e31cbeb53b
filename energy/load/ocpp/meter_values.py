"""OCPP 2.0.1 MeterValue → readings in the platform's units (docs/design.md), pure.

A MeterValue is a timestamp and sampled values, each a measurand (default
Energy.Active.Import.Register), an optional phase and a unit of measure (default Wh, with a
power-of-ten multiplier). One MeterValue becomes one reading of the charger's meter.
"""

from __future__ import annotations

# measurand → (reading field, the platform's unit)
TOTAL_FIELDS = {
    "Energy.Active.Import.Register": ("total_energy", "kWh"),
    "Energy.Active.Export.Register": ("export_energy", "kWh"),
    "Power.Active.Import": ("total_power", "W"),
    "Power.Reactive.Import": ("reactive_power", "var"),
    "Frequency": ("frequency", "Hz"),
    "Power.Factor": ("power_factor", ""),
}
PHASE_FIELDS = {
    "Current.Import": ("current", "A"),
    "Voltage": ("voltage", "V"),
}
PHASE_SUFFIX = {"L1": "a", "L2": "b", "L3": "c", "L1-N": "a", "L2-N": "b", "L3-N": "c"}
# Kept in `extra` (numbers the platform has no typed column for).
EXTRA_FIELDS = {
    "SoC": ("soc_pct", "Percent"),
    "Power.Offered": ("power_offered_w", "W"),
    "Current.Offered": ("current_offered_a", "A"),
}
DEFAULT_MEASURAND = "Energy.Active.Import.Register"
# unit → (the platform's unit it converts to, factor)
UNIT_FACTORS = {
    "Wh": ("kWh", 0.001),
    "kWh": ("kWh", 1.0),
    "W": ("W", 1.0),
    "kW": ("W", 1000.0),
    "var": ("var", 1.0),
    "kvar": ("var", 1000.0),
    "varh": ("varh", 1.0),
    "A": ("A", 1.0),
    "V": ("V", 1.0),
    "Hz": ("Hz", 1.0),
    "Percent": ("Percent", 1.0),
}


def _converted(sampled: dict, wanted_unit: str) -> float | None:
    unit_of_measure = sampled.get("unitOfMeasure") or {}
    default_unit = "Wh" if wanted_unit == "kWh" else wanted_unit
    unit = unit_of_measure.get("unit", default_unit)
    multiplier = unit_of_measure.get("multiplier", 0)
    value = float(sampled["value"]) * 10.0 ** int(multiplier)
    if wanted_unit == "":  # a ratio: no unit
        return value
    target, factor = UNIT_FACTORS.get(unit, (None, 1.0))
    if target != wanted_unit:
        return None  # a unit we cannot convert: dropped rather than stored wrong
    return value * factor


def reading_from_meter_value(meter_value: dict) -> dict:
    """One reading item for the ingest service ({"timestamp": …, fields…}); fields that cannot be
    read are left out."""
    reading: dict = {"timestamp": meter_value["timestamp"]}
    phase_power: list[float] = []
    for sampled in meter_value.get("sampledValue", []):
        measurand = sampled.get("measurand", DEFAULT_MEASURAND)
        phase = sampled.get("phase")
        if measurand in TOTAL_FIELDS and phase is None:
            name, unit = TOTAL_FIELDS[measurand]
        elif measurand == "Power.Active.Import" and phase in PHASE_SUFFIX:
            value = _converted(sampled, "W")
            if value is not None:
                phase_power.append(value)
            continue
        elif measurand in PHASE_FIELDS and phase in PHASE_SUFFIX:
            prefix, unit = PHASE_FIELDS[measurand]
            name = f"{prefix}_{PHASE_SUFFIX[phase]}"
        elif measurand in EXTRA_FIELDS and phase is None:
            name, unit = EXTRA_FIELDS[measurand]
        else:
            continue
        value = _converted(sampled, unit)
        if value is not None:
            reading[name] = value
    if "total_power" not in reading and phase_power:
        reading["total_power"] = sum(phase_power)
    return reading


def readings_from_meter_values(meter_values: list[dict]) -> list[dict]:
    """The readings of a MeterValues (or TransactionEvent) message; a MeterValue with nothing
    readable in it is skipped."""
    readings = [reading_from_meter_value(value) for value in meter_values or []]
    return [reading for reading in readings if len(reading) > 1]
