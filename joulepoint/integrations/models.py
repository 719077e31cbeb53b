from __future__ import annotations

from joulepoint.tenancy.models import Application


class ApiAccess(Application):
    """The OAuth2 application as facility managers see it in the admin."""

    class Meta:
        proxy = True
        verbose_name = "API access"
        verbose_name_plural = "API access"
