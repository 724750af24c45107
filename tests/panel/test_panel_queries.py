"""Every page renders with a bounded number of SQL queries however many orders exist, and without any
device call (the devices' state comes from the database)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.events import record_event
from fiscal.models import Shift
from nekassir.models import Refund
from payments.models import Settlement
from tests.panel_support import PIN, fake_completed_order, fake_shift

pytestmark = pytest.mark.django_db(transaction=True)

MAX_QUERIES = 40


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        answer = client.get(url)
    assert answer.status_code == 200, (url, answer.status_code)
    return len(captured)


def grow(venue, shift, count: int) -> list:
    orders = [fake_completed_order(venue.kiosks["K1"], shift) for _ in range(count)]
    for order in orders[::3]:  # some refunds too, and things needing attention
        Refund.objects.create(order=order, kiosk=order.kiosk, lines={}, amount_kopecks=1000, state="done")
    for order in orders[1::7]:
        type(order).objects.filter(pk=order.pk).update(status="not_delivered")
    return orders


@pytest.fixture
def pages(venue, manager):
    kiosk = venue.kiosks["K1"]
    closed = fake_shift(kiosk, number=1, state=Shift.State.CLOSED)
    Settlement.objects.create(kiosk=kiosk, shift=closed, state="failed", message="нет связи")
    shift = fake_shift(kiosk, number=2)
    job = record_event("panel.check", kiosk=kiosk, user=manager, data={"job": "check"})
    return kiosk, shift, job


def urls(shift, order, job) -> list[str]:
    return ["/", f"/shifts/{shift.pk}/", f"/orders/{order.pk}/", "/orders/", "/journal/", f"/jobs/{job.pk}/",
            f"/orders/{order.pk}/refunds/"]


def test_pages_cost_the_same_queries_with_5_or_50_orders(manager_client, venue, pages):
    _, shift, job = pages
    few = grow(venue, shift, 5)
    before = [queries(manager_client, url) for url in urls(shift, few[0], job)]
    more = grow(venue, shift, 45)
    after = [queries(manager_client, url) for url in urls(shift, more[-1], job)]
    assert after == before
    assert max(after) <= MAX_QUERIES, after
    assert venue.atol.journal() == [] and venue.kkm.journal() == []  # no device was asked anything


def test_the_embed_costs_the_same_with_5_or_50_orders(client, venue, pages):
    _, shift, _ = pages
    assert client.post("/kiosk/K1/service/", {"pin": PIN}).status_code == 302
    few = grow(venue, shift, 5)
    embed = ["/kiosk/K1/service/", f"/kiosk/K1/service/orders/{few[0].pk}/", f"/kiosk/K1/service/shifts/{shift.pk}/"]
    before = [queries(client, url) for url in embed]
    grow(venue, shift, 45)
    after = [queries(client, url) for url in embed]
    assert after == before and max(after) <= MAX_QUERIES


def test_the_venue_page_costs_the_same_with_2_or_12_kiosks(manager_client, venue, pages):
    from tests.factories import make_terminal_kiosk

    before = queries(manager_client, "/")
    for n in range(10):
        extra = make_terminal_kiosk(venue.atol.url, kkm_url=venue.kkm.url, code=f"X{n}")
        fake_completed_order(extra, fake_shift(extra))
    assert queries(manager_client, "/") == before
