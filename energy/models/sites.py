"""Sites: where meters are, and the IANA zone their local days are counted in."""

from __future__ import annotations

from django.db import models

from joulepoint.tenancy.models import Organization, TenantModel


class Site(TenantModel):
    """A facility or depot; its time zone decides local days and hours in analytics."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sites")
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC")
    address = models.CharField(max_length=300, blank=True, default="")
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_site_name")]

    def __str__(self) -> str:
        return self.name
