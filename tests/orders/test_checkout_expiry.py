"""A shift that expires under a sell (issue 11.4) and a receipt written but not printed (issue 11.5).

Error 68 ("смена превысила 24 часа") comes when the register's clock passes ``expiredTime`` between our shift
check and the sell. The register made nothing, so the checkout settles the terminal, closes the shift, opens
a new one and prints the same order's receipt again under a new uuid: never a failed order for it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from django_q.conf import Conf

from core.models import Event
from fiscal import shifts
from fiscal.models import FiscalDocument, FiscalOperation, Shift
from iiko import emulator as demo
from nekassir import checkout
from nekassir.checkout import _advance
from nekassir.models import Order
from nekassir.recovery import check_register_ready
from tests.venue import build_venue, place_order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator):
    return build_venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator)


def _fiscal_kinds(venue, device: str = "K1") -> list[str]:
    return [d["type"] for d in venue.atol.journal() if d["device"] == device]


def test_a_shift_expiring_under_the_sell_is_closed_reopened_and_the_receipt_printed_again(client, venue):
    first = place_order(client, venue)
    assert first.status == Order.Status.COMPLETED
    venue.atol.fault("shift_expires_before_next_sell", device="K1")
    order = place_order(client, venue, (demo.PRODUCT_BURGER_ID, "1"))
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED, (order.status, order.error_code, order.error_message)
    # settle → close → open → the same order's receipt, in the new shift
    assert _fiscal_kinds(venue) == ["openShift", "sell", "closeShift", "openShift", "sell"]
    operations = [e["operation"] for e in venue.kkm.journal()]
    assert operations == ["sale", "settlement", "sale"]
    refused = FiscalOperation.objects.get(reference=f"order:{order.pk}:sell", state=FiscalOperation.State.FAILED)
    assert refused.error_kind == "shift_expired" and refused.uuid != order.sell_operation.uuid
    assert order.shift.number == first.shift.number + 1
    assert Shift.objects.get(pk=first.shift_id).state == Shift.State.CLOSED
    assert order.card_sale.shift_id == order.shift_id


def test_the_window_wins_over_a_reopened_shift(client, venue, monkeypatch):
    """A shift reopened under the sell does not restart the guest's window: if it has passed meanwhile,
    the receipt is not printed again (the first was proven not made) and nothing is charged."""
    place_order(client, venue)
    venue.atol.fault("shift_expires_before_next_sell", device="K1")
    real_open, real_now = shifts._open, timezone.now

    class AnHourLater:  # what the checkout's clock reads once the settlement, close and reopen are done
        @staticmethod
        def now():
            return real_now() + timedelta(hours=1)

    def slow_open(session, **kwargs):
        shift = real_open(session, **kwargs)
        monkeypatch.setattr(checkout, "timezone", AnHourLater)
        return shift

    monkeypatch.setattr(shifts, "_open", slow_open)
    order = place_order(client, venue, (demo.PRODUCT_BURGER_ID, "1"))
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED and order.error_code == "guest_timeout"
    assert _fiscal_kinds(venue) == ["openShift", "sell", "closeShift", "openShift"]
    assert [e["operation"] for e in venue.kkm.journal()] == ["sale", "settlement"]


def test_a_receipt_written_but_not_printed_still_takes_the_card_and_the_kiosk_can_show_it(
        client, venue, monkeypatch):
    place_order(client, venue)
    monkeypatch.setattr(Conf, "SYNC", False)
    order = place_order(client, venue, (demo.PRODUCT_BURGER_ID, "1"))
    monkeypatch.setattr(Conf, "SYNC", True)
    venue.atol.fault("paper_out_after_write", device="K1")
    _advance(order, {Order.Step.SELL})
    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_CARD  # the receipt exists in the FN: the card step runs
    state = client.get(f"/api/v1/orders/{order.pk}",
                       headers={"Authorization": f"Bearer {venue.tokens['K1']}"}).json()
    assert state["receipt_not_printed"] is True
    assert state["receipt"]["fd"] and state["receipt"]["qr"].startswith("t=")
    _advance(order, {Order.Step.CARD, Order.Step.ANNUL})
    order.refresh_from_db()
    assert order.step == Order.Step.IIKO and order.card_sale.state == "approved"

    # The panel marks it; once the paper is back, continuePrint prints it and the journal says so.
    user = User.objects.create_superuser("boss", password="x")
    client.force_login(user)
    assert "не напечатан" in client.get(f"/orders/{order.pk}/").content.decode()
    venue.atol.control.post("/_emulator/paper", json={"present": True, "device": "K1"}).raise_for_status()
    assert check_register_ready(order.kiosk.pk) == "ready"
    assert FiscalDocument.objects.get(pk=order.sell_operation.document.pk).printed
    assert Event.objects.filter(action="fiscal.continue_print").exists()
    assert FiscalOperation.objects.filter(task_type="continuePrint", state=FiscalOperation.State.DONE).exists()
    state = client.get(f"/api/v1/orders/{order.pk}",
                       headers={"Authorization": f"Bearer {venue.tokens['K1']}"}).json()
    assert state["receipt_not_printed"] is False
