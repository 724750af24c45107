"""A refund of marked goods in a real browser (issue 13): the order page shows each bottle's code, short and in
full on click; typing a quantity ticks the line's last units, ticking sets the quantity; the refund returns
the ticked code. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import base64

import pytest
from playwright.sync_api import expect

from core.gs1 import GS, short_code
from iiko import emulator as demo
from marking.emulator import DEMO_TOKEN
from marking.models import MarkedProduct
from nekassir.models import Refund
from tests.browser.steps import log_in_on_order, post_order
from tests.panel_support import make_user
from tests.venue import order_body

pytestmark = pytest.mark.django_db(transaction=True)

WATER_GTIN = "04607012345608"


def test_marked_units_are_picked_in_the_refund_form(live_server, venue, marking_emulator, marking_operator, settings,
                                                    page, shot):
    settings.MARKING_CHECK_URL, settings.MARKING_CHECK_TOKEN = marking_emulator.url, DEMO_TOKEN
    MarkedProduct.objects.create(product_id=demo.PRODUCT_WATER_ID, name="Вода", group="water", gtins=[WATER_GTIN])
    codes = marking_operator.mint(WATER_GTIN, "valid", 3)
    body = order_body((demo.PRODUCT_WATER_ID, "3"))
    body["lines"][0]["marking_codes"] = codes
    order = post_order(live_server, venue, body)

    make_user("anna", "refund_order")
    log_in_on_order(page, live_server, order, "anna")
    expect(page.get_by_test_id("marks-table")).to_be_visible()
    short = page.get_by_test_id("mark-short").first
    expect(short).to_have_text(short_code(codes[0]))
    short.click()  # the full code, each GS marked
    full = page.get_by_test_id("mark-full").first
    expect(full).to_have_text(codes[0].replace(GS, "GS"))
    expect(full.locator(".gs")).to_have_count(codes[0].count(GS))
    shot(page, "marking-01-order")

    page.get_by_test_id("qty-1").fill("2")  # the last two bottles are ticked
    units = [page.get_by_test_id(f"mark-1-{unit}") for unit in (1, 2, 3)]
    assert [u.is_checked() for u in units] == [False, True, True]
    units[2].uncheck()  # the manager takes bottle 1 and 2 instead: the quantity follows the ticks
    units[0].check()
    expect(page.get_by_test_id("qty-1")).to_have_value("2")
    shot(page, "marking-02-refund-form")
    page.get_by_test_id("refund-submit").click()
    expect(page.get_by_test_id("refund-row").first).to_have_attribute("data-state", "done")
    expect(page.get_by_test_id("refund-marks")).to_contain_text(short_code(codes[0]))
    shot(page, "marking-03-refunded")
    refund = Refund.objects.get()
    assert sorted(m.unit for m in refund.marks.all()) == [1, 2]
    [receipt] = [d for d in venue.atol.journal() if d["type"] == "sellReturn"]
    assert sorted(base64.b64decode(i["imcParams"]["imc"]).decode() for i in receipt["items"]) == sorted(codes[:2])
