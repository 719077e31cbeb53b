from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    """Holds the admin section "Integrations → API access" (a proxy of the OAuth2 application)."""

    name = "joulepoint.integrations"
    label = "integrations"
    verbose_name = "Integrations"
