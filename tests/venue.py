"""A whole demo venue for end-to-end tests: every emulator, kiosks wired to them, kiosk tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from core.models import IikoConnection, Kiosk, issue_token
from iiko import emulator as demo
from nekassir.models import Order
from tests.factories import make_terminal_kiosk


@dataclass
class Venue:
    atol: object
    kkm: object
    dc: object
    iiko: object
    kiosks: dict[str, Kiosk] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


def build_venue(atol, kkm, dc, iiko) -> Venue:
    connection = IikoConnection.objects.create(base_url=iiko.url, api_login=demo.DEMO_API_LOGIN)
    iiko_fields = {
        "iiko": connection,
        "iiko_organization_id": demo.ORG_ID,
        "iiko_terminal_group_id": demo.TERMINAL_GROUP_ID,
        "iiko_payment_type_id": demo.CARD_PAYMENT_TYPE_ID,
        "iiko_order_type_takeaway_id": demo.ORDER_TYPE_TAKEAWAY_ID,
        "iiko_order_type_dine_in_id": demo.ORDER_TYPE_DINE_IN_ID,
        "iiko_order_type_pickup_id": demo.ORDER_TYPE_PICKUP_ID,
    }
    venue = Venue(atol, kkm, dc, iiko)
    venue.kiosks["K1"] = make_terminal_kiosk(atol.url, kkm_url=kkm.url, code="K1", **iiko_fields)
    venue.kiosks["K2"] = make_terminal_kiosk(atol.url, dc_url=dc.url, code="K2", **iiko_fields)
    for code, kiosk in venue.kiosks.items():
        venue.tokens[code] = issue_token(kiosk)
    return venue


# A burger and two cappuccinos: an order with a line that can be partly refunded.
DEFAULT_LINES = ((demo.PRODUCT_BURGER_ID, "1"), (demo.PRODUCT_CAPPUCCINO_ID, "2"))


def place_order(client, venue: Venue, *lines: tuple[str, str], kiosk: str = "K1") -> Order:
    """POST an order (``DEFAULT_LINES`` when none given) through the kiosk API as ``kiosk``; it must be
    accepted (201). Returns the row as stored once the request is answered (with sync q2 the checkout has
    run by then; with queued jobs it waits for its worker)."""
    body = order_body(*(lines or DEFAULT_LINES))
    answer = client.post("/api/v1/orders", body, content_type="application/json",
                         headers={"Authorization": f"Bearer {venue.tokens[kiosk]}"})
    assert answer.status_code == 201, answer.content
    return Order.objects.select_related("kiosk", "card_sale").get(pk=body["id"])


def product(product_id: str) -> dict:
    return next(p for p in demo.DEMO_PRODUCTS if p["id"] == product_id)


def order_body(*lines: tuple[str, str], order_type: str = "takeaway", **extra) -> dict:
    """An API order body from (product id, quantity) pairs at the demo menu's prices."""
    body_lines = []
    total = Decimal("0")
    for product_id, quantity in lines:
        item = product(product_id)
        line = {"product_id": product_id, "name": item["name"], "price": item["price"], "quantity": quantity,
                "vat": item["vat"], "modifiers": []}
        if item["sizes"]:
            line["size_id"] = item["sizes"][1]["id"]
            line["price"] = item["sizes"][1]["price"]
        if item["weighed"]:
            line["unit"] = "kilogram"
        total += (Decimal(line["price"]) * Decimal(quantity)).quantize(Decimal("0.01"))
        body_lines.append(line)
    return {"id": str(uuid.uuid4()), "lines": body_lines, "total": f"{total:.2f}", "payment": "card",
            "order_type": order_type, **extra}
