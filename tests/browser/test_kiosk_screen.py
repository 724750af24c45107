"""The kiosk's own service screen on its portrait touch screen (issue 14, item 4): 1080×1920 in Chromium.

Every page the embed shows (the PIN page, with and without its error; the kiosk page, with a job's result, the X
report and the closing report; the job page; the orders list; an order, with the refund form and after a refund;
the shift page; the error pages the embed meets: 403 for a refund while refunds are off on kiosks, 404 for a
wrong order id, each with its big «Вернуться в сервисное меню») is saved to
artifacts/screenshots/embed-<page>.png and checked: nothing wider than the screen (the document, tables, slips),
body text at least 18 px and no text under 16 px, every visible control (links, buttons, summaries, fields) at
least 48×48 px, no style that shows something only under the mouse (:hover changing display, visibility,
opacity…). The PIN is entered by taps on the page's own keypad alone.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from iiko import emulator as demo
from nekassir.models import Refund
from tests.browser.conftest import SCREENSHOTS
from tests.browser.steps import TIMEOUT, place_through_api
from tests.panel_support import PIN

pytestmark = pytest.mark.django_db(transaction=True)

SCREEN = {"width": 1080, "height": 1920}
BASE_FONT = 18  # px: body text
MIN_FONT = 16  # px: the smallest secondary text (labels, table heads, notes)
TARGET = 48  # px: the smallest touch target, both ways

# Measured in the page: what is too wide, too small or shown only under the mouse.
MEASURE = """({target, minFont}) => {
  const shown = el => {
    const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none";
  };
  const name = el => el.outerHTML.slice(0, 140).replace(/\\s+/g, " ");
  const controls = "a, button, input[type=submit], [role=button], summary, select, label.check, textarea, "
    + "input:not([type=hidden]):not([type=checkbox]):not([type=radio])";
  const small = [...document.querySelectorAll(controls)].filter(shown).map(el => {
    const r = el.getBoundingClientRect();
    return {w: Math.round(r.width * 10) / 10, h: Math.round(r.height * 10) / 10, el: name(el)};
  }).filter(t => t.w < target || t.h < target);
  const tinyText = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || !shown(el)) continue;
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (size < minFont) tinyText.push({size, text: node.textContent.trim().slice(0, 40), el: name(el)});
  }
  const wide = [...document.querySelectorAll("body *")].filter(shown).filter(el => {
    const s = getComputedStyle(el);
    return (s.overflowX === "auto" || s.overflowX === "scroll") && el.scrollWidth > el.clientWidth + 1;
  }).map(el => ({scroll: el.scrollWidth, client: el.clientWidth, el: name(el)}));
  const reveals = ["display", "visibility", "opacity", "height", "max-height", "width", "transform", "clip",
                   "clip-path", "pointer-events", "overflow"];
  const hoverOnly = [];
  for (const sheet of document.styleSheets) {
    for (const rule of sheet.cssRules) {
      if (!rule.selectorText || !rule.selectorText.includes(":hover")) continue;
      const shownByHover = reveals.filter(p => rule.style.getPropertyValue(p));
      if (shownByHover.length) hoverOnly.push(rule.selectorText + " { " + shownByHover.join(", ") + " }");
    }
  }
  return {
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
    bodyFont: parseFloat(getComputedStyle(document.body).fontSize),
    small, tinyText: tinyText.slice(0, 20), wide, hoverOnly,
  };
}"""


def check_screen(page, name: str) -> None:
    """Screenshot ``artifacts/screenshots/embed-<name>.png`` (the whole page) and the checks above."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state("load")
    page.screenshot(path=str(SCREENSHOTS / f"embed-{name}.png"), full_page=True)
    found = page.evaluate(MEASURE, {"target": TARGET, "minFont": MIN_FONT})
    assert found["scrollWidth"] <= found["innerWidth"], f"{name}: wider than the screen: {found['scrollWidth']}"
    assert found["bodyFont"] >= BASE_FONT, f"{name}: body text {found['bodyFont']} px"
    assert not found["tinyText"], f"{name}: text under {MIN_FONT} px: {found['tinyText']}"
    assert not found["small"], f"{name}: touch targets under {TARGET} px: {found['small']}"
    assert not found["wide"], f"{name}: scrolls sideways: {found['wide']}"
    assert not found["hoverOnly"], f"{name}: shown only under the mouse: {found['hoverOnly']}"


def tap_pin(page, digits: str) -> None:
    for digit in digits:
        page.get_by_test_id(f"key-{digit}").tap()


def finished_job(page, kind: str):
    job = page.locator(f'#kiosk-K1-jobs [data-job-kind="{kind}"]').first
    expect(job).to_have_attribute("data-job-state", "ok", timeout=TIMEOUT)
    return job


def check_error_page(page, name: str) -> None:
    """An error page of the embed: checked like the others, its big way back taken to the service menu."""
    check_screen(page, name)
    back = page.get_by_test_id("way-back")
    expect(back).to_have_text("Вернуться в сервисное меню")
    box = back.bounding_box()
    assert box is not None and box["height"] >= TARGET, f"{name}: way back {box}"
    back.tap()
    expect(page.locator("#kiosk-K1")).to_be_visible()


def test_every_embed_page_fits_the_kiosks_portrait_touch_screen(live_server, venue, browser, settings):
    settings.KIOSK_SERVICE_REFUNDS = True  # so that the order page shows its densest form, the refund's
    screen = browser.new_context(locale="ru-RU", timezone_id="Europe/Moscow", viewport=SCREEN, has_touch=True)
    try:
        page = screen.new_page()
        page.set_default_timeout(TIMEOUT)
        page.on("dialog", lambda dialog: dialog.accept())  # "Закрыть смену?", "Оформить возврат?"

        # --- the PIN page: the keypad alone enters a PIN (no keyboard is touched) ------------------------
        page.goto(f"{live_server.url}/kiosk/K1/service/")
        pin = page.get_by_test_id("pin")
        expect(pin).to_be_visible()
        expect(page.get_by_test_id("keypad")).to_be_visible()
        expect(pin).to_have_attribute("inputmode", "none")  # the keypad replaces the system's on-screen keyboard
        check_screen(page, "pin")
        tap_pin(page, "0000")
        expect(pin).to_have_value("0000")
        page.get_by_test_id("unlock").tap()
        expect(page.get_by_test_id("pin-error")).to_have_text("Неверный PIN")
        expect(pin).to_have_value("")
        check_screen(page, "pin-error")
        tap_pin(page, PIN[:-1] + "9")
        page.get_by_test_id("key-erase").tap()  # a wrong last digit taken back
        tap_pin(page, PIN[-1])
        expect(pin).to_have_value(PIN)
        page.get_by_test_id("unlock").tap()
        expect(page.locator("#kiosk-K1")).to_be_visible()
        check_screen(page, "home")

        # --- the kiosk page with a job's result, the job's own page --------------------------------------------
        page.get_by_test_id("open-shift").click()
        job = finished_job(page, "shift_open")
        check_screen(page, "home-job")
        job_id = re.fullmatch(r"job-(\d+)", job.get_attribute("id")).group(1)
        page.get_by_test_id("xreport").click()
        finished_job(page, "xreport")
        check_screen(page, "home-xreport")
        page.goto(f"{live_server.url}/kiosk/K1/service/jobs/{job_id}/")
        expect(page.get_by_test_id("job")).to_have_attribute("data-job-state", "ok")
        check_screen(page, "job")

        # --- orders, an order with the refund form, then refunded ------------------------------------------------
        first = place_through_api(live_server, venue, (demo.PRODUCT_BURGER_ID, "1"), (demo.PRODUCT_CAPPUCCINO_ID, "2"))
        place_through_api(live_server, venue, (demo.PRODUCT_CAPPUCCINO_ID, "1"))
        page.goto(f"{live_server.url}/kiosk/K1/service/")
        page.locator("header nav").get_by_role("link", name="Заказы").click()
        expect(page.get_by_test_id("order-row")).to_have_count(2)
        check_screen(page, "orders")
        page.get_by_role("link", name=first.number).first.click()
        expect(page.get_by_test_id("order-number")).to_have_text(first.number)
        expect(page.locator("#refund-form")).to_be_visible()
        check_screen(page, "order")
        coffee = first.lines.get(product_id=demo.PRODUCT_CAPPUCCINO_ID)
        page.get_by_test_id(f"qty-{coffee.position}").fill("1")
        page.get_by_test_id("refund-submit").click()
        expect(page.get_by_test_id("refund-row").first).to_have_attribute("data-state", "done")
        assert Refund.objects.get(order=first).amount == coffee.price
        check_screen(page, "order-refunded")

        # --- the embed's error pages: a refund while refunds are off on kiosks (403), a wrong order id (404) ------
        settings.KIOSK_SERVICE_REFUNDS = False
        page.get_by_test_id("qty-1").fill("1")
        page.get_by_test_id("refund-submit").click()
        expect(page.get_by_test_id("refunds-off")).to_be_visible()
        check_error_page(page, "403")
        page.goto(f"{live_server.url}/kiosk/K1/service/orders/{uuid.uuid4()}/")
        expect(page.get_by_test_id("not-found")).to_be_visible()
        check_error_page(page, "404")

        # --- the shift page, then the close with its report and slip -------------------------------------------
        page.goto(f"{live_server.url}/kiosk/K1/service/")
        page.get_by_test_id("shifts-link").click()
        expect(page.get_by_test_id("shift-title")).to_be_visible()
        check_screen(page, "shift")
        page.goto(f"{live_server.url}/kiosk/K1/service/")
        page.get_by_test_id("close-shift").click()
        finished_job(page, "shift_close")
        expect(page.get_by_test_id("closing-report")).to_be_visible()
        expect(page.get_by_test_id("settlement-slip")).to_be_visible()
        check_screen(page, "home-closed")
    finally:
        screen.close()
