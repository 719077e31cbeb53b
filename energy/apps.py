from django.apps import AppConfig


class EnergyConfig(AppConfig):
    name = "energy"
    verbose_name = "Energy"

    def ready(self) -> None:
        from energy.api import schema  # noqa: F401  (registers the OpenAPI device-key scheme)
