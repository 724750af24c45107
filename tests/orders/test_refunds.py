"""Refunds: card cancel/refund, the sellReturn of exactly those lines, iiko cancel; never above paid."""

from __future__ import annotations

from decimal import Decimal

import pytest

from iiko import emulator as demo
from nekassir import shift_closing
from nekassir.models import Order, Refund
from nekassir.refunds import RefundError, refundable, request_refund, run_refund
from payments.models import CardOperation
from payments.settlement import settle
from tests.threads import run_in_threads
from tests.venue import build_venue, order_body

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator):
    return build_venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator)


@pytest.fixture
def order(client, venue):
    body = order_body((demo.PRODUCT_BURGER_ID, "1"), (demo.PRODUCT_CAPPUCCINO_ID, "2"))
    answer = client.post("/api/v1/orders", body, content_type="application/json",
                         headers={"Authorization": f"Bearer {venue.tokens['K1']}"})
    assert answer.status_code == 201
    paid = Order.objects.get(pk=body["id"])
    assert paid.status == Order.Status.COMPLETED
    return paid


def lines(order):
    return {line.product_id.hex: line for line in order.lines.all()}


def returns(venue):
    return [d for d in venue.atol.journal() if d["type"] == "sellReturn"]


def test_full_refund_before_settlement_cancels_and_returns_every_line(venue, order):
    everything = refundable(order)
    refund = request_refund(order, everything, to_card=True, cancel_in_iiko=True)
    refund.refresh_from_db()
    assert refund.state == Refund.State.DONE
    assert refund.amount_kopecks == order.card_sale.amount_kopecks
    assert refund.card_operation.kind == CardOperation.Kind.CANCEL
    sell = next(d for d in venue.atol.journal() if d["type"] == "sell")
    assert returns(venue)[0]["items"] == sell["items"]
    assert refund.iiko_state == "отменён"
    assert [o["status"] for o in venue.iiko.journal()] == ["Cancelled"]
    assert all(q == 0 for q in refundable(order).values())


def test_partial_refunds_add_up_to_what_was_paid_and_no_further(venue, order):
    coffee = lines(order)[demo.PRODUCT_CAPPUCCINO_ID.replace("-", "")]
    first = request_refund(order, {coffee.pk: "1"}, to_card=True, cancel_in_iiko=False)
    first.refresh_from_db()
    assert first.state == Refund.State.DONE and first.amount == Decimal("189.00")
    assert [(i["quantity"], i["amount"]) for i in returns(venue)[0]["items"]] == [(1, 189)]
    rest = request_refund(order, refundable(order), to_card=True, cancel_in_iiko=False)
    rest.refresh_from_db()
    assert first.amount_kopecks + rest.amount_kopecks == order.card_sale.amount_kopecks
    with pytest.raises(RefundError) as info:
        request_refund(order, {coffee.pk: "1"}, to_card=True, cancel_in_iiko=False)
    assert info.value.code == "above_paid"


def test_refund_after_settlement_is_a_refund_not_a_cancel(venue, order):
    assert settle(order.kiosk).state == "ok"
    refund = request_refund(order, refundable(order), to_card=True, cancel_in_iiko=False)
    refund.refresh_from_db()
    assert refund.state == Refund.State.DONE
    assert refund.card_operation.kind == CardOperation.Kind.REFUND
    assert [e["operation"] for e in venue.kkm.journal()][-1] == "refund"


def test_a_declined_refund_prints_no_return_receipt(venue, order):
    venue.kkm.fault("decline", count=2)
    refund = request_refund(order, refundable(order), to_card=True, cancel_in_iiko=False)
    refund.refresh_from_db()
    assert refund.state == Refund.State.FAILED and "отказал" in refund.message
    assert returns(venue) == []
    assert sum(refundable(order).values()) > 0  # a failed refund gives the quantities back


def test_two_managers_at_once_refund_once(venue, order):
    everything = refundable(order)

    def attempt():
        return request_refund(Order.objects.get(pk=order.pk), everything, to_card=True, cancel_in_iiko=False)

    done, errors = run_in_threads(attempt, [(), (), ()])
    assert len(done) == 1 and len(errors) == 2
    assert all(isinstance(e, RefundError) for e in errors)
    assert Refund.objects.count() == 1
    assert [e["operation"] for e in venue.kkm.journal()].count("cancel") == 1


def test_the_return_receipt_waits_for_paper(venue, order):
    from nekassir.recovery import check_register_ready

    venue.atol.control.post("/_emulator/paper", json={"present": False, "device": "K1"}).raise_for_status()
    refund = request_refund(order, refundable(order), to_card=True, cancel_in_iiko=False)
    refund.refresh_from_db()
    assert refund.state == Refund.State.NEEDS_ATTENTION
    assert refund.card_operation.state == CardOperation.State.APPROVED and returns(venue) == []
    venue.atol.control.post("/_emulator/paper", json={"present": True, "device": "K1"}).raise_for_status()
    check_register_ready(order.kiosk.pk)
    run_refund(refund.pk)
    refund.refresh_from_db()
    assert refund.state == Refund.State.DONE and len(returns(venue)) == 1
    assert [e["operation"] for e in venue.kkm.journal()].count("cancel") == 1  # the money went back once


def test_cancel_in_iiko_only_moves_no_money(venue, order):
    refund = request_refund(order, {}, to_card=False, cancel_in_iiko=True)
    refund.refresh_from_db()
    assert refund.state == Refund.State.DONE and refund.amount_kopecks == 0
    assert [e["operation"] for e in venue.kkm.journal()] == ["sale"]
    assert returns(venue) == []


@pytest.mark.parametrize("quantities", [{"999999": "1"}, {"LINE": "-1"}, {"LINE": "0.0001"}, {"LINE": "3"}])
def test_bad_quantities_are_refused(venue, order, quantities):
    line = order.lines.first()
    quantities = {(line.pk if k == "LINE" else k): v for k, v in quantities.items()}
    with pytest.raises(RefundError):
        request_refund(order, quantities, to_card=True, cancel_in_iiko=False)
    assert Refund.objects.count() == 0


def test_an_unpaid_order_cannot_be_refunded(client, venue):
    venue.kkm.fault("decline")
    body = order_body((demo.PRODUCT_BURGER_ID, "1"))
    client.post("/api/v1/orders", body, content_type="application/json",
                headers={"Authorization": f"Bearer {venue.tokens['K1']}"})
    cancelled = Order.objects.get(pk=body["id"])
    with pytest.raises(RefundError) as info:
        request_refund(cancelled, refundable(cancelled), to_card=True, cancel_in_iiko=False)
    assert info.value.code == "not_paid"
    shift_closing.close_shift(cancelled.kiosk)
