"""The whole service-menu path in a real browser (Debian's Chromium through Playwright), against the
emulators: log in → open shift → X report → orders through the kiosk API → the shift page with their
receipt numbers → order page → partial refund → full refund of another order → close the shift showing
the settlement slip and the closing report → previous / next shift → the kiosk embed with its PIN.
Every page's screenshot is saved to artifacts/screenshots/.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from fiscal.models import Shift
from iiko import emulator as demo
from nekassir.models import Refund
from tests.browser.steps import TIMEOUT, place_through_api
from tests.panel_support import PIN, make_user

pytestmark = pytest.mark.django_db(transaction=True)



def finished_job(page, kiosk: str, kind: str):
    job = page.locator(f'#kiosk-{kiosk}-jobs [data-job-kind="{kind}"]').first
    expect(job).to_have_attribute("data-job-state", "ok", timeout=TIMEOUT)
    return job


def test_the_service_menu_end_to_end(live_server, venue, page, browser, shot):
    make_user("anna", "refund_order", "manage_shift", "print_xreport", "print_copy", "change_order")
    page.set_default_timeout(TIMEOUT)
    page.on("dialog", lambda dialog: dialog.accept())  # "Закрыть смену?", "Оформить возврат?"

    # --- log in -----------------------------------------------------------------------------------
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    shot(page, "01-login")
    page.fill("input[name=username]", "anna")
    page.fill("input[name=password]", "pass-anna")
    page.click("button[type=submit]")
    expect(page.locator("#kiosk-K1")).to_be_visible()
    shot(page, "02-venue")

    # --- open the shift, print the X report -------------------------------------------------------------
    page.click('#kiosk-K1 [data-testid="open-shift"]')
    finished_job(page, "K1", "shift_open")
    expect(page.locator('#kiosk-K1 [data-testid="shift-state"]')).to_contain_text("открыта")
    shot(page, "03-shift-opened")
    page.click('#kiosk-K1 [data-testid="xreport"]')
    expect(finished_job(page, "K1", "xreport")).to_contain_text("X-отчёт напечатан")
    shot(page, "04-xreport")

    # --- orders from the kiosk, seen on the shift page with their receipt numbers ---------------------
    first = place_through_api(live_server, venue, (demo.PRODUCT_BURGER_ID, "1"), (demo.PRODUCT_CAPPUCCINO_ID, "2"))
    second = place_through_api(live_server, venue, (demo.PRODUCT_CAPPUCCINO_ID, "1"))
    page.click('#kiosk-K1 [data-testid="shifts-link"]')
    expect(page.get_by_test_id("shift-title")).to_contain_text(f"№{first.shift.number}")
    numbers = page.get_by_test_id("receipt-number").all_inner_texts()
    for order in (first, second):
        assert str(order.sell_operation.document.receipt_number) in numbers
        expect(page.get_by_role("link", name=order.number).first).to_be_visible()
    shot(page, "05-shift")

    # --- order page, partial refund -------------------------------------------------------------------
    page.get_by_role("link", name=first.number).first.click()
    expect(page.get_by_test_id("order-number")).to_have_text(first.number)
    expect(page.get_by_test_id("receipt")).to_have_count(1)
    expect(page.get_by_test_id("rrn").first).to_have_text(first.card_sale.rrn)
    shot(page, "06-order")
    coffee = first.lines.get(product_id=demo.PRODUCT_CAPPUCCINO_ID)
    page.get_by_test_id(f"qty-{coffee.position}").fill("1")
    page.get_by_test_id("refund-submit").click()
    expect(page.get_by_test_id("refund-row").first).to_have_attribute("data-state", "done")
    expect(page.get_by_test_id("receipt")).to_have_count(2)  # the sale and the return of one coffee
    refund = Refund.objects.get(order=first)
    assert refund.amount == coffee.price and refund.created_by.username == "anna"
    shot(page, "07-partial-refund")

    # --- full refund of the other order -----------------------------------------------------------------
    page.goto(f"{live_server.url}/orders/{second.pk}/")
    page.get_by_test_id("cancel-iiko").check()
    page.get_by_test_id("refund-full").click()
    expect(page.get_by_test_id("refund-row").first).to_have_attribute("data-state", "done")
    expect(page.locator("#refund-form")).to_have_count(0)  # nothing left to refund
    full = Refund.objects.get(order=second)
    assert full.amount_kopecks == second.card_sale.amount_kopecks and full.iiko_state == "отменён"
    shot(page, "08-full-refund")

    # --- close the shift: the settlement slip and the closing report -------------------------------------
    page.goto(f"{live_server.url}/")
    page.click('#kiosk-K1 [data-testid="close-shift"]')
    finished_job(page, "K1", "shift_close")
    closing = page.get_by_test_id("closing-report")
    expect(closing).to_be_visible()
    expect(page.get_by_test_id("settlement-slip")).to_be_visible()
    shift = Shift.objects.get(pk=first.shift_id)
    assert shift.state == "closed"
    expect(page.get_by_test_id("closing-fd")).to_have_text(str(shift.documents.get(doc_type="closeShift").fd_number))
    expect(closing.get_by_test_id("rec-status")).to_have_text("сходится")
    expect(page.locator('#kiosk-K1 [data-testid="shift-state"]')).to_contain_text("закрыта")
    shot(page, "09-shift-closed")

    # --- previous / next shift ------------------------------------------------------------------------------
    page.click('#kiosk-K1 [data-testid="open-shift"]')
    finished_job(page, "K1", "shift_open")
    page.click('#kiosk-K1 [data-testid="shifts-link"]')
    expect(page.get_by_test_id("shift-title")).to_contain_text(f"№{shift.number + 1}")
    page.get_by_test_id("prev-shift").click()
    expect(page.get_by_test_id("shift-title")).to_contain_text(f"№{shift.number}")
    expect(page.get_by_test_id("reconciliation").get_by_test_id("rec-status")).to_have_text("сходится")
    expect(page.get_by_test_id("receipt-row")).to_have_count(4)  # two sells, two returns
    shot(page, "10-previous-shift")
    page.get_by_test_id("next-shift").click()
    expect(page.get_by_test_id("shift-title")).to_contain_text(f"№{shift.number + 1}")

    # --- a phone ------------------------------------------------------------------------------------------
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/orders/{first.pk}/")
    shot(page, "11-phone-order")
    page.goto(f"{live_server.url}/")
    shot(page, "12-phone-venue")

    # --- the kiosk's own screen, portrait, unlocked by its PIN ------------------------------------------------
    kiosk_screen = browser.new_context(locale="ru-RU", viewport={"width": 810, "height": 1440})
    try:
        kiosk = kiosk_screen.new_page()
        kiosk.set_default_timeout(TIMEOUT)
        kiosk.goto(f"{live_server.url}/kiosk/K1/service/")
        expect(kiosk.get_by_test_id("pin")).to_be_visible()
        shot(kiosk, "13-embed-pin")
        kiosk.get_by_test_id("pin").fill("0000")
        kiosk.get_by_test_id("unlock").click()
        expect(kiosk.get_by_test_id("pin-error")).to_have_text("Неверный PIN")
        kiosk.get_by_test_id("pin").fill(PIN)
        kiosk.get_by_test_id("unlock").click()
        expect(kiosk.locator("#kiosk-K1")).to_be_visible()
        expect(kiosk.locator("#kiosk-K2")).to_have_count(0)  # that kiosk only
        expect(kiosk.get_by_role("link", name=first.number).first).to_be_visible()
        shot(kiosk, "14-embed-home")
        kiosk.get_by_role("link", name=first.number).first.click()
        expect(kiosk.get_by_test_id("order-number")).to_have_text(first.number)
        expect(kiosk.locator("#refund-form")).to_have_count(0)  # refunds from the kiosk are off by default
        shot(kiosk, "15-embed-order")
    finally:
        kiosk_screen.close()
