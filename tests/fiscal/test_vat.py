"""VAT by taxation system and date (PROTOCOLS.md §1): every line's and modifier's rate of a NEW order must be
valid for the kiosk's taxation system on the day of the sale; a return or an annulment mirrors its sale."""

from __future__ import annotations

import json
import uuid
from datetime import date
from decimal import Decimal

import pytest
from django.test import Client

from core.models import Kiosk, KioskToken
from iiko import emulator as demo
from nekassir.api import orders as api_orders
from nekassir.models import Order, OrderLine, OrderModifier, PickupCounter

URL = "/api/v1/orders"
REAL_QUEUE_CHECKOUT = api_orders._queue_checkout  # before the autouse fixture stands in for it


def line(vat: str | None, price: str = "100.00", *modifiers: dict, product_id: str = demo.PRODUCT_BURGER_ID) -> dict:
    body = {"product_id": product_id, "name": "Бургер «Классический»", "price": price, "quantity": "1",
            "modifiers": list(modifiers)}
    if vat is not None:
        body["vat"] = vat
    return body


def modifier(vat: str | None, price: str = "40.00") -> dict:
    body = {"product_id": demo.MODIFIER_VANILLA_ID, "name": "Сироп ванильный", "price": price, "quantity": "1"}
    if vat is not None:
        body["vat"] = vat
    return body


def order(*lines: dict) -> dict:
    total = sum(Decimal(x["price"]) + sum((Decimal(m["price"]) for m in x["modifiers"]), Decimal(0)) for x in lines)
    return {"id": str(uuid.uuid4()), "lines": list(lines), "total": f"{total:.2f}", "payment": "card",
            "order_type": "takeaway"}


def post(client: Client, token: str, body: dict):
    return client.post(URL, data=json.dumps(body, ensure_ascii=False), content_type="application/json",
                       headers={"Authorization": f"Bearer {token}"})


def saved() -> tuple[int, ...]:
    return (Order.objects.count(), OrderLine.objects.count(), OrderModifier.objects.count(),
            PickupCounter.objects.count())


@pytest.fixture(autouse=True)
def queued(monkeypatch) -> list[str]:
    """The checkout is not this file's business (except the annulment test, which runs it for real)."""
    calls: list[str] = []
    monkeypatch.setattr(api_orders, "_queue_checkout", lambda order_id: calls.append(str(order_id)))
    return calls


def kiosk_token(taxation_type: str) -> str:
    kiosk = Kiosk.objects.create(code=f"T{Kiosk.objects.count()}", name="Киоск", has_register=False,
                                 taxation_type=taxation_type)
    return KioskToken.issue(kiosk)


def assert_refused(answer, field: str, line_index: int) -> dict:
    assert answer.status_code == 422, answer.content
    error = answer.json()["error"]
    assert error["code"] == "vat_not_allowed"
    assert f"позиция {line_index + 1}" in error["message"]
    detail = next(d for d in error["details"] if d["field"] == field)
    assert detail["code"] == "vat_not_allowed" and detail["line"] == line_index
    assert detail["product_id"] == demo.PRODUCT_BURGER_ID and detail["message"]
    return error


# --- refused, nothing saved ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("taxation", "vat"), [
    ("osn", "vat20"),  # 20 % ended on 2025-12-31
    ("osn", "vat120"),
    ("osn", "vat5"),  # 5 % and 7 % belong to the simplified systems only
    ("osn", "vat7"),
    ("osn", "vat110"),  # calculated rates belong to prepayment and advance receipts
    ("osn", "vat122"),
    ("usnIncome", "vat105"),
    ("usnIncomeOutcome", "vat107"),
    ("usnIncome", "vat20"),
    ("patent", "vat5"),
    ("esn", "vat7"),
])
def test_a_rate_the_taxation_system_does_not_allow_is_refused_and_nothing_is_saved(client, taxation, vat, queued):
    token = kiosk_token(taxation)
    answer = post(client, token, order(line("vat10"), line(vat)))
    assert_refused(answer, "lines.1.vat", 1)
    assert saved() == (0, 0, 0, 0) and queued == []


@pytest.mark.django_db
def test_a_modifier_rate_is_checked_too(client):
    token = kiosk_token("osn")
    answer = post(client, token, order(line("vat22", "100.00", modifier(None), modifier("vat20"))))
    error = assert_refused(answer, "lines.0.modifiers.1.vat", 0)
    assert error["details"][0]["modifier"] == 1
    assert saved() == (0, 0, 0, 0)


@pytest.mark.django_db
def test_every_refused_line_is_named(client):
    token = kiosk_token("osn")
    answer = post(client, token, order(line("vat20"), line("vat22"), line("vat122")))
    error = assert_refused(answer, "lines.0.vat", 0)
    assert [d["field"] for d in error["details"]] == ["lines.0.vat", "lines.2.vat"]


@pytest.mark.django_db
def test_a_replay_of_an_accepted_order_is_not_checked_again(client):
    token = kiosk_token("osn")
    body = order(line("vat22"))
    assert post(client, token, body).status_code == 201
    assert post(client, token, body).status_code == 200


# --- allowed -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("taxation", "rates"), [
    ("osn", ["vat22", "vat10", "vat0", "none"]),
    ("usnIncome", ["none", "vat5", "vat7", "vat22", "vat10", "vat0"]),
    ("usnIncomeOutcome", ["none", "vat5", "vat7", "vat22", "vat10", "vat0"]),
    ("patent", ["none", "vat22", "vat10", "vat0"]),
    ("esn", ["none", "vat22", "vat10", "vat0"]),
])
def test_the_rates_a_taxation_system_allows_pass(client, taxation, rates):
    token = kiosk_token(taxation)
    body = order(*(line(rate) for rate in rates[:-1]), line(rates[-1], "50.00", modifier(rates[0])))
    answer = post(client, token, body)
    assert answer.status_code == 201, answer.content
    assert sorted(OrderLine.objects.values_list("vat", flat=True)) == sorted(rates)


def test_the_rule_follows_the_date_of_the_sale():
    from fiscal.vat import refusal

    assert refusal("vat20", "osn", date(2025, 12, 31)) is None
    assert refusal("vat22", "osn", date(2025, 12, 31))  # 22 % began on 2026-01-01
    assert refusal("vat20", "osn", date(2026, 1, 1))
    assert refusal("vat22", "osn", date(2026, 1, 1)) is None
    assert refusal("vat120", "osn", date(2025, 6, 1))  # a calculated rate never fits a full-payment sale


@pytest.mark.django_db
def test_the_openapi_document_shows_the_422_code(client):
    document = client.get("/api/v1/openapi.json").json()
    post_operation = document["paths"]["/api/v1/orders"]["post"]
    assert "vat_not_allowed" in post_operation["description"]
    assert "422" in post_operation["responses"]


def test_the_demo_menu_and_the_test_menu_are_valid_for_the_default_taxation_system():
    from fiscal.vat import refusal

    today = date(2026, 1, 1)
    vats = [p["vat"] for p in demo.DEMO_PRODUCTS] + [m["vat"] for m in demo.DEMO_MODIFIERS]
    assert vats and all(refusal(vat, "osn", today) is None for vat in vats), vats


# --- a return mirrors its sale --------------------------------------------------------------------------------


@pytest.fixture
def venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator, settings, monkeypatch):
    from tests.venue import build_venue

    monkeypatch.setattr(api_orders, "_queue_checkout", REAL_QUEUE_CHECKOUT)  # the checkout runs here (inline q2)
    settings.TERMINAL_HTTP_TIMEOUT = 0.5
    settings.TERMINAL_GUEST_TIMEOUT = 0.5
    return build_venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator)


@pytest.mark.django_db(transaction=True)
def test_an_annulment_of_a_sale_with_an_old_rate_goes_through(venue):
    """An order accepted on 2025-12-31 with 20 % VAT whose card payment fails now: its sellReturn carries the
    sale's vat20, whatever today's rules say."""
    from nekassir.api.idempotency import body_hash
    from nekassir.api.validation import validate_order

    kiosk = venue.kiosks["K1"]
    body = order(line("vat20", "289.00", modifier("vat20")))
    data = validate_order(body, kiosk, on=date(2025, 12, 31))
    venue.kkm.fault("decline")
    placed, created = api_orders.create_order(kiosk, data, body, body_hash(body))
    assert created
    placed.refresh_from_db()
    assert placed.status == Order.Status.CANCELLED
    receipts = [d for d in venue.atol.journal() if d["type"] in ("sell", "sellReturn")]
    assert [d["type"] for d in receipts] == ["sell", "sellReturn"]
    assert [i["tax"]["type"] for i in receipts[1]["items"]] == ["vat20", "vat20"]
