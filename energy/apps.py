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

        from energy.demo import demo_extension_register
        from energy.load.demo_charging import charging_demo_ensure

        # Two OCPP chargers with known station passwords for `make run` (docs/load.md).
        demo_extension_register("ocpp", charging_demo_ensure)
        # Dashboards: every live event goes to its site's Channels group (docs/live.md).
        subscribe(live_event_fan_out, keys=LIVE_EVENT_KEYS)

        from energy.demo import demo_extension_register
        from energy.load.demo import load_demo_extend
        from energy.load.services import on_ingested

        # make run's demo: the depot's grid limit and evening peak window.
        demo_extension_register("load", load_demo_extend)

        # Load-managed sites are reallocated after their readings are stored, debounced (docs/load.md).
        subscribe(on_ingested, keys=["data.ingested"])

        from django.db.models.signals import post_delete, post_save

        from energy.devices.services import device_changed, device_mqtt_login_changed
        from energy.models import Gateway, Meter

        # A changed or deleted device must not stay authenticated from the shared cache.
        for model in (Meter, Gateway):
            post_save.connect(device_changed, sender=model, dispatch_uid=f"forget-device-{model.__name__}")
            post_delete.connect(device_changed, sender=model, dispatch_uid=f"forget-device-del-{model.__name__}")
            # And, when the platform manages the broker's logins, their files are rewritten.
            uid = f"mqtt-login-{model.__name__}"
            post_save.connect(device_mqtt_login_changed, sender=model, dispatch_uid=uid)
            post_delete.connect(device_mqtt_login_changed, sender=model, dispatch_uid=f"{uid}-del")

        from oauth2_provider.models import get_access_token_model

        from energy.live.fanout import access_token_revoked

        # A revoked token closes the dashboard sockets it opened (docs/live.md, close codes).
        post_delete.connect(access_token_revoked, sender=get_access_token_model(), dispatch_uid="live-token-revoked")

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

        from energy.topology.services import structure_changed

        # The graph endpoint keeps each site's structure per process until it changes (docs/topology.md).
        for model in (Site, Node, Edge, TopologySettings):
            post_save.connect(structure_changed, sender=model, dispatch_uid=f"topology-{model.__name__}")
            post_delete.connect(structure_changed, sender=model, dispatch_uid=f"topology-del-{model.__name__}")
        post_delete.connect(structure_changed, sender=Meter, dispatch_uid="topology-del-Meter")

        from energy.load.models import Charger, DemandResponseEvent, IdToken, LoadSchedule, SiteConstraint

        # Load management's configuration; not sessions, EVSE status, allocations or setpoints
        # (what stations and the allocator report every few seconds), nor a charger's heartbeat.
        audit_register(
            Charger,
            secret_fields=["password_hash"],
            exclude_fields=["is_online", "last_seen_at", "vendor", "model", "serial_number", "firmware_version"],
        )
        audit_register(SiteConstraint, exclude_fields=["peak_active", "peak_changed_at"])
        audit_register(DemandResponseEvent, exclude_fields=["started_published_at", "ended_published_at"])
        for model in (LoadSchedule, IdToken):
            audit_register(model)
