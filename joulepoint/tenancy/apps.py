from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "joulepoint.tenancy"
    label = "tenancy"
    verbose_name = "Organizations"
