"""Pickup numbers: kiosk prefix + a per-kiosk, per-day sequence, unique under concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest
from django.db import transaction

from core.models import Kiosk
from nekassir.models import PickupCounter
from nekassir.numbers import next_pickup_number
from tests.threads import run_in_threads

NOON_UTC = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)


def make_kiosk(code: str = "K1") -> Kiosk:
    return Kiosk.objects.create(code=code, name=f"Киоск {code}", has_register=False)


@pytest.mark.django_db
def test_numbers_count_up_per_kiosk_with_its_prefix():
    k1, k2 = make_kiosk("K1"), make_kiosk("K2")
    assert next_pickup_number(k1, NOON_UTC) == (date(2026, 3, 6), 1, "K1-001")
    assert next_pickup_number(k1, NOON_UTC) == (date(2026, 3, 6), 2, "K1-002")
    assert next_pickup_number(k2, NOON_UTC) == (date(2026, 3, 6), 1, "K2-001")


@pytest.mark.django_db
def test_a_new_day_in_the_venues_time_zone_starts_again_at_one(settings):
    settings.TIME_ZONE = "Europe/Moscow"
    kiosk = make_kiosk()
    next_pickup_number(kiosk, datetime(2026, 3, 6, 20, 59, tzinfo=UTC))  # 23:59 in Moscow
    assert next_pickup_number(kiosk, datetime(2026, 3, 6, 21, 1, tzinfo=UTC)) == (date(2026, 3, 7), 1, "K1-001")


@pytest.mark.django_db
def test_past_999_the_number_just_grows():
    kiosk = make_kiosk()
    PickupCounter.objects.create(kiosk=kiosk, business_date=date(2026, 3, 6), last_seq=999)
    assert next_pickup_number(kiosk, NOON_UTC)[2] == "K1-1000"


@pytest.mark.django_db
def test_a_rolled_back_order_gives_its_number_back():
    kiosk = make_kiosk()
    with pytest.raises(RuntimeError), transaction.atomic():
        next_pickup_number(kiosk, NOON_UTC)
        raise RuntimeError("the order was refused")
    assert next_pickup_number(kiosk, NOON_UTC)[1] == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_get_distinct_consecutive_numbers():
    kiosk = make_kiosk()
    start = threading.Barrier(8)

    def take():
        start.wait()
        with transaction.atomic():
            return next_pickup_number(kiosk, NOON_UTC)[1]

    results, errors = run_in_threads(take, [()] * 8)
    assert errors == []
    assert sorted(results) == list(range(1, 9))


@pytest.mark.django_db(transaction=True)
def test_a_second_order_waits_for_the_first_and_reuses_a_rolled_back_number():
    """The first transaction holds the counter; the second waits, then takes the freed number."""
    kiosk = make_kiosk()
    taken, release = threading.Event(), threading.Event()

    def first():
        with pytest.raises(RuntimeError), transaction.atomic():
            next_pickup_number(kiosk, NOON_UTC)
            taken.set()
            release.wait(5)
            raise RuntimeError("rolled back")
        return "first"

    def second():
        taken.wait(5)
        with transaction.atomic():
            number = next_pickup_number(kiosk, NOON_UTC)[1]
        return number

    waiter = threading.Timer(0.3, release.set)  # let the second block on the counter first
    waiter.start()
    results, errors = run_in_threads(lambda role: first() if role == 1 else second(), [(1,), (2,)])
    waiter.join()
    assert errors == []
    assert sorted(results, key=str) == [1, "first"]
