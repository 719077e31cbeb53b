from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    """Holds the admin section "Integrations → API access" (a proxy of the OAuth2 application)."""

    name = "joulepoint.integrations"
    label = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        from joulepoint.audit.registry import audit_register
        from joulepoint.integrations.models import ApiAccess

        # The admin saves credentials through this proxy, whose signals name it, not Application.
        audit_register(ApiAccess, secret_fields=["client_secret"])
