from django.apps import AppConfig


class EnergyConfig(AppConfig):
    name = "energy"
    verbose_name = "Energy"

    def ready(self) -> None:
        from energy.api import schema  # noqa: F401  (registers the OpenAPI device-key scheme)
        from energy.events import event_keys_register
        from energy.live.fanout import LIVE_EVENT_KEYS, live_event_fan_out
        from joulepoint.events.services import subscribe

        event_keys_register()
        # Dashboards: every live event goes to its site's Channels group (docs/live.md).
        subscribe(live_event_fan_out, keys=LIVE_EVENT_KEYS)

        from django.db.models.signals import post_delete, post_save

        from energy.devices.services import device_changed
        from energy.models import Gateway, Meter

        # A changed or deleted device must not stay authenticated from the shared cache.
        for model in (Meter, Gateway):
            post_save.connect(device_changed, sender=model, dispatch_uid=f"forget-device-{model.__name__}")
            post_delete.connect(device_changed, sender=model, dispatch_uid=f"forget-device-del-{model.__name__}")

        from energy.analytics.models import AnalyticsSettings
        from energy.models import DeviceCommand, MeterGroup, Site
        from energy.power_quality.models import PQConfig
        from energy.topology.models import Edge, Node, TopologySettings
        from joulepoint.audit.registry import audit_register

        # The audit trail (docs/audit.md): configuration, keys and commands; never readings,
        # rollups or detected events (telemetry: the data, not changes to it).
        for model in (Meter, Gateway):
            audit_register(model, secret_fields=["device_key", "device_secret"])
        audit_register(MeterGroup, m2m_fields=["meters"])
        for model in (Site, DeviceCommand, PQConfig, AnalyticsSettings, Node, Edge, TopologySettings):
            audit_register(model)
