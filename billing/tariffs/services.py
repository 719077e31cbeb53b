"""Writing tariffs: a tariff with its versions, saved together or not at all."""

from __future__ import annotations

from django.db import transaction

from billing.models import Tariff, TariffVersion

VERSION_FIELDS = (
    "valid_from", "periods", "demand_periods", "export_rate", "fixed_per_day", "fixed_per_month", "demand_rate",
    "minimum_charge", "tax_pct",
)  # fmt: skip


@transaction.atomic
def tariff_save(
    *, organization_id: int, values: dict, versions: list[dict] | None, tariff: Tariff | None = None
) -> Tariff:
    """Create a tariff, or update one of `organization_id`; with `versions` given, they replace
    the tariff's versions (statements already issued keep their own copy of the lines, so no
    bill is re-costed). Values were validated (billing.tariffs.validation, the serializers)."""
    if tariff is None:
        tariff = Tariff.objects.create(organization_id=organization_id, **values)
    else:
        for name, value in values.items():
            setattr(tariff, name, value)
        tariff.save()
    if versions is not None:
        tariff.versions.all().delete()
        TariffVersion.objects.bulk_create(
            [
                TariffVersion(tariff=tariff, **{k: v for k, v in version.items() if k in VERSION_FIELDS})
                for version in versions
            ]
        )
    return tariff
