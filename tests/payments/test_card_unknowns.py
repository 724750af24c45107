"""Issue 11 items 1, 2, 9: "not charged" only on positive evidence about that very card operation.

Everything that happens while an unknown operation is resolved (a reversal refused or declined, no bank link,
KKM Server restarted and its results lost, the terminal busy with a sale whose worker died) leaves it unknown:
the order waits as needs_attention, the kiosk takes no new order (503 ``card_unavailable``), and recovery tries
again until the terminal says what happened. End to end, against the emulators over real HTTP.
"""

from __future__ import annotations

import time

import pytest

from nekassir.checkout import run_checkout
from nekassir.models import Order
from nekassir.recovery import recover, resolve_terminal
from payments.models import CardOperation
from payments.terminal import TerminalUnresolved, terminal_session
from tests.venue import DEFAULT_LINES, build_venue, order_body, place_order

pytestmark = pytest.mark.django_db(transaction=True)
State = CardOperation.State


@pytest.fixture
def venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator, settings):
    settings.TERMINAL_HTTP_TIMEOUT = 0.4
    settings.TERMINAL_GUEST_TIMEOUT = 0.4
    settings.TERMINAL_POLL_FOR = 0.3
    return build_venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator)


def card_ops(emulator) -> list[tuple[str, str]]:
    return [(e["operation"], e["state"]) for e in emulator.journal()]


def receipts(venue, device: str) -> list[str]:
    return [d["type"] for d in venue.atol.journal() if d["device"] == device and d["type"] in ("sell", "sellReturn")]


def post(client, venue, kiosk: str):
    return client.post("/api/v1/orders", order_body(*DEFAULT_LINES), content_type="application/json",
                       headers={"Authorization": f"Bearer {venue.tokens[kiosk]}"})


def assert_blocked(client, venue, order: Order, kiosk: str) -> None:
    """The order waits for a person, the terminal takes nothing new, the kiosk's next order is refused."""
    order.refresh_from_db()
    assert order.status == Order.Status.NEEDS_ATTENTION and order.step == Order.Step.CARD, (order.status, order.step)
    assert order.card_sale.state == State.UNKNOWN and order.card_sale.next_resolve_at is not None
    journal = (venue.kkm if kiosk == "K1" else venue.dc).journal()
    with pytest.raises(TerminalUnresolved), terminal_session(order.kiosk):
        pass  # not before its next attempt (backoff): the terminal is not even asked
    assert (venue.kkm if kiosk == "K1" else venue.dc).journal() == journal
    orders = Order.objects.count()
    answer = post(client, venue, kiosk)
    assert answer.status_code == 503, answer.content
    assert answer.json()["error"]["code"] == "card_unavailable" and answer.json()["error"]["message"]
    assert Order.objects.count() == orders  # nothing saved
    replay = client.post("/api/v1/orders", order.request_body, content_type="application/json",
                         headers={"Authorization": f"Bearer {venue.tokens[kiosk]}"})
    assert replay.status_code == 200 and replay.json()["status"] == "needs_attention"  # its own order, as it is


def time_has_come(op: CardOperation) -> None:
    """The backoff of an unknown operation is over (what the passing of time does, without waiting for it)."""
    CardOperation.objects.filter(pk=op.pk).update(next_resolve_at=None)


def wait_for_journal(emulator, operation: str, seconds: float = 15.0) -> None:
    """Wait (bounded) until the emulated terminal has finished an operation still running on it."""
    deadline = time.monotonic() + seconds
    while not any(e["operation"] == operation for e in emulator.journal()):
        assert time.monotonic() < deadline, f"the terminal never finished its {operation}"
        time.sleep(0.05)


# --- item 1: the DualConnector case of the issue, and its KKM Server twin ---------------------------------------
@pytest.mark.parametrize("refusal", ["no_connection", "reversal_refused"])
def test_dualconnector_lost_sale_with_a_refused_reversal_waits_then_is_reversed(client, venue, refusal):
    """Issue 11: on K2 the sale's answer is lost, the emergency reversal is refused for want of a bank link;
    the order used to end cancelled, its receipt annulled, while the terminal kept the sale approved."""
    venue.dc.fault("lost_response")  # the sale is approved, its answer never arrives
    venue.dc.fault(refusal)  # the emergency reversal is refused (status 34 / 16)
    order = place_order(client, venue, kiosk="K2")
    assert card_ops(venue.dc) == [("sale", "approved"), ("reversal", "failed")]
    assert_blocked(client, venue, order, "K2")
    assert receipts(venue, "K2") == ["sell"]  # not annulled while the money may be taken

    time_has_come(order.card_sale)
    assert resolve_terminal(order.kiosk.pk) == "resolved"  # the terminal answers again
    run_checkout(str(order.pk))
    order.refresh_from_db()
    assert order.card_sale.state == State.REVERSED
    assert order.status == Order.Status.CANCELLED  # annulled with the money given back
    assert card_ops(venue.dc) == [("sale", "approved"), ("reversal", "failed"), ("reversal", "approved")]
    assert receipts(venue, "K2") == ["sell", "sellReturn"]
    assert post(client, venue, "K2").status_code == 201  # the kiosk takes orders again


def test_kkm_lost_sale_with_a_refused_reversal_completes_once_get_rezult_answers(client, venue):
    venue.kkm.fault("timeout", count=3)  # the sale, the client's GetRezult and the resolution's GetRezult hang
    venue.kkm.fault("no_connection")  # the emergency reversal: no bank link (Status 2)
    order = place_order(client, venue, kiosk="K1")
    assert card_ops(venue.kkm) == [("sale", "approved"), ("reversal", "failed")]
    assert_blocked(client, venue, order, "K1")

    time_has_come(order.card_sale)
    assert resolve_terminal(order.kiosk.pk) == "resolved"  # GetRezult answers: the sale was approved
    run_checkout(str(order.pk))
    order.refresh_from_db()
    assert order.card_sale.state == State.APPROVED and "GetRezult" in order.card_sale.resolution
    assert order.status == Order.Status.COMPLETED
    assert receipts(venue, "K1") == ["sell"] and len(venue.iiko.journal()) == 1


def test_recovery_retries_an_unresolved_operation_with_backoff(client, venue):
    venue.dc.fault("lost_response")
    venue.dc.fault("no_connection", count=2)  # the reversal in the checkout, and recovery's first try
    order = place_order(client, venue, kiosk="K2")
    sale = order.card_sale
    sale.refresh_from_db()
    assert sale.state == State.UNKNOWN and sale.resolve_attempts == 1 and sale.next_resolve_at is not None

    CardOperation.objects.filter(pk=sale.pk).update(next_resolve_at=None)  # its time has come
    assert recover()["terminals"] == 1  # tried again: refused again
    sale.refresh_from_db()
    assert sale.state == State.UNKNOWN and sale.resolve_attempts == 2
    assert recover()["terminals"] == 0  # not before its next try
    CardOperation.objects.filter(pk=sale.pk).update(next_resolve_at=None)
    assert recover()["terminals"] == 1
    sale.refresh_from_db()
    assert sale.state == State.REVERSED


# --- item 2: KKM Server restarted, its results lost ----------------------------------------------------------
def restart_kkm(venue, keep_results: bool = False) -> None:
    venue.kkm.control.post("/_emulator/restart", json={"keep_results": keep_results}).raise_for_status()


def test_get_rezult_not_found_after_a_restart_is_unknown_not_declined(client, venue):
    venue.kkm.fault("timeout", count=2)  # the sale is approved, its answer and the first GetRezult hang
    with terminal_session(venue.kiosks["K1"]) as session:
        sale = session.sale(18900, "K1-001", reference="order:test")
    assert sale.state == State.UNKNOWN
    restart_kkm(venue)  # KKM Server forgets every IdCommand; the terminal keeps its sale
    venue.kkm.fault("no_connection")  # and the reversal finds no bank link
    with pytest.raises(TerminalUnresolved), terminal_session(venue.kiosks["K1"]):
        pass
    sale.refresh_from_db()
    assert sale.state == State.UNKNOWN  # "not found" of a command we sent proves nothing
    time_has_come(sale)
    with terminal_session(venue.kiosks["K1"]):
        pass
    sale.refresh_from_db()
    assert sale.state == State.REVERSED
    assert card_ops(venue.kkm) == [("sale", "approved"), ("reversal", "failed"), ("reversal", "approved")]


def test_an_unnamed_reversal_never_risks_the_previous_guests_payment(client, venue):
    """Soak finding: KKM Server restarted with our sale sent but not yet on the terminal; GetRezult "not found"
    left it unknown, and the emergency reversal (KKM Server's names no operation) cancelled the terminal's last
    transaction: the previous guest's completed payment. While an earlier approved payment of ours may still
    be the terminal's last transaction, an unnamed reversal is not sent: the operation waits for a manager."""
    first = place_order(client, venue)
    assert first.status == Order.Status.COMPLETED
    with terminal_session(venue.kiosks["K1"]) as session:
        lost = session.create(CardOperation.Kind.SALE, 18900, reference="order:test")
    CardOperation.objects.filter(pk=lost.pk).update(state=State.SENT, sent_at=first.card_sale.finished_at)
    restart_kkm(venue)
    with pytest.raises(TerminalUnresolved, match="предыдущ"), terminal_session(venue.kiosks["K1"]):
        pass
    lost.refresh_from_db()
    assert lost.state == State.UNKNOWN
    assert card_ops(venue.kkm) == [("sale", "approved")]  # the previous guest's payment untouched
    first.card_sale.refresh_from_db()
    assert first.card_sale.state == State.APPROVED


def test_get_rezult_not_found_for_a_command_never_sent_is_declined(venue):
    with terminal_session(venue.kiosks["K1"]) as session:
        op = session.create(CardOperation.Kind.SALE, 18900)
    CardOperation.objects.filter(pk=op.pk).update(state=State.SENT)  # an old row: no sent_at
    with terminal_session(venue.kiosks["K1"]):
        pass
    op.refresh_from_db()
    assert op.state == State.DECLINED and card_ops(venue.kkm) == []


# --- item 9: a terminal busy with a sale whose worker gave up ------------------------------------------------
@pytest.mark.parametrize("kiosk", ["K1", "K2"])
def test_a_busy_terminal_finishes_the_earlier_sale_first_and_queues_no_other(client, venue, kiosk):
    emulator = venue.kkm if kiosk == "K1" else venue.dc
    emulator.fault("busy", seconds=4)  # the guest stays at the PIN pad 4 s: our client gives up first
    if kiosk == "K1":
        venue.kkm.fault("timeout", count=2)  # GetRezult does not answer twice: the reversal is tried
    order = place_order(client, venue, kiosk=kiosk)
    assert_blocked(client, venue, order, kiosk)
    wait_for_journal(emulator, "sale")  # the guest has finished
    assert [op for op in card_ops(emulator) if op[0] == "sale"] == [("sale", "approved")]

    time_has_come(order.card_sale)
    assert resolve_terminal(order.kiosk.pk) == "resolved"
    run_checkout(str(order.pk))
    order.refresh_from_db()
    sales = [op for op in card_ops(emulator) if op[0] == "sale"]
    assert sales == [("sale", "approved")]  # no second sale was ever queued behind it
    if kiosk == "K1":
        assert order.status == Order.Status.COMPLETED and order.card_sale.state == State.APPROVED
    else:
        assert order.status == Order.Status.CANCELLED and order.card_sale.state == State.REVERSED
        assert card_ops(emulator)[-1] == ("reversal", "approved")


def test_a_sale_refused_as_busy_is_not_annulled_and_is_sent_again_once_the_terminal_is_free(client, venue):
    """A sale the terminal refused unstarted because it was busy (here with a payment outside our journal)
    charged nothing and proves nothing about the order: it waits, then pays; no annulment, nothing queued."""
    from payments.dualconnector_client import DualConnectorClient

    venue.dc.fault("busy", seconds=3)
    outside = DualConnectorClient(venue.dc.url, timeout=0.2, guest_timeout=0.2).sale("outside-1", 100, "X")
    assert outside.unknown  # its guest is still at the PIN pad
    order = place_order(client, venue, kiosk="K2")
    order.refresh_from_db()
    assert order.step == Order.Step.CARD and order.status == Order.Status.AWAITING_CARD
    assert order.card_sale.state == State.DECLINED and order.card_sale.reason == "busy"
    assert receipts(venue, "K2") == ["sell"]

    wait_for_journal(venue.dc, "sale")  # the terminal is free again
    run_checkout(str(order.pk))
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED and order.card_sale.state == State.APPROVED
    sales = [(e["operation"], e["amount"]) for e in venue.dc.journal()]
    assert sales == [("sale", "1.00"), ("sale", f"{order.total:.2f}")]  # the outside one, then ours, once
    assert receipts(venue, "K2") == ["sell"]
