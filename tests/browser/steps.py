"""Steps the browser tests share: an order placed through the kiosk API, a manager logged in on an order's page."""

from __future__ import annotations

from typing import Any

import httpx

from nekassir.models import Order
from tests.venue import order_body

TIMEOUT = 15_000  # ms: Playwright's wait for any one step


def post_order(live_server, venue, body: dict[str, Any]) -> Order:
    """POST ``body`` as kiosk K1 and return the order, which must have completed."""
    answer = httpx.post(f"{live_server.url}/api/v1/orders", json=body, timeout=30,
                        headers={"Authorization": f"Bearer {venue.tokens['K1']}"})
    assert answer.status_code == 201, answer.text
    order = Order.objects.get(pk=body["id"])
    assert order.status == Order.Status.COMPLETED, order.error_message
    return order


def place_through_api(live_server, venue, *lines) -> Order:
    return post_order(live_server, venue, order_body(*lines))


def log_in_on_order(page, live_server, order: Order, username: str) -> None:
    """Log ``username`` (password ``pass-<username>``, tests.panel_support.make_user) in, landing on the order's
    page; confirmation dialogs are accepted."""
    page.set_default_timeout(TIMEOUT)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{live_server.url}/login/?next=/orders/{order.pk}/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"pass-{username}")
    page.click("button[type=submit]")
