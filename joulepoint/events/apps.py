from django.apps import AppConfig
from django.core.signals import request_finished, request_started


class EventsConfig(AppConfig):
    name = "joulepoint.events"
    label = "events"
    verbose_name = "Events"

    def ready(self) -> None:
        from joulepoint.events import listeners

        request_started.connect(listeners.request_boundary, dispatch_uid="listeners-request-started")
        request_finished.connect(listeners.request_boundary, dispatch_uid="listeners-request-finished")
