"""django-oauth-toolkit scopes backend: a token may only carry its application's scopes."""

from __future__ import annotations

from django.conf import settings
from oauth2_provider.scopes import BaseScopes


class ApplicationScopes(BaseScopes):
    def get_all_scopes(self) -> dict[str, str]:
        return dict(settings.OAUTH2_PROVIDER["SCOPES"])

    def get_available_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        if application is None:
            return list(self.get_all_scopes())
        return [s for s in application.scope_list if s in self.get_all_scopes()]

    def get_default_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        return self.get_available_scopes(application=application, request=request)
