"""Refunds of marked goods by the unit (issue 13): the manager's chosen codes go back in the sellReturn with
``itemPieceReturn``, each unit at most once, the return's validation recorded and never blocking; a returned
code may be sold again. Real HTTP against the ATOL, KKM, iiko and check-service emulators."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest

from iiko import emulator as demo
from marking.emulator import DEMO_TOKEN
from marking.models import MarkedProduct
from nekassir.models import Order, OrderMark, Refund
from nekassir.refunds import RefundError, refundable, refundable_marks, request_refund
from tests.threads import run_in_threads
from tests.venue import build_venue, order_body

pytestmark = pytest.mark.django_db(transaction=True)

WATER_GTIN = "04607012345608"


@pytest.fixture
def venue(settings, atol_emulator, kkm_emulator, dc_emulator, iiko_emulator, marking_emulator):
    settings.MARKING_CHECK_URL = marking_emulator.url
    settings.MARKING_CHECK_TOKEN = DEMO_TOKEN
    MarkedProduct.objects.create(product_id=demo.PRODUCT_WATER_ID, name="Вода", group="water", gtins=[WATER_GTIN])
    return build_venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator)


def sell_water(client, venue, codes: list[str], *more: tuple[str, str]) -> Order:
    body = order_body((demo.PRODUCT_WATER_ID, str(len(codes))), *more)
    body["lines"][0]["marking_codes"] = codes
    answer = client.post("/api/v1/orders", body, content_type="application/json",
                         headers={"Authorization": f"Bearer {venue.tokens['K1']}"})
    assert answer.status_code == 201, answer.content
    order = Order.objects.get(pk=body["id"])
    assert order.status == Order.Status.COMPLETED, (order.status, order.error_code, order.error_message)
    return order


@pytest.fixture
def codes(marking_operator) -> list[str]:
    return marking_operator.mint(WATER_GTIN, "valid", 2)


def water(order: Order):
    return order.lines.get(product_id=demo.PRODUCT_WATER_ID)


def returns(venue) -> list[dict]:
    return [d for d in venue.atol.journal() if d["type"] == "sellReturn"]


def decoded(item: dict) -> str:
    return base64.b64decode(item["imcParams"]["imc"]).decode("utf-8")


def test_refunding_one_bottle_returns_that_code_with_item_piece_return(client, venue, codes, marking_operator):
    order = sell_water(client, venue, codes)
    line = water(order)
    first, second = line.marks.order_by("unit")
    refund = request_refund(order, {line.pk: "1"}, to_card=True, cancel_in_iiko=False,
                            marks={line.pk: [first.pk]})
    refund.refresh_from_db()
    assert refund.state == Refund.State.DONE, refund.message
    assert refund.amount == Decimal("90.00")
    [receipt] = returns(venue)
    [item] = receipt["items"]
    assert item["quantity"] == 1 and item["amount"] == 90
    assert decoded(item) == codes[0]  # the exact bytes, GS included
    assert item["imcParams"]["itemEstimatedStatus"] == "itemPieceReturn"
    assert set(item["imcParams"]["itemInfoCheckResult"]) >= {"imcCheckFlag", "imcCheckResult"}
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, first.refund_id) == (OrderMark.State.RETURNED, refund.pk)
    assert first.return_result["accepted"] is True and first.return_result["code"] == codes[0]
    assert (second.state, second.refund_id) == (OrderMark.State.SOLD, None)
    assert marking_operator.code_status(codes[0]) == "valid" and marking_operator.code_status(codes[1]) == "sold"
    # the returned code may be sold again, in another order; the one still sold may not
    again = sell_water(client, venue, [codes[0]])
    assert again.marks.get().state == OrderMark.State.SOLD
    body = order_body((demo.PRODUCT_WATER_ID, "1"))
    body["lines"][0]["marking_codes"] = [codes[1]]
    refused = client.post("/api/v1/orders", body, content_type="application/json",
                          headers={"Authorization": f"Bearer {venue.tokens['K1']}"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "marking_code_in_use"


def test_a_marked_line_without_a_choice_gives_back_its_last_units(client, venue, codes):
    order = sell_water(client, venue, codes)
    line = water(order)
    refund = request_refund(order, {line.pk: "1"}, to_card=True, cancel_in_iiko=False)
    refund.refresh_from_db()
    assert refund.state == Refund.State.DONE
    assert [decoded(i) for i in returns(venue)[0]["items"]] == [codes[1]]
    assert list(refund.marks.values_list("unit", flat=True)) == [2]


def test_a_unit_cannot_be_refunded_twice(client, venue, codes):
    order = sell_water(client, venue, codes)
    line = water(order)
    first = line.marks.get(unit=1)
    request_refund(order, {line.pk: "1"}, to_card=True, cancel_in_iiko=False, marks={line.pk: [first.pk]})
    with pytest.raises(RefundError) as taken:
        request_refund(order, {line.pk: "1"}, to_card=True, cancel_in_iiko=False, marks={line.pk: [first.pk]})
    assert taken.value.code == "mark_taken" and "Вода" in str(taken.value)
    with pytest.raises(RefundError) as mismatch:  # two codes ticked for one bottle
        request_refund(order, {line.pk: "1"}, to_card=True, cancel_in_iiko=False,
                       marks={line.pk: [first.pk, line.marks.get(unit=2).pk]})
    assert mismatch.value.code == "marks_mismatch" and "Позиция 1" in str(mismatch.value)
    assert Refund.objects.filter(order=order).count() == 1  # the refused ones left nothing behind
    assert list(refundable_marks(order)[line.pk]) == [line.marks.get(unit=2)]


def test_two_refunds_at_once_never_take_the_same_unit(client, venue, codes):
    order = sell_water(client, venue, codes)
    line = water(order)
    unit = line.marks.get(unit=2).pk

    def attempt():
        try:
            return request_refund(Order.objects.get(pk=order.pk), {line.pk: "1"}, to_card=True,
                                  cancel_in_iiko=False, marks={line.pk: [unit]})
        except RefundError as exc:
            return exc.code

    outcomes, errors = run_in_threads(attempt, [(), ()])
    assert not errors
    assert sorted(isinstance(o, Refund) for o in outcomes) == [False, True]
    assert OrderMark.objects.filter(refund__isnull=False).count() == 1
    assert refundable(order)[line.pk] == 1


def test_a_refused_return_validation_is_recorded_and_the_refund_goes_on(client, venue, codes, marking_operator):
    order = sell_water(client, venue, codes)
    line = water(order)
    venue.atol.fault("code_blocked")  # the operator refuses the return's validation of the next code
    refund = request_refund(order, {line.pk: "2"}, to_card=True, cancel_in_iiko=False)
    refund.refresh_from_db()
    assert refund.state == Refund.State.DONE, refund.message
    results = [m.return_result for m in refund.marks.order_by("unit")]
    assert results[0]["accepted"] is False and results[0]["operator_status"] == "itemSaleStopped"
    assert results[1]["accepted"] is True
    assert sorted(decoded(i) for i in returns(venue)[0]["items"]) == sorted(codes)
    assert set(refund.marks.values_list("state", flat=True)) == {OrderMark.State.RETURNED}
    assert all(marking_operator.code_status(c) == "valid" for c in codes)
