from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "joulepoint.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import pre_save

        from joulepoint.audit.middleware import entry_from_request
        from joulepoint.audit.models import AuditEntry
        from joulepoint.audit.registry import audit_register
        from joulepoint.tenancy.models import Application, Membership, Organization

        pre_save.connect(entry_from_request, sender=AuditEntry, dispatch_uid="audit-entry-from-request")
        # Users are no tenant rows: their entries have no organization and only superusers see them.
        audit_register(get_user_model(), secret_fields=["password"], exclude_fields=["last_login"])
        audit_register(Organization)
        audit_register(Membership)
        audit_register(Application, secret_fields=["client_secret"])
