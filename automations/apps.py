from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "automations"
    verbose_name = "Automations"

    def ready(self) -> None:
        from automations import services
        from joulepoint.events.services import subscribe
        from joulepoint.events.types import EVENT_KEYS

        subscribe(services.on_event, keys=EVENT_KEYS)
