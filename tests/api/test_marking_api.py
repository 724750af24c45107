"""Marked goods in the kiosk API (issue 13): ``marking_codes`` per line, every 422 refusal with its code naming
the line and the code (nothing saved), the units saved with the order at step MARKS, our own registry of codes
in use (a race of two kiosks: one 201, one 422), and the OpenAPI document."""

from __future__ import annotations

import json
import threading
import uuid
from decimal import Decimal

import pytest
from django.test import Client
from django_q.conf import Conf

from core.gs1 import GS, make_code
from core.models import Kiosk, KioskToken
from iiko import emulator as demo
from marking.models import MarkedProduct
from nekassir.api.errors import ApiError
from nekassir.api.idempotency import body_hash
from nekassir.api.orders import create_order
from nekassir.api.validation import validate_order
from nekassir.models import Order, OrderLine, OrderMark
from tests.threads import run_in_threads

URL = "/api/v1/orders"
GTIN = "04600000000013"
OTHER_GTIN = "04600000000020"
MARKING_CODES = {"marking_codes_missing", "marking_codes_mismatch", "marking_code_invalid", "marking_gtin_mismatch",
                 "marking_code_duplicate", "marking_code_in_use", "marking_codes_unexpected"}


def code(serial: str, gtin: str = GTIN) -> str:
    return make_code(gtin, serial, "ab" + GS + "cd")


def water(codes: list[str] | None, quantity: str | None = None, **line) -> dict:
    item = {"product_id": demo.PRODUCT_WATER_ID, "name": "Вода питьевая 0,5 л", "price": "90.00",
            "quantity": quantity or str(len(codes or []) or 1), "vat": "vat22", **line}
    if codes is not None:
        item["marking_codes"] = codes
    return item


def burger(**line) -> dict:
    return {"product_id": demo.PRODUCT_BURGER_ID, "name": "Бургер", "price": "289.00", "quantity": "1",
            "vat": "vat22", **line}


def body(*lines: dict) -> dict:
    total = sum((Decimal(line["price"]) * Decimal(line["quantity"])).quantize(Decimal("0.01")) for line in lines)
    return {"id": str(uuid.uuid4()), "lines": list(lines), "total": f"{total:.2f}", "payment": "card",
            "order_type": "takeaway"}


@pytest.fixture(autouse=True)
def not_run(monkeypatch):
    """Checkout jobs go to the broker and nobody runs them: the orders stay as the API saved them."""
    monkeypatch.setattr(Conf, "SYNC", False)


@pytest.fixture
def kiosk(db) -> Kiosk:
    MarkedProduct.objects.create(product_id=demo.PRODUCT_WATER_ID, name="Вода", group="water", gtins=[GTIN])
    return Kiosk.objects.create(code="K1", name="Киоск K1", has_register=False)


@pytest.fixture
def api(kiosk) -> Client:
    return Client(headers={"Authorization": f"Bearer {KioskToken.issue(kiosk)}"})


def post(client: Client, data: dict):
    return client.post(URL, data=json.dumps(data), content_type="application/json")


def refused(response, code: str) -> dict:
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["message"].startswith("Коды маркировки не прошли проверку: позиция")
    assert error["details"][0]["code"] == code
    return error


# --- accepted ------------------------------------------------------------------------------------------------


def test_an_order_with_marked_lines_is_saved_at_the_marks_step_with_a_unit_per_code(api):
    codes = [code("aaa111"), code("bbb222")]
    data = body(burger(), water(codes))
    answer = post(api, data)
    assert answer.status_code == 201, answer.content
    assert answer.json()["status"] == "received"
    order = Order.objects.get(pk=data["id"])
    assert order.step == Order.Step.MARKS and order.marking_mode == ""
    marks = list(OrderMark.objects.filter(order=order).order_by("unit"))
    assert [(m.line.position, m.unit, m.code, m.gtin, m.state) for m in marks] == [
        (2, 1, codes[0], GTIN, "reserved"), (2, 2, codes[1], GTIN, "reserved"),
    ]
    assert GS in marks[0].code  # kept exactly as scanned
    assert post(api, data).status_code == 200  # a replay is the same order, no second set of units
    assert OrderMark.objects.count() == 2


def test_an_order_without_marked_goods_still_starts_at_the_receipt(api):
    data = body(burger())
    assert post(api, data).status_code == 201
    assert Order.objects.get(pk=data["id"]).step == Order.Step.SELL
    assert OrderMark.objects.count() == 0


# --- refused, nothing saved ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lines", "code_", "field", "marking_code"), [
    ([water(None)], "marking_codes_missing", "lines.0.marking_codes", None),
    ([water([])], "marking_codes_missing", "lines.0.marking_codes", None),
    ([water([code("a1")], quantity="2")], "marking_codes_mismatch", "lines.0.marking_codes", None),
    ([water([code("a1")], quantity="1.5")], "marking_codes_mismatch", "lines.0.marking_codes", None),
    ([water([code("a1")], unit="liter")], "marking_codes_mismatch", "lines.0.marking_codes", None),
    ([burger(), water([code("a1"), "not a code"])], "marking_code_invalid", "lines.1.marking_codes.1", "not a code"),
    ([water([code("a1", OTHER_GTIN)])], "marking_gtin_mismatch", "lines.0.marking_codes.0", code("a1", OTHER_GTIN)),
    ([water([code("a1"), code("a1")])], "marking_code_duplicate", "lines.0.marking_codes.1", code("a1")),
    ([water([code("a1")]), water([code("a1")])], "marking_code_duplicate", "lines.1.marking_codes.0", code("a1")),
    ([burger(marking_codes=[code("a1")])], "marking_codes_unexpected", "lines.0.marking_codes", None),
])
def test_each_refusal_names_the_line_and_the_code_and_saves_nothing(api, lines, code_, field, marking_code):
    error = refused(post(api, body(*lines)), code_)
    detail = error["details"][0]
    assert detail["field"] == field
    assert detail["line"] == int(field.split(".")[1])
    assert detail["product_id"] == lines[detail["line"]]["product_id"]
    assert detail.get("marking_code") == marking_code
    assert detail["message"].startswith(f"позиция {detail['line'] + 1}")
    assert Order.objects.count() == 0 and OrderLine.objects.count() == 0 and OrderMark.objects.count() == 0


def test_a_code_too_long_or_too_many_codes_is_a_field_error(api):
    too_long = "01" + GTIN + "21" + "x" * 300
    response = post(api, body(water([too_long])))
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["details"][0]["field"] == "lines.0.marking_codes.0"


def test_a_code_in_another_order_in_progress_or_sold_is_in_use_until_released(api):
    codes = [code("aaa111"), code("bbb222")]
    assert post(api, body(water(codes[:1]))).status_code == 201
    error = refused(post(api, body(water([codes[1], codes[0]]))), "marking_code_in_use")
    assert [(d["field"], d["marking_code"]) for d in error["details"]] == [("lines.0.marking_codes.1", codes[0])]
    OrderMark.objects.filter(code=codes[0]).update(state=OrderMark.State.SOLD)
    refused(post(api, body(water(codes[:1]))), "marking_code_in_use")
    OrderMark.objects.filter(code=codes[0]).update(state=OrderMark.State.RETURNED)  # a refund took it back
    assert post(api, body(water(codes[:1]))).status_code == 201
    OrderMark.objects.filter(code=codes[0], state="reserved").update(state=OrderMark.State.RELEASED)
    assert post(api, body(water(codes[:1]))).status_code == 201
    assert OrderMark.objects.filter(code=codes[0]).count() == 3


def test_the_first_detail_gives_the_error_code_and_every_refused_code_is_listed(api):
    error = refused(post(api, body(water(["bad", code("a1", OTHER_GTIN)]), burger(marking_codes=[code("b")]))),
                    "marking_code_invalid")
    assert [d["code"] for d in error["details"]] == [
        "marking_code_invalid", "marking_gtin_mismatch", "marking_codes_unexpected",
    ]


# --- the race: two kiosks, one code ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_code_taken_after_the_check_is_refused_by_the_constraint_not_replayed(kiosk, api):
    the_code = code("race01")
    second = body(water([the_code]))
    data = validate_order(second, kiosk)  # checked while the code is free...
    assert post(api, body(water([the_code]))).status_code == 201  # ...then another order takes it
    with pytest.raises(ApiError) as caught:
        create_order(kiosk, data, second, body_hash(second))
    assert caught.value.status == 422 and caught.value.code == "marking_code_in_use"
    assert caught.value.details[0]["marking_code"] == the_code
    assert not Order.objects.filter(pk=second["id"]).exists()
    assert OrderMark.objects.filter(code=the_code).count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_two_orders_posted_at_once_with_one_code_make_one_order(kiosk, attempt):
    token = KioskToken.issue(kiosk)
    the_code = code(f"race{attempt}")
    start = threading.Barrier(2)

    def send():
        start.wait()
        response = post(Client(headers={"Authorization": f"Bearer {token}"}), body(water([the_code])))
        return response.status_code, response.json()

    results, errors = run_in_threads(send, [()] * 2)
    assert errors == []
    assert sorted(status for status, _ in results) == [201, 422]
    refusal = next(answer for status, answer in results if status == 422)
    assert refusal["error"]["code"] == "marking_code_in_use"
    assert Order.objects.count() == 1 and OrderMark.objects.filter(code=the_code).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_many_kiosks_posting_one_code_at_once_make_one_order_on_postgresql(kiosk):
    tokens = [KioskToken.issue(kiosk)] + [
        KioskToken.issue(Kiosk.objects.create(code=f"K{n}", name=f"Киоск K{n}", has_register=False))
        for n in range(2, 7)
    ]
    the_code = code("racepg")
    start = threading.Barrier(len(tokens))

    def send(token):
        start.wait()
        return post(Client(headers={"Authorization": f"Bearer {token}"}), body(water([the_code]))).status_code

    results, errors = run_in_threads(send, [(token,) for token in tokens])
    assert errors == []
    assert sorted(results) == [201] + [422] * (len(tokens) - 1)
    assert OrderMark.objects.filter(code=the_code).count() == 1


# --- the OpenAPI document ------------------------------------------------------------------------------------


def test_the_openapi_document_shows_the_field_and_the_codes(client):
    document = client.get("/api/v1/openapi.json").json()
    schemas = document["components"]["schemas"]
    field = schemas["LineIn"]["properties"]["marking_codes"]
    assert "marking_codes" not in schemas["LineIn"]["required"]
    assert "GS (\\u001d)" in field["description"]  # the separator as the kiosk sends it in JSON
    assert {"type": "array", "items": {"type": "string", "maxLength": 255}, "maxItems": 999} in field["anyOf"]
    for code_ in MARKING_CODES:
        assert code_ in field["description"], code_
        assert code_ in document["paths"][URL]["post"]["description"], code_
    assert "marking_code" in schemas["ErrorDetailOut"]["properties"]
    assert schemas["OrderStatusOut"]["properties"]["status"] == {"$ref": "#/components/schemas/Status"}
    assert "checking_marks" in schemas["Status"]["enum"]
