"""The base views refuse the overrides that could forget the tenant or weaken the token check."""

from __future__ import annotations

import pytest

from joulepoint.tenancy.viewsets import GUARDED, OrganizationAPIView, OrganizationViewSet


@pytest.mark.parametrize("base", [OrganizationViewSet, OrganizationAPIView])
@pytest.mark.parametrize("name", GUARDED)
def test_a_subclass_overriding_a_guarded_method_is_refused(base, name):
    with pytest.raises(TypeError, match=name):
        type("Careless", (base,), {name: lambda self: None})


@pytest.mark.parametrize("name", GUARDED)
def test_a_mixin_before_the_base_is_refused_too(name):
    mixin = type("Mixin", (), {name: lambda self: None})
    with pytest.raises(TypeError, match=f"{name}.*in Mixin"):
        type("Careless", (mixin, OrganizationViewSet), {})


def test_the_named_escape_hatches_and_the_query_hook_are_allowed():
    class Device(OrganizationViewSet):
        def dangerously_get_permissions(self):
            return []

        def dangerously_get_authenticators(self):
            return []

        def safely_get_queryset(self, queryset):
            return queryset

    view = Device()
    assert view.get_permissions() == []
    assert view.get_authenticators() == []
