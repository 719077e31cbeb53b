from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "joulepoint.events"
    label = "events"
    verbose_name = "Events"
