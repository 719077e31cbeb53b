from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "automations"
    verbose_name = "Automations"

    def ready(self) -> None:
        # Imported here, once the models are loaded; energy does not import us.
        from automations import selectors, tasks
        from automations.engine.evaluation import on_event
        from energy.analytics.annotations import annotation_reader_register
        from joulepoint.events.services import subscribe
        from joulepoint.events.types import EVENT_KEYS

        subscribe(on_event, keys=EVENT_KEYS)
        # Annotations show in energy's analytics API and dashboard; energy does not import us.
        annotation_reader_register(selectors.annotations_for_meters)
        # The services queue tasks by name (automations.taskqueue): every process registers them.
        del tasks
