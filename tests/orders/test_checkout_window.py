"""The guest's window (issue 11.3): a card payment is asked for only while the guest can still be at the kiosk.

An order that reaches the card step later than ``CHECKOUT_GUEST_WINDOW`` after its POST (register blocked,
worker killed, queue backlog, a close carrying it on) is never charged: its receipt is annulled and it ends
``cancelled`` / ``guest_timeout``. A sale whose unknown outcome turns out approved only after the window
waits for a manager (``paid_after_guest_left``) instead of going to the kitchen by itself.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone
from django_q.conf import Conf

from fiscal.models import FiscalOperation
from fiscal.register import register_session
from iiko import emulator as demo
from nekassir.checkout import _advance, run_checkout
from nekassir.models import Order
from nekassir.receipts import sell_task
from nekassir.shift_closing import close_shift
from payments.acquiring import rubles_to_kopecks
from payments.models import CardOperation
from payments.terminal import make_acquirer, terminal_session
from tests.venue import build_venue, place_order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator, settings):
    settings.CHECKOUT_GUEST_WINDOW = 180.0
    return build_venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator)


def _queued_order(client, venue, monkeypatch, kiosk: str = "K1") -> Order:
    """After a first paid order (the shift is open), one the API accepted whose checkout job is queued and
    not run: the test plays the worker itself."""
    first = place_order(client, venue, kiosk=kiosk)
    assert first.status == Order.Status.COMPLETED, first.error_message
    monkeypatch.setattr(Conf, "SYNC", False)
    order = place_order(client, venue, (demo.PRODUCT_BURGER_ID, "1"), kiosk=kiosk)
    monkeypatch.setattr(Conf, "SYNC", True)
    return order


def _age(order: Order, seconds: float) -> None:
    """The order was POSTed ``seconds`` ago (what a long queue or a blocked register does to it)."""
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(seconds=seconds))
    order.refresh_from_db()


def _documents(venue, device: str = "K1") -> list[str]:
    return [d["type"] for d in venue.atol.journal() if d["device"] == device and d["type"] in ("sell", "sellReturn")]


def _sales(emulator) -> list[str]:
    return [e["state"] for e in emulator.journal() if e["operation"] == "sale"]


def test_an_order_whose_checkout_starts_after_the_window_prints_nothing_and_charges_nothing(
        client, venue, monkeypatch):
    order = _queued_order(client, venue, monkeypatch)
    _age(order, 181)
    assert run_checkout(str(order.pk)) == Order.Status.CANCELLED
    order.refresh_from_db()
    assert order.error_code == "guest_timeout" and "не списаны" in order.error_message
    assert order.sell_operation_id is None and order.card_sale_id is None
    assert _documents(venue) == ["sell"]  # the first order's only
    assert _sales(venue.kkm) == ["approved"]  # the first order's only


def test_an_order_reaching_the_card_step_after_the_window_is_annulled_not_charged(client, venue, monkeypatch):
    order = _queued_order(client, venue, monkeypatch)
    _advance(order, {Order.Step.SELL})  # the receipt is printed, then the worker dies
    order.refresh_from_db()
    assert order.step == Order.Step.CARD
    _age(order, 200)
    assert run_checkout(str(order.pk)) == Order.Status.CANCELLED
    order.refresh_from_db()
    assert order.error_code == "guest_timeout" and order.card_sale_id is None
    assert _documents(venue) == ["sell", "sell", "sellReturn"]
    assert _sales(venue.kkm) == ["approved"]
    answer = client.get(f"/api/v1/orders/{order.pk}", headers={"Authorization": f"Bearer {venue.tokens['K1']}"})
    assert answer.json()["error"]["code"] == "guest_timeout"


def test_the_automatic_close_never_charges_an_order_past_its_window(client, venue, monkeypatch):
    """The night close carries on orders between receipt and payment (``finish_between_receipt_and_payment``):
    one whose guest left long ago is annulled, not charged."""
    order = _queued_order(client, venue, monkeypatch)
    with register_session(order.kiosk) as session:
        op = session.create(sell_task(order), reference=f"order:{order.pk}:sell")
    FiscalOperation.objects.filter(pk=op.pk).update(state=FiscalOperation.State.SENT)  # killed before the answer
    Order.objects.filter(pk=order.pk).update(sell_operation=op)
    _age(order, 3600)
    close_shift(order.kiosk, reason="automatic", force=True, wait=0.5)
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED and order.error_code == "guest_timeout"
    assert _sales(venue.kkm) == ["approved"]
    assert order.annul_operation.state == FiscalOperation.State.DONE


def test_a_sale_confirmed_only_after_the_window_waits_for_a_manager_then_goes_to_iiko(client, venue, monkeypatch):
    order = _queued_order(client, venue, monkeypatch)
    _advance(order, {Order.Step.SELL})
    order.refresh_from_db()
    # The sale was sent and approved at the PIN pad, but its worker died before it heard the answer.
    with terminal_session(order.kiosk) as session:
        sale = session.create(CardOperation.Kind.SALE, rubles_to_kopecks(order.total),
                              reference=f"order:{order.pk}", shift=order.shift)
    Order.objects.filter(pk=order.pk).update(card_sale=sale)
    CardOperation.objects.filter(pk=sale.pk).update(state=CardOperation.State.SENT, sent_at=timezone.now())
    assert make_acquirer(order.kiosk).sale(sale.op_id, sale.amount_kopecks, order.number).approved
    _age(order, 600)  # the terminal's answer is learnt only much later
    run_checkout(str(order.pk))
    order.refresh_from_db()
    assert order.card_sale.state == CardOperation.State.APPROVED
    assert order.status == Order.Status.NEEDS_ATTENTION and order.error_code == "paid_after_guest_left"
    assert len(venue.iiko.journal()) == 1  # the first order's only: nobody may be there to take the food
    assert _documents(venue) == ["sell", "sell"]  # the receipt stays: the money was taken

    manager = User.objects.create_user("manager", password="x")
    manager.user_permissions.add(*Permission.objects.filter(codename__in=["change_order", "view_order"]))
    client.force_login(manager)
    page = client.get(f"/orders/{order.pk}/")
    assert 'data-testid="resend"' in page.content.decode()  # the manager is offered the resend
    client.post(f"/orders/{order.pk}/resend/")
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED
    assert len(venue.iiko.journal()) == 2
