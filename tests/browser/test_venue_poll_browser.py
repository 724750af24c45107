"""Issue 15 in a real browser: the venue page's one poller of the kiosk blocks (every 20 s) swaps each block
in place with htmx's out-of-band swap, although the poller itself swaps nothing (``hx-swap="none"``)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.steps import TIMEOUT
from tests.panel_support import fake_shift, make_user

pytestmark = pytest.mark.django_db(transaction=True)

# What the poller's timer does every 20 s, done now: its own GET, through htmx, with its own swap.
POLL_NOW = """() => {
  const poller = document.querySelector('[data-testid="kiosk-states"]');
  return htmx.ajax('GET', poller.getAttribute('hx-get'), {source: poller, swap: poller.getAttribute('hx-swap')});
}"""


def test_one_poll_refreshes_every_kiosk_block_in_place(live_server, venue, page):
    make_user("anna", "manage_shift")
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{live_server.url}/login/?next=/")
    page.fill("input[name=username]", "anna")
    page.fill("input[name=password]", "pass-anna")
    page.click("button[type=submit]")
    for code in ("K1", "K2"):
        expect(page.locator(f'#kiosk-{code} [data-testid="shift-state"]')).to_have_text("Смена закрыта")
    fake_shift(venue.kiosks["K1"], number=7)
    fake_shift(venue.kiosks["K2"], number=3)
    page.evaluate(POLL_NOW)
    expect(page.locator('#kiosk-K1 [data-testid="shift-state"]')).to_have_text("Смена №7 открыта")
    expect(page.locator('#kiosk-K2 [data-testid="shift-state"]')).to_have_text("Смена №3 открыта")
    assert page.locator('[id$="-state"].kiosk-state').count() == 2  # swapped in place, not added
    expect(page.get_by_test_id("kiosk-states")).to_be_attached()  # the poller stays for the next 20 s
