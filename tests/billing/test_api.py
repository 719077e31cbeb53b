"""Tariffs, accounts, previews and statements through the API, on stored readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing.models import Statement, Tariff
from tests import factories
from tests.factories import TWO_RATE_PERIODS

pytestmark = pytest.mark.django_db

BASE = "/api/energy/billing"
FRIDAY = datetime(2025, 10, 17, 8, tzinfo=UTC)  # 10:00 in Berlin
DAY = {"start": "2025-10-17T00:00:00Z", "end": "2025-10-18T00:00:00Z"}


def tariff_body(periods=TWO_RATE_PERIODS, **version) -> dict:
    return {
        "name": "Two-rate",
        "currency": "EUR",
        "versions": [{"valid_from": "2020-01-01", "periods": periods, **version}],
    }


def register(meter, values, start=FRIDAY, step=timedelta(minutes=15)):
    factories.readings_create(meter, factories.reading_series(start, step, len(values), total_energy=list(values)))


@pytest.fixture
def account(org, site, meter):
    return factories.AccountFactory(organization=org, site=site, meters=[meter])


def test_create_a_tariff_and_read_it_back_with_decimal_strings(api):
    response = api.post(f"{BASE}/tariffs/", tariff_body(fixed_per_day="0.50", tax_pct="19"), format="json")
    assert response.status_code == 201, response.content
    body = api.get(f"{BASE}/tariffs/{response.json()['id']}").json()  # no trailing slash answers too
    assert body["currency"] == "EUR"
    [version] = body["versions"]
    assert (version["fixed_per_day"], version["tax_pct"], version["periods"]) == ("0.5000", "19.000", TWO_RATE_PERIODS)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"periods": TWO_RATE_PERIODS[:1]}, "periods", "weekend months 1-12: missing 00:00-24:00"),
        ({"periods": [{**TWO_RATE_PERIODS[0], "end": "07:00"}, TWO_RATE_PERIODS[1]]}, "periods", "missing 07:00-24:00"),
        ({"periods": [*TWO_RATE_PERIODS, {**TWO_RATE_PERIODS[0], "start": "12:00", "end": "13:00"}]}, "periods",
         "weekday months 1-12: doubled 12:00-13:00"),
        ({"periods": [{**TWO_RATE_PERIODS[0], "rate": "-0.1"}, TWO_RATE_PERIODS[1]]}, "periods", "not be negative"),
        ({"periods": [{**TWO_RATE_PERIODS[0], "rate": 0.1}, TWO_RATE_PERIODS[1]]}, "periods", "decimal string"),
        ({"periods": [{**TWO_RATE_PERIODS[0], "rate": "cheap"}, TWO_RATE_PERIODS[1]]}, "periods", "not a decimal"),
        ({"periods": [{**TWO_RATE_PERIODS[0], "start": "07:60"}, TWO_RATE_PERIODS[1]]}, "periods", '"HH:MM"'),
        ({"periods": [{**TWO_RATE_PERIODS[0], "end": "23:59"}, TWO_RATE_PERIODS[1]]}, "periods", "missing 23:59-24:00"),
        ({"fixed_per_day": 0.5}, "fixed_per_day", "decimal string"),
    ],
)  # fmt: skip
def test_bad_tariff_versions_are_400_naming_the_field_and_nothing_is_written(api, change, field, message):
    response = api.post(f"{BASE}/tariffs", tariff_body(**change), format="json")
    assert response.status_code == 400, response.content
    versions = response.json()["versions"]  # DRF names the bad version by its index
    errors = (versions["0"] if isinstance(versions, dict) else versions[0])[field]
    assert any(message in error for error in errors), errors
    assert Tariff.objects.count() == 0


def test_unknown_currency_and_country_are_400(api):
    response = api.post(f"{BASE}/tariffs/", {**tariff_body(), "currency": "XYZ"}, format="json")
    assert response.status_code == 400 and "currency" in response.json()
    response = api.post(f"{BASE}/tariffs/", {**tariff_body(), "country": "QQ"}, format="json")
    assert response.status_code == 400 and "country" in response.json()


def test_an_account_with_another_organizations_meter_is_400(api, org, site, other_org):
    tariff = factories.TariffFactory(organization=org)
    foreign = factories.MeterFactory(site=factories.SiteFactory(organization=other_org))
    body = {"name": "A", "site": site.pk, "tariff": tariff.pk, "meters": [foreign.pk]}
    response = api.post(f"{BASE}/accounts/", body, format="json")
    assert response.status_code == 400 and "meters" in response.json()


def test_a_wallet_in_another_currency_than_the_tariff_is_400(api, org, site, meter):
    tariff = factories.TariffFactory(organization=org)
    wallet = factories.WalletFactory(organization=org, currency="USD")
    body = {
        "name": "A",
        "site": site.pk,
        "tariff": tariff.pk,
        "meters": [meter.pk],
        "mode": "prepaid",
        "wallet": wallet.pk,
    }
    response = api.post(f"{BASE}/accounts/", body, format="json")
    assert response.status_code == 400
    assert "USD" in response.json()["wallet"][0]
    body = {**body, "wallet": None}
    assert "prepaid account needs a wallet" in api.post(f"{BASE}/accounts/", body, format="json").json()["wallet"][0]


def test_preview_costs_register_deltas_per_period(api, account, meter):
    register(meter, [100, 101, 102, 103])  # the first reading counts nothing: 3 kWh on a Friday
    response = api.post(f"{BASE}/accounts/{account.pk}/preview", DAY, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(line["label"], line["quantity"], line["rate"], line["amount"]) for line in body["lines"]] == [
        ("Energy weekday", "3.000000", "0.30", "0.90")
    ]
    assert (body["total"], body["currency"], body["import_kwh"]) == ("0.90", "EUR", "3.000000")
    assert body["data_quality"]["counter_resets"] == 0


def test_a_counter_reset_counts_the_new_value_and_is_reported(api, account, meter):
    register(meter, [100, 101, 5, 6])  # 1 + 5 (reset: energy since zero) + 1
    body = api.post(f"{BASE}/accounts/{account.pk}/preview", DAY, format="json").json()
    assert body["total"] == "2.10"
    assert body["data_quality"]["counter_resets"] == 1
    assert body["data_quality"]["counter_reset_intervals"] == [
        {"meter_id": meter.pk, "interval": "2025-10-17T08:30:00Z"}
    ]


def test_meters_without_a_register_are_estimated_from_power(api, account, meter):
    factories.readings_create(meter, factories.reading_series(FRIDAY, timedelta(minutes=5), 3, total_power=4000.0))
    body = api.post(f"{BASE}/accounts/{account.pk}/preview", DAY, format="json").json()
    assert body["import_kwh"] == "1.000000"  # 4 kW for a quarter hour
    assert body["total"] == "0.30"
    assert body["data_quality"]["estimated_intervals"] == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"start": "2025-10-18T00:00:00Z", "end": "2025-10-17T00:00:00Z"}, "after start"),
        ({"start": "2024-01-01T00:00:00Z", "end": "2025-10-17T00:00:00Z"}, "at most 400 days"),
        ({"start": "yesterday"}, "format"),
    ],
)
def test_bad_preview_ranges_are_400(api, account, body, message):
    response = api.post(f"{BASE}/accounts/{account.pk}/preview", body, format="json")
    assert response.status_code == 400
    assert message in str(response.json())


def test_generate_statement_is_numbered_immutable_and_idempotent(api, account, meter):
    register(meter, [100, 101, 102, 103])
    first = api.post(f"{BASE}/accounts/{account.pk}/generate_statement/", DAY, format="json")
    assert first.status_code == 201, first.content
    statement = first.json()
    assert (statement["number"], statement["total"], statement["currency"]) == ("ST-000001", "0.90", "EUR")

    register(meter, [104, 110], start=FRIDAY + timedelta(hours=2))  # late data does not re-cost an issued statement
    again = api.post(f"{BASE}/accounts/{account.pk}/generate_statement", DAY, format="json")
    assert again.status_code == 200
    assert again.json() == statement
    assert Statement.objects.count() == 1
    assert api.get(f"{BASE}/statements/").json()["results"][0]["id"] == statement["id"]

    page = api.get(f"{BASE}/statements/{statement['id']}/html")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    assert "ST-000001" in page.content.decode() and "0.90" in page.content.decode()


def test_a_statement_pdf_is_a_real_pdf_with_its_number_and_total(api, outsider_api, account, meter):
    import io

    from pypdf import PdfReader

    register(meter, [100, 101, 102, 103])
    statement = api.post(f"{BASE}/accounts/{account.pk}/generate_statement", DAY, format="json").json()
    response = api.get(f"{BASE}/statements/{statement['id']}/pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'inline; filename="ST-000001.pdf"'
    assert response.content.startswith(b"%PDF-")
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert "ST-000001" in text
    assert f"Total {statement['total']} EUR" in " ".join(text.split())
    assert outsider_api.get(f"{BASE}/statements/{statement['id']}/pdf").status_code == 404


def test_a_preview_splits_the_interval_a_minute_boundary_falls_in(api, org, site, meter):
    weekday = {"months": [1, 12], "day_types": ["weekday"]}
    periods = [
        {"name": "morning", **weekday, "start": "00:00", "end": "10:10", "rate": "0.20"},
        {"name": "day", **weekday, "start": "10:10", "end": "24:00", "rate": "0.40"},
        TWO_RATE_PERIODS[1],
    ]
    tariff = api.post(f"{BASE}/tariffs/", tariff_body(periods), format="json")
    assert tariff.status_code == 201, tariff.content
    account = factories.AccountFactory(organization=org, site=site, meters=[meter], tariff=Tariff.objects.get())
    # 1-minute register readings from 09:45 to 10:45 local, 1 kWh a minute: 15 kWh per 15 minutes.
    register(meter, range(100, 161), start=FRIDAY - timedelta(minutes=15), step=timedelta(minutes=1))
    body = {"start": "2025-10-17T08:00:00Z", "end": "2025-10-17T08:30:00Z"}  # 10:00-10:30 in Berlin
    response = api.post(f"{BASE}/accounts/{account.pk}/preview", body, format="json")
    assert response.status_code == 200, response.content
    lines = {line["period"]: (line["quantity"], line["amount"]) for line in response.json()["lines"]}
    # 10:00-10:15: 10 minutes morning (10 kWh x 0.20) and 5 day; 10:15-10:30: 15 day ((5 + 15) x 0.40)
    assert lines == {"morning": ("10.000000", "2.00"), "day": ("20.000000", "8.00")}
    assert response.json()["total"] == "10.00"


def test_a_statement_for_an_open_period_is_400(api, account):
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
    response = api.post(f"{BASE}/accounts/{account.pk}/generate_statement", {"end": tomorrow}, format="json")
    assert response.status_code == 400
    assert "closed period" in response.json()["end"][0]
    assert Statement.objects.count() == 0


def test_a_tariff_in_use_cannot_be_deleted(api, account):
    response = api.delete(f"{BASE}/tariffs/{account.tariff_id}")
    assert response.status_code == 409
    assert Tariff.objects.filter(pk=account.tariff_id).exists()


def test_analytics_take_an_account_as_subject(api, outsider_api, account, meter):
    register(meter, [100, 101, 102, 103])
    response = api.get("/api/energy/analytics/kpi", {"account": account.pk, **DAY})
    assert response.status_code == 200, response.content
    assert response.json()["subject"]["type"] == "account"
    assert response.json()["subject"]["meter_ids"] == [meter.pk]
    assert outsider_api.get("/api/energy/analytics/kpi", {"account": account.pk, **DAY}).status_code == 404
