"""The `account` analytics subject: an account's meters (direct and through its groups) in its
site's zone, so `GET /api/energy/analytics/*?account=ID` works (registered in BillingConfig.ready())."""

from __future__ import annotations

from django.http import Http404

from billing.models import Account
from billing.selectors import account_meter_ids
from energy.analytics.subjects import Subject
from energy.models import Meter


def account_subject(*, organization, pk: int) -> Subject:
    """Http404 when the account is missing or another organization's."""
    account = Account.objects.for_org(organization).select_related("site").filter(pk=pk).first()
    if account is None:
        raise Http404("No such account.")
    meters = list(
        Meter.objects.for_org(organization)
        .filter(pk__in=account_meter_ids(account=account))
        .select_related("site")
        .order_by("pk")
    )
    return Subject(kind="account", id=account.pk, name=account.name, meters=meters, timezone=account.site.timezone)
