"""The panel and marked goods (issue 13): the order page shows each unit's code (short, full on click) and its
checks, the refund form picks units, a refund shows which codes went back, the shift page counts them."""

from __future__ import annotations

import base64
import html as html_lib

import pytest

from core.gs1 import GS, short_code
from iiko import emulator as demo
from marking.emulator import DEMO_TOKEN
from marking.models import MarkedProduct
from nekassir.models import Order, OrderMark, Refund
from nekassir.panel.templatetags import GS_MARK
from tests.venue import order_body

pytestmark = pytest.mark.django_db(transaction=True)

WATER_GTIN = "04607012345608"


@pytest.fixture
def marked_venue(settings, venue, marking_emulator):
    settings.MARKING_CHECK_URL = marking_emulator.url
    settings.MARKING_CHECK_TOKEN = DEMO_TOKEN
    MarkedProduct.objects.create(product_id=demo.PRODUCT_WATER_ID, name="Вода", group="water", gtins=[WATER_GTIN])
    return venue


@pytest.fixture
def codes(marking_operator) -> list[str]:
    return marking_operator.mint(WATER_GTIN, "valid", 2)


@pytest.fixture
def order(client, marked_venue, codes) -> Order:
    body = order_body((demo.PRODUCT_WATER_ID, "2"), (demo.PRODUCT_BURGER_ID, "1"))
    body["lines"][0]["marking_codes"] = codes
    answer = client.post("/api/v1/orders", body, content_type="application/json",
                         headers={"Authorization": f"Bearer {marked_venue.tokens['K1']}"})
    assert answer.status_code == 201, answer.content
    paid = Order.objects.get(pk=body["id"])
    assert paid.status == Order.Status.COMPLETED, paid.error_message
    return paid


def page(manager_client, order) -> str:
    answer = manager_client.get(f"/orders/{order.pk}/")
    assert answer.status_code == 200
    return answer.content.decode()


def test_the_order_page_shows_each_code_short_and_in_full_with_its_checks(manager_client, order, codes):
    html = page(manager_client, order)
    rows = html.count('data-testid="mark-row"')
    assert rows == 2 and html.count('data-state="sold"') >= 2
    for raw in codes:
        assert short_code(raw) in html  # GTIN · serial in the list
        assert GS_MARK.join(html_lib.escape(p) for p in raw.split(GS)) in html  # the whole code, GS marked
    assert "можно продать" in html and "принят" in html  # the check service's and the register's verdicts
    assert "Проверены службой проверки и ККТ" in html


def test_the_refund_form_lists_the_units_and_a_refund_shows_the_codes_that_went_back(manager_client, order,
                                                                                     codes, venue):
    water = order.lines.get(product_id=demo.PRODUCT_WATER_ID)
    first, second = water.marks.order_by("unit")
    html = page(manager_client, order)
    assert f'name="mark_{water.pk}" value="{first.pk}"' in html and f'value="{second.pk}"' in html
    assert f'step="1" name="qty_{water.pk}" data-max="2"' in html  # the quantity box beside them
    answer = manager_client.post(f"/orders/{order.pk}/refund/", {
        f"qty_{water.pk}": "1", f"mark_{water.pk}": [str(first.pk)], "to_card": "on", "after": "0",
    })
    assert answer.status_code == 302, answer.content.decode()
    refund = Refund.objects.get()
    assert refund.state == Refund.State.DONE, refund.message
    [receipt] = [d for d in venue.atol.journal() if d["type"] == "sellReturn"]
    assert [base64.b64decode(i["imcParams"]["imc"]).decode() for i in receipt["items"]] == [codes[0]]
    first.refresh_from_db()
    assert first.state == OrderMark.State.RETURNED and first.refund_id == refund.pk
    html = page(manager_client, order)
    assert 'data-testid="refund-marks"' in html and short_code(codes[0]) in html.split('data-testid="refund-marks"')[1]
    assert 'data-state="returned"' in html and 'data-testid="mark-refund"' in html
    # the returned unit is no longer offered; the one still sold is
    form = html.split('id="refund-form"')[1]
    assert f'value="{first.pk}"' not in form and f'value="{second.pk}"' in form


def test_the_refund_form_refuses_ticks_that_do_not_match_the_quantity(manager_client, order):
    water = order.lines.get(product_id=demo.PRODUCT_WATER_ID)
    first, second = water.marks.order_by("unit")
    answer = manager_client.post(f"/orders/{order.pk}/refund/", {
        f"qty_{water.pk}": "1", f"mark_{water.pk}": [str(first.pk), str(second.pk)], "to_card": "on", "after": "0",
    })
    assert answer.status_code == 200
    html = answer.content.decode()
    assert 'data-testid="refund-error"' in html and "отмечено кодов маркировки 2" in html
    assert f'value="{first.pk}" data-testid="mark-1-1" checked' in html  # the ticks are kept
    assert not Refund.objects.exists() and not OrderMark.objects.filter(refund__isnull=False).exists()


def test_the_shift_page_counts_marked_units_sold_and_returned(manager_client, order):
    water = order.lines.get(product_id=demo.PRODUCT_WATER_ID)
    shift = order.sell_operation.document.shift
    html = manager_client.get(f"/shifts/{shift.pk}/").content.decode()
    assert 'data-testid="marks-sold">2<' in html and 'data-testid="marks-returned">0<' in html
    manager_client.post(f"/orders/{order.pk}/refund/", {f"qty_{water.pk}": "1", "to_card": "on", "after": "0"})
    html = manager_client.get(f"/shifts/{shift.pk}/").content.decode()
    assert 'data-testid="marks-sold">2<' in html and 'data-testid="marks-returned">1<' in html
