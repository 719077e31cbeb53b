"""The energy app's rows, one module per kind (Django loads this package as the app's models).

sites, devices (meters, gateways, groups), readings, commands here; the rollups and settings of
energy.analytics.models, the power quality rows of energy.power_quality.models and the topology rows
of energy.topology.models and the load management rows of energy.load.models are imported below so
they are models of this app too.
"""

from energy.analytics.models import AnalyticsSettings, ReadingRollup1h, ReadingRollup1m, ReadingRollup15m, RollupDirty
from energy.load.models import (
    Allocation,
    Charger,
    ChargingSession,
    DemandResponseEvent,
    Evse,
    IdToken,
    LoadSchedule,
    Setpoint,
    SiteConstraint,
)
from energy.models.commands import DeviceCommand
from energy.models.devices import DeviceCredential, Gateway, Meter, MeterGroup, new_device_secret
from energy.models.readings import READING_FIELDS, Reading
from energy.models.sites import Site
from energy.power_quality.models import BreakerState, MeterPQState, PQConfig, PQEvent, ProtectionEvent
from energy.topology.models import Edge, Node, TopologySettings

__all__ = [
    "READING_FIELDS",
    "Allocation",
    "AnalyticsSettings",
    "BreakerState",
    "Charger",
    "ChargingSession",
    "DemandResponseEvent",
    "DeviceCommand",
    "DeviceCredential",
    "Edge",
    "Evse",
    "Gateway",
    "IdToken",
    "LoadSchedule",
    "Meter",
    "MeterGroup",
    "MeterPQState",
    "Node",
    "PQConfig",
    "PQEvent",
    "ProtectionEvent",
    "Reading",
    "ReadingRollup1h",
    "ReadingRollup1m",
    "ReadingRollup15m",
    "RollupDirty",
    "Setpoint",
    "Site",
    "SiteConstraint",
    "TopologySettings",
    "new_device_secret",
]
