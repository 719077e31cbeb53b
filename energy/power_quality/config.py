"""Per-meter power quality thresholds: validation, overrides and the effective values the
detection rules use (defaults from the seed; docs/power-quality.md)."""

from __future__ import annotations

from django.db import transaction

from energy.models import Meter
from energy.power_quality import rules as pq
from energy.power_quality.models import (
    DEFAULT_EARTH_LEAKAGE_MA,
    DEFAULT_IMBALANCE_PCT,
    DEFAULT_NOMINAL_FREQUENCY_HZ,
    DEFAULT_SAG_PU,
    DEFAULT_SWELL_PU,
    DEFAULT_THD_PCT,
    PQConfig,
)

CONFIG_FIELDS = (
    "sag_v_threshold",
    "swell_v_threshold",
    "thd_pct_threshold",
    "imbalance_pct_threshold",
    "earth_leakage_ma_threshold",
    "nominal_frequency_hz",
)
CONFIG_DEFAULTS: dict[str, float] = {
    "sag_v_threshold": DEFAULT_SAG_PU,
    "swell_v_threshold": DEFAULT_SWELL_PU,
    "thd_pct_threshold": DEFAULT_THD_PCT,
    "imbalance_pct_threshold": DEFAULT_IMBALANCE_PCT,
    "earth_leakage_ma_threshold": DEFAULT_EARTH_LEAKAGE_MA,
    "nominal_frequency_hz": DEFAULT_NOMINAL_FREQUENCY_HZ,
}


class ConfigInvalid(ValueError):
    """Thresholds outside their physical range; `errors` maps field → message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


# Configuration --------------------------------------------------------------------------------


def pq_config_validate(values: dict[str, float]) -> dict[str, str]:
    """The physical-range rules for a complete set of thresholds; returns field → problem."""
    errors: dict[str, str] = {}
    sag, swell = values["sag_v_threshold"], values["swell_v_threshold"]
    # A sag threshold at or under 0.1 pu would make every sag an interruption (IEEE 1159).
    if not 0.1 < sag < 1.0:
        errors["sag_v_threshold"] = "must be above 0.1 and below 1.0 (per-unit of nominal voltage)"
    if not 1.0 < swell <= 2.0:
        errors["swell_v_threshold"] = "must be above 1.0 and at most 2.0 (per-unit of nominal voltage)"
    if sag >= swell and "sag_v_threshold" not in errors:
        errors["sag_v_threshold"] = "must be below swell_v_threshold"
    if not 0.0 < values["thd_pct_threshold"] <= 100.0:
        errors["thd_pct_threshold"] = "must be above 0 and at most 100 (%)"
    if not 0.0 < values["imbalance_pct_threshold"] <= 100.0:
        errors["imbalance_pct_threshold"] = "must be above 0 and at most 100 (%)"
    if not 0.0 < values["earth_leakage_ma_threshold"] <= 100_000.0:
        errors["earth_leakage_ma_threshold"] = "must be above 0 and at most 100000 (mA)"
    if values["nominal_frequency_hz"] not in (50.0, 60.0):
        errors["nominal_frequency_hz"] = "must be 50 or 60"
    return errors


@transaction.atomic
def pq_config_set(*, meter: Meter, values: dict[str, float]) -> tuple[PQConfig, bool]:
    """Create or replace a meter's PQ configuration; omitted fields take their defaults.

    Raises ConfigInvalid (nothing written) when a value is out of range. Returns the row and
    whether it was created. Tenant: the meter's organization. New thresholds apply from the
    next evaluated reading (open events are judged by them from then on).
    """
    unknown = set(values) - set(CONFIG_FIELDS)
    if unknown:
        raise ConfigInvalid({name: "is not a PQ configuration field" for name in sorted(unknown)})
    complete = {**CONFIG_DEFAULTS, **{k: float(v) for k, v in values.items()}}
    errors = pq_config_validate(complete)
    if errors:
        raise ConfigInvalid(errors)
    config, created = PQConfig.objects.update_or_create(
        meter=meter, defaults={"organization_id": meter.organization_id, **complete}
    )
    return config, created


def pq_config_reset(*, meter: Meter) -> bool:
    """Drop a meter's configuration so the defaults apply again; True if there was one."""
    deleted, _ = PQConfig.objects.filter(meter=meter).delete()
    return bool(deleted)


def pq_config_effective(*, meter: Meter, config: PQConfig | None) -> dict[str, float]:
    """The thresholds in force for a meter: its stored row, or the defaults."""
    if config is None:
        return dict(CONFIG_DEFAULTS)
    return {name: getattr(config, name) for name in CONFIG_FIELDS}


def thresholds_for(meter: Meter, config: PQConfig | None) -> pq.Thresholds:
    return thresholds_from(meter.nominal_voltage, meter.phases, pq_config_effective(meter=meter, config=config))


def thresholds_from(nominal_voltage: float, phases: int, values: dict[str, float]) -> pq.Thresholds:
    return pq.Thresholds(
        nominal_voltage=nominal_voltage,
        phases=phases,
        sag_pu=values["sag_v_threshold"],
        swell_pu=values["swell_v_threshold"],
        thd_pct=values["thd_pct_threshold"],
        imbalance_pct=values["imbalance_pct_threshold"],
        earth_leakage_ma=values["earth_leakage_ma_threshold"],
        nominal_frequency_hz=values["nominal_frequency_hz"],
    )


# Announcements ------------------------------------------------------------------------------
