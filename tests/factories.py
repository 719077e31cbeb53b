"""Every test row is made here (factory_boy), so tests read as the situation they set up."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from energy.models import Gateway, Meter, MeterGroup, Site
from joulepoint.tenancy.models import Membership, Organization


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = True
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.ADMIN


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Site {n}")
    timezone = "Europe/Berlin"


class MeterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Meter

    site = factory.SubFactory(SiteFactory)
    organization = factory.SelfAttribute("site.organization")
    name = factory.Sequence(lambda n: f"Meter {n}")
    serial = factory.Sequence(lambda n: f"SN-{n:05d}")
    kind = Meter.Kind.LOAD


class GatewayFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Gateway

    site = factory.SubFactory(SiteFactory)
    organization = factory.SelfAttribute("site.organization")
    name = factory.Sequence(lambda n: f"Gateway {n}")


class MeterGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MeterGroup
        skip_postgeneration_save = True

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Group {n}")

    @factory.post_generation
    def meters(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.meters.set(extracted)
