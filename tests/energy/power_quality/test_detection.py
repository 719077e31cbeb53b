"""Power quality detection: the rules (IEEE 1159 classes, IEEE/NEMA unbalance) and detection
in the ingest path (thresholds, event lifecycle, batches, arrival order, duplicates, outbox)."""

from __future__ import annotations

import random

import pytest
from django.test import override_settings

from energy.events import PQ_EVENT
from energy.models import Meter
from energy.power_quality import rules as pq
from energy.power_quality.config import pq_config_set
from energy.power_quality.models import MeterPQState, PQEvent
from tests import factories
from tests.energy.power_quality.helpers import NOMINAL, actions, at, event_shapes, ingest, outbox, pq_events, reading

# The pure rules ---------------------------------------------------------------------------


def test_unbalance_is_the_ieee_max_deviation_from_average_not_max_minus_min():
    pct, worst = pq.unbalance_pct([230.0, 230.0, 220.0])
    average = 680.0 / 3
    assert pct == pytest.approx((average - 220.0) / average * 100)  # 2.94 %
    assert pct == pytest.approx(2.941, abs=1e-3)
    assert worst == 2
    wrong = (230.0 - 220.0) / average * 100  # (Vmax - Vmin)/Vavg: 4.41 %, the common mistake
    assert pct < wrong * 0.7


def test_unbalance_of_a_balanced_or_dead_supply_is_zero():
    assert pq.unbalance_pct([230.0, 230.0, 230.0])[0] == 0.0
    assert pq.unbalance_pct([0.0, 0.0, 0.0])[0] == 0.0


@pytest.mark.parametrize(
    ("seconds", "hz", "expected"),
    [
        (0.01, 50, pq.INSTANTANEOUS),  # half a cycle
        (0.6, 50, pq.INSTANTANEOUS),  # exactly 30 cycles at 50 Hz
        (0.61, 50, pq.MOMENTARY),
        (0.5, 60, pq.INSTANTANEOUS),  # exactly 30 cycles at 60 Hz
        (0.6, 60, pq.MOMENTARY),  # 36 cycles at 60 Hz
        (3.0, 50, pq.MOMENTARY),
        (3.001, 50, pq.TEMPORARY),
        (60.0, 50, pq.TEMPORARY),
        (60.001, 50, pq.LONG_DURATION),
        (3600.0, 60, pq.LONG_DURATION),
    ],
)
def test_ieee_1159_duration_classes(seconds, hz, expected):
    assert pq.duration_class(seconds, hz) == expected


@pytest.mark.parametrize(
    ("kind", "klass", "category"),
    [
        ("sag", pq.INSTANTANEOUS, "instantaneous_sag"),
        ("sag", pq.TEMPORARY, "temporary_sag"),
        ("sag", pq.LONG_DURATION, "undervoltage"),
        ("swell", pq.MOMENTARY, "momentary_swell"),
        ("swell", pq.LONG_DURATION, "overvoltage"),
        ("interruption", pq.INSTANTANEOUS, "momentary_interruption"),
        ("interruption", pq.MOMENTARY, "momentary_interruption"),
        ("interruption", pq.TEMPORARY, "temporary_interruption"),
        ("interruption", pq.LONG_DURATION, "sustained_interruption"),
        ("thd", pq.LONG_DURATION, "waveform_distortion"),
        ("imbalance", pq.MOMENTARY, "voltage_imbalance"),
    ],
)
def test_ieee_1159_category_names(kind, klass, category):
    assert pq.ieee_category(kind, klass) == category


# Thresholds: at, just over and just under (defaults 0.9 / 1.1 / 5 % / 2 %; 0.1 pu interruption)

SAG_V = 0.9 * NOMINAL  # 207 V
SWELL_V = 1.1 * NOMINAL  # 253 V
INTERRUPTION_V = 0.1 * NOMINAL  # 23 V
# a = 230 + 3d, b = c = 230 - 1.5d: average 230, largest deviation 3d, so unbalance = 3d/230.
IMBALANCE_AT = (234.6, 227.7, 227.7)  # exactly 2 %
IMBALANCE_OVER = (234.7, 227.65, 227.65)  # 2.04 %
IMBALANCE_UNDER = (234.5, 227.75, 227.75)  # 1.96 %


@pytest.mark.parametrize(
    ("kind", "fields", "opens"),
    [
        ("sag", {"va": SAG_V}, False),
        ("sag", {"va": SAG_V - 0.1}, True),
        ("sag", {"va": SAG_V + 0.1}, False),
        ("swell", {"vb": SWELL_V}, False),
        ("swell", {"vb": SWELL_V + 0.1}, True),
        ("swell", {"vb": SWELL_V - 0.1}, False),
        ("interruption", {"vc": INTERRUPTION_V}, False),
        ("interruption", {"vc": INTERRUPTION_V - 0.1}, True),
        ("interruption", {"vc": INTERRUPTION_V + 0.1}, False),
        ("thd", {"thd_v_pct": 5.0}, False),
        ("thd", {"thd_v_pct": 5.01}, True),
        ("thd", {"thd_v_pct": 4.99}, False),
        ("imbalance", dict(zip(("va", "vb", "vc"), IMBALANCE_AT, strict=True)), False),
        ("imbalance", dict(zip(("va", "vb", "vc"), IMBALANCE_OVER, strict=True)), True),
        ("imbalance", dict(zip(("va", "vb", "vc"), IMBALANCE_UNDER, strict=True)), False),
    ],
)
@pytest.mark.django_db
def test_each_event_type_at_over_and_under_its_threshold(meter, kind, fields, opens):
    ingest(meter, [reading(0), reading(1, **fields)])
    events = pq_events(meter, kind)
    if opens:
        assert len(events) == 1 and events[0].is_open and events[0].start == at(1)
    else:
        assert events == []


@pytest.mark.django_db
def test_configured_thresholds_are_used(meter):
    pq_config_set(meter=meter, values={"sag_v_threshold": 0.95, "thd_pct_threshold": 8.0})
    low = 0.94 * NOMINAL  # on every phase, so no imbalance
    ingest(meter, [reading(0, va=low, vb=low, vc=low, thd_v_pct=7.0)])
    assert [e.kind for e in pq_events(meter)] == ["sag"]
    assert pq_events(meter)[0].threshold == 0.95


@pytest.mark.django_db
def test_sag_opens_on_first_violating_reading_and_closes_on_first_normal(meter):
    ingest(meter, [reading(0), reading(1, va=200.0), reading(2, va=180.0, vc=190.0)])
    (sag,) = pq_events(meter, "sag")
    assert sag.is_open and sag.start == at(1) and sag.end is None
    assert sag.duration_s is None and sag.duration_class == ""
    ingest(meter, [reading(3, total_power=5.0, va=None, vb=None, vc=None)])  # no voltage: no close
    assert pq_events(meter, "sag")[0].is_open
    ingest(meter, [reading(4)])
    sag.refresh_from_db()
    assert sag.end == at(4) and sag.duration_s == 3.0
    assert sag.duration_class == "momentary" and sag.ieee_category == "momentary_sag"
    assert sag.phases == ["a", "c"]
    assert sag.worst_value == pytest.approx(180.0 / NOMINAL)
    assert sag.unit == "pu" and sag.reading_count == 2


@pytest.mark.django_db
def test_long_sag_is_undervoltage_and_long_interruption_is_sustained(meter):
    items = [reading(0), *[reading(t, va=10.0) for t in range(1, 100, 10)], reading(120)]
    ingest(meter, items)
    (sag,) = pq_events(meter, "sag")
    (interruption,) = pq_events(meter, "interruption")
    assert sag.ieee_category == "undervoltage" and sag.duration_class == "long_duration"
    assert interruption.ieee_category == "sustained_interruption"
    assert interruption.worst_value == pytest.approx(10.0 / NOMINAL)


@pytest.mark.django_db
def test_swell_thd_and_imbalance_events_carry_their_magnitudes(meter):
    ingest(meter, [reading(0, vb=260.0, thd_v_pct=7.5), reading(1, vb=270.0, thd_v_pct=6.0), reading(2, thd_v_pct=1)])
    (swell,) = pq_events(meter, "swell")
    (thd,) = pq_events(meter, "thd")
    (imbalance,) = pq_events(meter, "imbalance")
    assert swell.worst_value == pytest.approx(270.0 / NOMINAL) and swell.phases == ["b"]
    assert thd.worst_value == 7.5 and thd.unit == "%" and thd.ieee_category == "waveform_distortion"
    expected, _ = pq.unbalance_pct([230.0, 270.0, 230.0])
    assert imbalance.worst_value == pytest.approx(expected)
    assert imbalance.method == "ieee_pvur" and imbalance.phases == ["b"]
    assert imbalance.ieee_category == "voltage_imbalance"


@pytest.mark.django_db
def test_line_voltages_use_the_nema_rate(meter):
    line = {"voltage_ab": 400.0, "voltage_bc": 400.0, "voltage_ca": 380.0}
    ingest(meter, [reading(0, **line)])
    (imbalance,) = pq_events(meter, "imbalance")
    assert imbalance.method == "nema_lvur"
    assert imbalance.worst_value == pytest.approx(pq.unbalance_pct([400.0, 400.0, 380.0])[0])
    assert imbalance.phases == ["ca"]


@pytest.mark.django_db
def test_single_phase_meter_has_no_imbalance_and_only_phase_a(site):
    meter = factories.MeterFactory(site=site, phases=1)
    ingest(meter, [reading(0, va=230.0, vb=150.0, vc=300.0), reading(1, va=200.0, vb=None, vc=None)])
    assert [e.kind for e in pq_events(meter)] == ["sag"]
    assert pq_events(meter)[0].start == at(1)


@pytest.mark.django_db
def test_interruption_lies_inside_a_sag(meter):
    ingest(meter, [reading(0), reading(1, va=100.0), reading(2, va=0.0), reading(3, va=100.0), reading(4)])
    (sag,) = pq_events(meter, "sag")
    (interruption,) = pq_events(meter, "interruption")
    assert (sag.start, sag.end) == (at(1), at(4))
    assert (interruption.start, interruption.end) == (at(2), at(3))


@pytest.mark.django_db
def test_nominal_voltage_of_the_meter_is_the_base(site):
    meter = factories.MeterFactory(site=site, nominal_voltage=120.0)
    ingest(meter, [reading(0, va=120.0, vb=120.0, vc=120.0), reading(1, va=107.0, vb=120.0, vc=120.0)])
    (sag,) = pq_events(meter, "sag")
    assert sag.worst_value == pytest.approx(107.0 / 120.0)


# Batches, arrival order, duplicates, outbox ---------------------------------------------------


@pytest.mark.django_db
def test_sag_spanning_a_bulk_batch_boundary_is_one_event(meter):
    ingest(meter, [reading(0), reading(1, va=200.0), reading(2, va=190.0)])
    ingest(meter, [reading(3, va=195.0), reading(4)])
    (sag,) = pq_events(meter, "sag")
    assert (sag.start, sag.end, sag.reading_count) == (at(1), at(4), 3)
    assert sag.worst_value == pytest.approx(190.0 / NOMINAL)
    assert actions(PQ_EVENT, meter, "sag") == [("sag", "opened"), ("sag", "closed")]


@pytest.mark.django_db
def test_opening_and_closing_are_each_published_once_into_the_outbox(meter):
    ingest(meter, [reading(0), reading(1, va=200.0)])
    ingest(meter, [reading(2, va=200.0)])
    ingest(meter, [reading(3)])
    payloads = outbox(PQ_EVENT, meter, "sag")
    assert [p["action"] for p in payloads] == ["opened", "closed"]
    opened, closed = payloads
    assert opened["event_id"] == closed["event_id"]
    assert opened["site_id"] == meter.site_id and opened["is_open"] is True and opened["end"] is None
    assert closed["end"] == "2025-10-16T10:00:03Z" and closed["duration_s"] == 2.0
    assert closed["duration_class"] == "momentary" and closed["ieee_category"] == "momentary_sag"


@pytest.mark.django_db
def test_duplicates_do_not_open_twice(meter):
    items = [reading(0), reading(1, va=200.0), reading(2, va=200.0)]
    ingest(meter, items)
    result = ingest(meter, items)
    assert result.duplicates == 3
    ingest(meter, [reading(1, va=200.0)])
    assert len(pq_events(meter, "sag")) == 1
    assert actions(PQ_EVENT, meter, "sag") == [("sag", "opened")]
    # A duplicate inside one batch counts once too.
    ingest(meter, [reading(5), reading(5)])
    assert actions(PQ_EVENT, meter, "sag") == [("sag", "opened"), ("sag", "closed")]


def _timeline() -> list[dict]:
    """A minute of readings exercising every rule, with gaps in measurements."""
    rng = random.Random(1159)
    items = []
    for t in range(60):
        va = rng.choice([230.0, 230.0, 200.0, 150.0, 10.0, 260.0])
        body = reading(t, va=va, vb=rng.choice([230.0, 240.0]), thd_v_pct=rng.choice([2.0, 6.0]))
        if t % 7 == 3:
            body = reading(t, va=None, vb=None, vc=None)  # carries no voltage at all
        items.append(body)
    return items


@pytest.mark.django_db
def test_out_of_order_and_bulk_arrival_give_the_same_events_as_one_by_one(site):
    in_order, shuffled, batched, reversed_ = (factories.MeterFactory(site=site) for _ in range(4))
    items = _timeline()
    for item in items:
        ingest(in_order, [item])
    expected = event_shapes(in_order)
    assert {kind for kind, *_ in expected} == {"sag", "swell", "interruption", "thd", "imbalance"}

    order = items[:]
    random.Random(7).shuffle(order)
    for item in order:
        ingest(shuffled, [item])
    assert event_shapes(shuffled) == expected

    for item in reversed(items):
        ingest(reversed_, [item])
    assert event_shapes(reversed_) == expected

    chunks = [order[i : i + 9] for i in range(0, len(order), 9)]
    for chunk in chunks:
        ingest(batched, chunk)
    assert event_shapes(batched) == expected
    for meter in (in_order, shuffled, batched, reversed_):
        open_count = PQEvent.objects.filter(meter=meter, end__isnull=True).count()
        assert MeterPQState.objects.get(meter=meter).open_event_count == open_count


@pytest.mark.django_db
def test_late_reading_splits_extends_and_each_change_is_announced(meter):
    ingest(meter, [reading(0), reading(2, va=200.0), reading(6, va=200.0), reading(10)])
    (sag,) = pq_events(meter, "sag")
    assert (sag.start, sag.end) == (at(2), at(10))
    ingest(meter, [reading(1, va=190.0)])  # earlier violating reading: the event starts sooner
    sag.refresh_from_db()
    assert (sag.start, sag.end) == (at(1), at(10))
    ingest(meter, [reading(4)])  # a normal reading in the middle splits the event
    events = pq_events(meter, "sag")
    assert [(e.start, e.end) for e in events] == [(at(1), at(4)), (at(6), at(10))]
    assert actions(PQ_EVENT, meter, "sag") == [
        ("sag", "opened"),
        ("sag", "closed"),
        ("sag", "updated"),
        ("sag", "updated"),
        ("sag", "opened"),
        ("sag", "closed"),
    ]


@pytest.mark.django_db
def test_late_reading_closes_an_open_event(meter):
    ingest(meter, [reading(0, va=200.0), reading(5, va=200.0)])
    ingest(meter, [reading(3)])
    events = pq_events(meter, "sag")
    assert [(e.start, e.end) for e in events] == [(at(0), at(3)), (at(5), None)]
    assert actions(PQ_EVENT, meter, "sag") == [("sag", "opened"), ("sag", "closed"), ("sag", "opened")]


@pytest.mark.django_db
def test_a_gateway_batch_for_several_meters_detects_per_meter(site, gateway):
    first, second = factories.MeterFactory(site=site), factories.MeterFactory(site=site)
    ingest(
        gateway,
        [
            {**reading(0, va=200.0), "meter_id": second.pk},
            {**reading(0), "meter_id": first.pk},
            {**reading(1, va=200.0), "meter_id": first.pk},
            {**reading(1), "meter_id": second.pk},
        ],
    )
    assert [(e.start, e.end) for e in pq_events(first, "sag")] == [(at(1), None)]
    assert [(e.start, e.end) for e in pq_events(second, "sag")] == [(at(0), at(1))]


@pytest.mark.django_db
def test_readings_without_pq_fields_cost_no_detection_state(meter):
    ingest(meter, [{"timestamp": "2025-10-16T10:00:00Z", "total_power": 1.0}])
    assert not MeterPQState.objects.filter(meter=meter).exists()


@pytest.mark.django_db
@override_settings(PQ_DETECTION_ENABLED=False)
def test_detection_can_be_switched_off(meter):
    ingest(meter, [reading(0, va=10.0)])
    assert PQEvent.objects.count() == 0


@pytest.mark.django_db
def test_events_belong_to_the_meters_organization(meter, other_org):
    ingest(meter, [reading(0, va=10.0)])
    assert set(PQEvent.objects.values_list("organization_id", flat=True)) == {meter.organization_id}
    assert PQEvent.objects.for_org(other_org).count() == 0
    assert Meter.objects.for_org(other_org).count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_of_one_meter_serialize_and_agree_with_one_by_one(site):
    import threading

    from django.db import connection

    meter, reference = factories.MeterFactory(site=site), factories.MeterFactory(site=site)
    items = _timeline()
    halves = [items[i::2] for i in range(2)]  # interleaved: each batch is "late" for the other
    for item in items:
        ingest(reference, [item])
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def post(batch):
        try:
            barrier.wait()
            ingest(meter, batch)
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert MeterPQState.objects.filter(meter=meter).count() == 1
    assert event_shapes(meter) == event_shapes(reference)
