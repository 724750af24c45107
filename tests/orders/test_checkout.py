"""The card checkout end to end: kiosk API → receipt → card → iiko, against every emulator over HTTP."""

from __future__ import annotations

import pytest

from fiscal.models import FiscalDocument
from iiko import emulator as demo
from nekassir.checkout import run_checkout
from nekassir.models import Order
from payments.models import CardOperation
from tests.venue import build_venue, order_body

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator, settings):
    settings.TERMINAL_HTTP_TIMEOUT = 0.5
    settings.TERMINAL_GUEST_TIMEOUT = 0.5
    settings.TERMINAL_POLL_FOR = 0.4
    return build_venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator)


def place(client, venue, kiosk="K1", body=None):
    body = body or order_body((demo.PRODUCT_BURGER_ID, "1"), (demo.PRODUCT_CAPPUCCINO_ID, "2"))
    answer = client.post("/api/v1/orders", body, content_type="application/json",
                         headers={"Authorization": f"Bearer {venue.tokens[kiosk]}"})
    assert answer.status_code == 201, answer.content
    return Order.objects.get(pk=body["id"])


def status_of(client, venue, order, kiosk="K1"):
    answer = client.get(f"/api/v1/orders/{order.pk}", headers={"Authorization": f"Bearer {venue.tokens[kiosk]}"})
    assert answer.status_code == 200
    return answer.json()


def receipts(venue, device="K1"):
    return [d["type"] for d in venue.atol.journal() if d["device"] == device and d["type"] in ("sell", "sellReturn")]


def card_ops(emulator):
    return [(e["operation"], e["state"]) for e in emulator.journal()]


def test_approved_payment_completes_with_one_receipt_one_sale_one_iiko_order(client, venue):
    order = place(client, venue)
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED, order.error_message
    assert receipts(venue) == ["sell"]
    assert card_ops(venue.kkm) == [("sale", "approved")]
    iiko_orders = venue.iiko.journal()
    assert len(iiko_orders) == 1 and iiko_orders[0]["creationStatus"] == "Success"
    assert iiko_orders[0]["externalNumber"] == order.number
    assert not venue.iiko.app.schema_violations
    state = status_of(client, venue, order)
    assert state["status"] == "completed" and state["number"] == order.number
    sell = next(d for d in venue.atol.journal() if d["type"] == "sell")
    assert state["receipt"]["fd"] == sell["fiscalDocumentNumber"]
    assert state["receipt"]["receipt_number"] == sell["fiscalReceiptNumber"]
    assert f"i={sell['fiscalDocumentNumber']}&fp=" in state["receipt"]["qr"] and state["receipt"]["qr"].endswith("n=1")
    assert state["card"]["rrn"] == venue.kkm.journal()[0]["rrn"] and state["card"]["masked_pan"]
    assert state["iiko"]["number"] and state["error"] is None


def test_declined_payment_is_annulled_and_nothing_goes_to_iiko(client, venue):
    venue.kkm.fault("decline")
    order = place(client, venue)
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert receipts(venue) == ["sell", "sellReturn"]
    sell, annul = [d for d in venue.atol.journal() if d["type"] in ("sell", "sellReturn")]
    assert sell["items"] == annul["items"] and sell["total"] == annul["total"]
    assert venue.iiko.journal() == []
    assert status_of(client, venue, order)["error"]["code"] == "card_declined"


@pytest.mark.parametrize(("approved", "final", "documents"), [
    (True, Order.Status.COMPLETED, ["sell"]),
    (False, Order.Status.CANCELLED, ["sell", "sellReturn"]),
])
def test_kkm_lost_answer_is_resolved_by_get_rezult(client, venue, approved, final, documents):
    venue.kkm.fault("lost_response", count=2, approved=approved)  # the sale and its first GetRezult
    order = place(client, venue)
    run_checkout(str(order.pk))  # what recovery does next
    order.refresh_from_db()
    assert order.status == final
    assert receipts(venue) == documents
    assert [op for op in card_ops(venue.kkm) if op[0] == "sale"] == [("sale", "approved" if approved else "declined")]


def test_dualconnector_lost_answer_is_reversed_and_annulled(client, venue):
    venue.dc.fault("lost_response")
    order = place(client, venue, kiosk="K2")
    run_checkout(str(order.pk))
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert card_ops(venue.dc) == [("sale", "approved"), ("reversal", "approved")]
    assert receipts(venue, "K2") == ["sell", "sellReturn"]
    assert CardOperation.objects.get(kind="sale").state == CardOperation.State.REVERSED


def test_register_not_ready_before_the_receipt_fails_without_charging(client, venue):
    venue.atol.fault("paper_out", device="K1")
    place(client, venue)  # the shift opening hits the paper fault first
    order = Order.objects.get()
    assert order.status == Order.Status.FAILED and order.error_code == "register_not_ready"
    assert card_ops(venue.kkm) == [] and venue.iiko.journal() == []
    order.kiosk.refresh_from_db()
    assert not order.kiosk.register_ready


def test_paper_out_after_the_write_completes_and_prints_later(client, venue):
    from fiscal import shifts
    from nekassir.recovery import check_register_ready

    shifts.open_shift(venue.kiosks["K1"])
    venue.atol.fault("paper_out_after_write", device="K1")
    order = place(client, venue)
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED
    document = FiscalDocument.objects.get(doc_type="sell")
    assert not document.printed
    assert check_register_ready(venue.kiosks["K1"].pk) == "still not ready"
    venue.atol.control.post("/_emulator/paper", json={"present": True, "device": "K1"}).raise_for_status()
    assert check_register_ready(venue.kiosks["K1"].pk) == "ready"
    document.refresh_from_db()
    assert document.printed


def test_annulment_waits_for_paper_then_completes(client, venue):
    from fiscal import shifts
    from nekassir.recovery import check_register_ready

    shifts.open_shift(venue.kiosks["K1"])
    venue.kkm.fault("decline")
    venue.atol.fault("paper_out_after_write", device="K1")  # the sell is written, then paper is out
    order = place(client, venue)
    order.refresh_from_db()
    assert order.status == Order.Status.NEEDS_ATTENTION and order.step == Order.Step.ANNUL
    assert receipts(venue) == ["sell"]
    venue.atol.control.post("/_emulator/paper", json={"present": True, "device": "K1"}).raise_for_status()
    check_register_ready(venue.kiosks["K1"].pk)  # wakes the waiting annulment
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert receipts(venue) == ["sell", "sellReturn"]


def test_iiko_creation_timeout_is_retried_with_a_new_id(client, venue):
    venue.iiko.fault("creation_timeout")
    order = place(client, venue)
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED
    attempts = list(order.iiko_attempts.order_by("id"))
    assert [a.state for a in attempts] == ["error", "success"]
    assert attempts[0].iiko_order_id != attempts[1].iiko_order_id
    assert all(a.request and a.responses for a in attempts)
    assert [o["creationStatus"] for o in venue.iiko.journal()] == ["Error", "Success"]


def test_iiko_failing_every_time_ends_not_delivered(client, venue, settings):
    venue.iiko.fault("creation_timeout", count=settings.IIKO_MAX_ATTEMPTS)
    order = place(client, venue)
    order.refresh_from_db()
    assert order.status == Order.Status.NOT_DELIVERED
    assert order.iiko_attempts.count() == settings.IIKO_MAX_ATTEMPTS
    assert len({a.iiko_order_id for a in order.iiko_attempts.all()}) == settings.IIKO_MAX_ATTEMPTS
    assert receipts(venue) == ["sell"]  # paid and fiscalized: never annulled for an iiko problem


def test_long_and_emoji_names_are_fitted_for_the_receipt_and_kept_in_the_order(client, venue):
    body = order_body((demo.PRODUCT_CAESAR_ID, "1"), (demo.PRODUCT_ICE_CREAM_ID, "1"))
    order = place(client, venue, body=body)
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED
    sell = next(d for d in venue.atol.journal() if d["type"] == "sell")
    names = [item["name"] for item in sell["items"]]
    assert all(len(n) <= 128 for n in names) and "🍦" not in "".join(names)
    assert order.lines.get(position=1).name == body["lines"][0]["name"]


def test_a_checkout_run_again_repeats_nothing(client, venue):
    order = place(client, venue)
    run_checkout(str(order.pk))
    run_checkout(str(order.pk))
    assert receipts(venue) == ["sell"]
    assert card_ops(venue.kkm) == [("sale", "approved")]
    assert len(venue.iiko.journal()) == 1


def test_a_kiosk_set_to_pickup_deliveries_sends_deliveries_create_with_the_phone(client, venue):
    from core.models import Kiosk

    Kiosk.objects.filter(code="K1").update(iiko_send_as_delivery=True)
    body = order_body((demo.PRODUCT_BURGER_ID, "1"), phone="+79161234567")
    order = place(client, venue, body=body)
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED, order.error_message
    (created,) = venue.iiko.journal()
    assert created["kind"] == "delivery" and created["phone"] == "+79161234567"
    assert created["orderTypeId"] == demo.ORDER_TYPE_PICKUP_ID
