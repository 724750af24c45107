"""Issue 14 in a real browser (helper 14-A's items): the refund form's own check runs now that ``max`` is written
unlocalised (``max="2,000"`` made Chromium ignore it), and the kiosk embed's 404 page leads back with a button
a finger can hit."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from nekassir.models import Order
from tests.browser.steps import TIMEOUT, log_in_on_order
from tests.panel_support import PIN, make_user, place

pytestmark = pytest.mark.django_db(transaction=True)



def test_the_browser_refuses_a_refund_above_what_may_go_back(live_server, client, venue, page, shot):
    order = place(client, venue)
    assert order.status == Order.Status.COMPLETED
    make_user("anna", "refund_order")
    log_in_on_order(page, live_server, order, "anna")
    coffee = page.get_by_test_id("qty-2")  # two cappuccinos paid
    expect(coffee).to_have_attribute("max", "2.000")
    coffee.fill("3")
    assert coffee.evaluate("input => input.validity.rangeOverflow") is True
    page.get_by_test_id("refund-submit").click()
    expect(coffee).to_have_value("3")  # the browser kept the form and said why; nothing was sent
    assert coffee.evaluate("input => input.validationMessage") != ""
    shot(page, "rough-edges-refund-above-max")
    assert not order.refunds.exists()


def test_the_kiosk_embed_404_has_a_large_way_back(live_server, venue, page, shot):
    page.set_viewport_size({"width": 1080, "height": 1920})
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{live_server.url}/kiosk/K1/service/")
    page.fill("input[name=pin]", PIN)
    page.get_by_test_id("unlock").click()
    page.wait_for_url(f"{live_server.url}/kiosk/K1/service/")
    page.goto(f"{live_server.url}/kiosk/K1/service/orders/00000000-0000-4000-8000-000000000000/")
    back = page.get_by_test_id("way-back")
    expect(back).to_have_text("Вернуться в сервисное меню")
    box = back.bounding_box()
    assert box is not None and box["height"] >= 48 and box["width"] >= 300, box
    shot(page, "rough-edges-embed-404")
    back.click()
    page.wait_for_url(f"{live_server.url}/kiosk/K1/service/")
