from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "joulepoint.tenancy"
    label = "tenancy"
    verbose_name = "Organizations"

    def ready(self) -> None:
        from django.db.models.signals import post_save, pre_save

        from joulepoint.tenancy.models import Application
        from joulepoint.tenancy.services import application_scopes_narrowed, application_scopes_remember

        # Narrowing a credential's scopes revokes its tokens that hold a removed one (issue 17).
        pre_save.connect(application_scopes_remember, sender=Application, dispatch_uid="app-scopes-before")
        post_save.connect(application_scopes_narrowed, sender=Application, dispatch_uid="app-scopes-narrowed")
