from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "automations"
    verbose_name = "Automations"

    def ready(self) -> None:
        from automations import selectors, services
        from energy.analytics.annotations import annotation_reader_register
        from joulepoint.events.keys import event_key_register
        from joulepoint.events.services import subscribe
        from joulepoint.events.types import ALERT_TRIGGERED, EVENT_KEYS

        event_key_register(ALERT_TRIGGERED)
        subscribe(services.on_event, keys=EVENT_KEYS)
        # Annotations show in energy's analytics API and dashboard; energy does not import us.
        annotation_reader_register(selectors.annotations_for_meters)
