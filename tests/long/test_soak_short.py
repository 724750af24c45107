"""The fault-injection soak in CI (issue 6), and the product bugs it found, each reduced to a small test.

``test_the_short_soak_passes`` runs ``scripts/soak.py --short`` (100 orders on 5 kiosks, 3 SIGKILLs of the
device cluster, faults from every emulator, shift closes and refunds interleaved, then every invariant
checked) as a subprocess: it has its own data folder and its own database. It runs once per ``make test``:
in the PostgreSQL pass (on a throwaway PostgreSQL database), or in the SQLite pass (on a SQLite file)
when no PostgreSQL answers.

The other tests reproduce, deterministically and in seconds, what the soak caught (each was a strict
xfail until the product was fixed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from django.db import connection
from django_q.conf import Conf

from core.locks import DeviceBusy, device_lock
from fiscal.register import register_session
from iiko import emulator as demo
from nekassir.checkout import run_checkout
from nekassir.models import Order
from payments.models import CardOperation
from tests.passes import PG_TEST_URL, once_in_postgres_pass
from tests.processes import ROOT
from tests.venue import build_venue, place_order

SHORT_SOAK_SECONDS = 300


@pytest.mark.slow
def test_the_short_soak_passes():
    once_in_postgres_pass("the short soak")
    if connection.vendor == "postgresql":
        database = ["--db", "pg", "--pg-url", os.environ.get("DATABASE_URL") or PG_TEST_URL]
    else:
        database = ["--db", "sqlite"]
    env = {k: v for k, v in os.environ.items()
           if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "NEKASSIR_DATA_DIR", "NEKASSIR_USE_TEST_DB",
                        "NEKASSIR_Q_SYNC"}}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "scripts.soak", "--short", *database], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=SHORT_SOAK_SECONDS + 120,
    )
    seconds = time.monotonic() - started
    report = result.stdout[result.stdout.rfind("=" * 100) - 300:] if "=" * 100 in result.stdout else result.stdout
    print(report[-12000:])
    assert result.returncode == 0, f"short soak failed (exit {result.returncode}):\n{report[-12000:]}\n" \
                                   f"{result.stderr[-4000:]}"
    assert seconds < SHORT_SOAK_SECONDS, f"the short soak took {seconds:.0f} s (budget {SHORT_SOAK_SECONDS} s)"


# --- what the soak found, reduced -------------------------------------------------------------------------
@pytest.fixture
def venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator):
    return build_venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator)


def _paid_order(client, venue, kiosk: str = "K1", *lines) -> Order:
    order = place_order(client, venue, *lines, kiosk=kiosk)
    assert order.status == Order.Status.COMPLETED, (order.status, order.error_message)
    return order


def _queued_order(client, venue, monkeypatch) -> Order:
    """After a first paid order (the shift is open), one the API accepted whose checkout job is queued and
    not run: the test plays the worker (or its death) itself."""
    _paid_order(client, venue)
    monkeypatch.setattr(Conf, "SYNC", False)
    return place_order(client, venue, (demo.PRODUCT_BURGER_ID, "1"))


def _paper(venue, present: bool, device: str = "K1") -> None:
    venue.atol.control.post("/_emulator/paper", json={"present": present, "device": device}).raise_for_status()


@pytest.mark.django_db(transaction=True)
def test_a_refund_job_delivered_twice_gives_the_money_back_once(client, venue, monkeypatch):
    """Soak: K2-012 and K3-025 got two sellReturns for one refund. ``resume_refunds`` queues a refund again
    every minute while it waits (for the terminal, the register, paper), with no claim; two such jobs wait
    on the terminal lock with ``refund.card_operation`` read as None before it, and each then makes its own
    card return (and its own sellReturn)."""
    from nekassir.refunds import refundable, request_refund, run_refund
    from payments.terminal import terminal_lock_key

    order = _paid_order(client, venue)
    coffee = next(line for line in order.lines.all() if line.quantity == 2)
    monkeypatch.setattr(Conf, "SYNC", False)  # the refund is queued, and its job delivered twice below
    refund = request_refund(order, {coffee.pk: "1"}, to_card=True, cancel_in_iiko=False)
    errors: list[BaseException] = []

    def job():
        try:
            run_refund(refund.pk)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            from django.db import connections

            connections.close_all()

    with device_lock(terminal_lock_key(order.kiosk), purpose="a guest at the PIN pad"):
        threads = [threading.Thread(target=job) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # both jobs have read the refund and wait for the terminal
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    cancels = [e for e in venue.kkm.journal() if e["operation"] in ("cancel", "refund") and e["state"] == "approved"]
    returns = [d for d in venue.atol.journal() if d["type"] == "sellReturn"]
    assert len(cancels) == 1, cancels
    assert len(returns) == 1, returns
    assert refundable(order)[coffee.pk] == 1


@pytest.mark.django_db(transaction=True)
def test_resolving_an_unsent_payment_never_reverses_an_earlier_paid_order(client, venue):
    """Soak: K5-055 completed and delivered, but its payment was reversed on the DualConnector terminal.
    A later sale (K5-057) was saved as ``sent`` and its worker was killed before the request reached the
    terminal. DualConnector has no status query, so the unknown sale is resolved by an emergency reversal of
    "the terminal's last operation, which is ours" — but the terminal's last operation was K5-055's sale."""
    from payments.terminal import new_op_id, terminal_session

    first = _paid_order(client, venue, "K2", (demo.PRODUCT_BURGER_ID, "1"))
    kiosk = first.kiosk
    # What a kill -9 leaves between "state = sent" and the HTTP request: a sale the terminal never saw.
    CardOperation.objects.create(op_id=new_op_id(), kiosk=kiosk, kind="sale", state="sent",
                                 transport=kiosk.terminal_transport, amount_kopecks=50000, reference="order:killed")
    with terminal_session(kiosk, purpose="recovery"):
        pass
    reversed_rrns = {e["rrn"] for e in venue.dc.journal() if e["operation"] == "reversal" and e["state"] == "approved"}
    first.card_sale.refresh_from_db()
    ours = first.card_sale.state
    assert first.card_sale.rrn not in reversed_rrns or ours != "approved", (
        f"the terminal reversed {first.number}'s payment (RRN {first.card_sale.rrn}); we still say {ours}")
    assert first.card_sale.rrn not in reversed_rrns, f"{first.number}'s payment was reversed by another's recovery"


@pytest.mark.django_db(transaction=True)
def test_a_reversal_that_cancelled_another_payment_is_recorded_as_such(client, venue, monkeypatch):
    """A terminal (or driver) that ignores what the reversal names cancels its last operation anyway: the
    answer's RRN shows whose money went back, and both journal rows say what really happened."""
    from core.models import Event
    from payments.dualconnector_client import DualConnectorClient
    from payments.terminal import new_op_id, terminal_session

    naming = DualConnectorClient.emergency_reversal
    monkeypatch.setattr(DualConnectorClient, "emergency_reversal",
                        lambda self, op_id, original=None, lost=None: naming(self, op_id, original))
    first = _paid_order(client, venue, "K2", (demo.PRODUCT_BURGER_ID, "1"))
    killed = CardOperation.objects.create(op_id=new_op_id(), kiosk=first.kiosk, kind="sale", state="sent",
                                          transport=first.kiosk.terminal_transport, amount_kopecks=50000,
                                          reference="order:killed")
    with terminal_session(first.kiosk, purpose="recovery"):
        pass
    first.card_sale.refresh_from_db()
    killed.refresh_from_db()
    assert first.card_sale.state == CardOperation.State.REVERSED and "деньги вернулись" in first.card_sale.resolution
    assert killed.state == CardOperation.State.DECLINED
    assert Event.objects.filter(action="terminal.reversal.other", object_ref=first.card_sale.reference).exists()


@pytest.mark.django_db(transaction=True)
def test_a_shift_never_closes_between_a_refunds_card_return_and_its_receipt(client, venue):
    """Soak: K4 shift 1 closed with a 189.00 card cancel whose sellReturn was printed in shift 2 (the paper
    had run out): both shifts fail reconciliation (documents ≠ card operations)."""
    from fiscal.models import Shift
    from nekassir.panel.reconciliation import reconcile_shift
    from nekassir.refunds import request_refund
    from nekassir.shift_closing import close_shift

    order = _paid_order(client, venue)
    coffee = next(line for line in order.lines.all() if line.quantity == 2)
    _paper(venue, False)
    refund = request_refund(order, {coffee.pk: "1"}, to_card=True, cancel_in_iiko=False)  # runs inline (sync)
    refund.refresh_from_db()
    assert refund.card_operation.state == "approved" and refund.state == "needs_attention"
    _paper(venue, True)
    shift = Shift.objects.get(kiosk=order.kiosk, state="open")
    try:
        close_shift(order.kiosk, wait=1)
    except DeviceBusy:
        pytest.fail("a close may wait for the pending return receipt, but it must happen in this shift")
    shift.refresh_from_db()
    assert reconcile_shift(shift).gaps == []


@pytest.mark.django_db(transaction=True)
def test_a_manual_close_never_splits_an_order_between_two_shifts(client, venue, monkeypatch):
    """Soak: K2/K3/K4/K5 shifts closed with sell receipts whose card sale came after the close (in the next
    shift, or in none: "approved sale 570.00 belongs to no shift"). An order that defers after its receipt
    (terminal busy or unresolved, worker killed) releases the kiosk's sale lock, so ``close_shift`` — which
    only waits for that lock — closes the shift under it. DESIGN: a manual close waits for, or refuses
    during, a payment in progress."""
    from core.locks import sale_lock_key
    from fiscal.models import Shift
    from nekassir.checkout import _advance
    from nekassir.panel.reconciliation import reconcile_shift
    from nekassir.shift_closing import close_shift

    order = _queued_order(client, venue, monkeypatch)
    with device_lock(sale_lock_key(order.kiosk)):
        _advance(order, {Order.Step.SELL})  # the receipt is printed; then the job dies / defers
    assert Order.objects.get(pk=order.pk).step == Order.Step.CARD
    shift = Shift.objects.get(kiosk=order.kiosk, state="open")
    try:
        close_shift(order.kiosk, wait=0.5)
        closed = True
    except DeviceBusy:
        closed = False  # refusing is fine: the payment is in progress
    monkeypatch.setattr(Conf, "SYNC", True)
    assert run_checkout(str(order.pk)) == Order.Status.COMPLETED
    if closed:
        shift.refresh_from_db()
        assert reconcile_shift(shift).gaps == []


@pytest.mark.django_db(transaction=True)
def test_a_receipt_saved_but_never_linked_to_its_order_is_not_printed_later(client, venue, monkeypatch):
    """A kill between ``session.create(sell)`` and ``_set(order, sell_operation=op)`` leaves a pending sell
    task that belongs to no order; the next session on that register resumes it (404 -> POST the same
    uuid) and prints a receipt nobody paid for and nobody annuls, and the order prints its own."""
    from nekassir.receipts import sell_task

    order = _queued_order(client, venue, monkeypatch)
    with register_session(order.kiosk) as session:
        session.create(sell_task(order), reference=f"order:{order.pk}:sell")  # ... and the process dies here
    monkeypatch.setattr(Conf, "SYNC", True)
    assert run_checkout(str(order.pk)) == Order.Status.COMPLETED
    sells = [d for d in venue.atol.journal() if d["type"] == "sell" and d["total"] == float(order.total)]
    assert len(sells) == 1, f"{len(sells)} sell receipts for one paid order"



@pytest.mark.django_db(transaction=True)
def test_a_card_operation_keeps_when_it_was_sent(client, venue):
    """Found while checking that two clusters never overlap on a terminal: ``perform`` writes ``sent_at``
    with an UPDATE, then ``record`` saves the whole row as it was read before, so ``sent_at`` is always
    empty again (the panel's job progress and any audit of "when was the terminal asked" lose it)."""
    order = _paid_order(client, venue)
    order.card_sale.refresh_from_db()
    assert order.card_sale.sent_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_forced_close_finishes_an_order_whose_receipt_it_resumes(client, venue, monkeypatch):
    """Soak: K5-015's worker was killed with its sell task sent; the automatic close (forced, the sale lock
    free) resumed that task in its register session — the receipt printed in shift 1 — and closed the
    shift; the card sale then came with no shift open ("approved sale 687.00 belongs to no shift")."""
    from fiscal.models import FiscalOperation, Shift
    from nekassir.panel.reconciliation import reconcile_shift
    from nekassir.receipts import sell_task
    from nekassir.shift_closing import close_shift

    order = _queued_order(client, venue, monkeypatch)
    with register_session(order.kiosk) as session:
        op = session.create(sell_task(order), reference=f"order:{order.pk}:sell")
    # Linked and marked sent, then the worker is killed before the register's answer.
    FiscalOperation.objects.filter(pk=op.pk).update(state=FiscalOperation.State.SENT)
    Order.objects.filter(pk=order.pk).update(sell_operation=op)
    shift = Shift.objects.get(kiosk=order.kiosk, state="open")
    monkeypatch.setattr(Conf, "SYNC", True)
    close_shift(order.kiosk, reason="automatic", force=True, wait=0.5)
    order.refresh_from_db()
    shift.refresh_from_db()
    assert shift.state == Shift.State.CLOSED
    assert order.status == Order.Status.COMPLETED and order.card_sale.shift_id == shift.pk
    assert reconcile_shift(shift).gaps == []


@pytest.mark.django_db(transaction=True)
def test_a_close_finished_after_a_kill_marks_the_shift_closed(client, venue):
    """Soak: K2's closeShift was sent and its worker killed; a later session finished it on the register,
    but our Shift row stayed open beside the next shift ("still open: K2 1") and was never reconciled."""
    from fiscal.models import FiscalOperation, Shift
    from fiscal.shifts import status

    order = _paid_order(client, venue)
    shift = Shift.objects.get(kiosk=order.kiosk, state="open")
    with register_session(order.kiosk) as session:
        op = session.create({"type": "closeShift"}, reference="shift:close")
    FiscalOperation.objects.filter(pk=op.pk).update(state=FiscalOperation.State.SENT)  # ... killed here
    assert status(order.kiosk).state == "closed"  # this session resumes the close first
    shift.refresh_from_db()
    assert shift.state == Shift.State.CLOSED and shift.closed_at is not None
    assert _paid_order(client, venue).card_sale.shift.number == shift.number + 1
    assert list(Shift.objects.filter(kiosk=order.kiosk, state="open").values_list("number", flat=True)) == [
        shift.number + 1]


@pytest.mark.django_db(transaction=True)
def test_a_refund_after_the_close_returns_the_money_in_the_shift_of_its_receipt(client, venue):
    """Soak: K1 refund:5 — the shift was closed, the card return was made with no shift open and its
    sellReturn (which opens the next shift) landed in shift 2: "approved refund belongs to no shift"."""
    from fiscal.models import Shift
    from nekassir.panel.reconciliation import reconcile_shift
    from nekassir.refunds import request_refund
    from nekassir.shift_closing import close_shift

    order = _paid_order(client, venue)
    close_shift(order.kiosk)
    coffee = next(line for line in order.lines.all() if line.quantity == 2)
    refund = request_refund(order, {coffee.pk: "1"}, to_card=True, cancel_in_iiko=False)
    refund.refresh_from_db()
    assert refund.state == "done"
    shift = Shift.objects.get(kiosk=order.kiosk, state="open")
    assert refund.card_operation.shift_id == shift.pk and refund.return_operation.shift_number == shift.number
    close_shift(order.kiosk)
    shift.refresh_from_db()
    assert reconcile_shift(shift).gaps == []


@pytest.mark.django_db(transaction=True)
def test_a_card_return_whose_receipt_waits_past_an_expired_shift_is_reconciled_with_the_receipt(client, venue):
    """Soak: K3/K4 — a card return in shift 2, its sellReturn failed (paper), then shift 2 expired (24 h
    on the register clock) and was closed as expired: the receipt could only go into shift 3, and both
    shifts failed reconciliation (documents ≠ card operations) by the refund's amount."""
    from fiscal.models import Shift
    from nekassir.panel.reconciliation import reconcile_shift
    from nekassir.refunds import request_refund, run_refund

    order = _paid_order(client, venue)
    first = Shift.objects.get(kiosk=order.kiosk, state="open")
    coffee = next(line for line in order.lines.all() if line.quantity == 2)
    _paper(venue, False)
    refund = request_refund(order, {coffee.pk: "1"}, to_card=True, cancel_in_iiko=False)
    refund.refresh_from_db()
    assert refund.card_operation.state == "approved" and refund.state == "needs_attention"
    venue.atol.control.post("/_emulator/clock", json={"advance_seconds": 25 * 3600}).raise_for_status()
    _paper(venue, True)
    _paid_order(client, venue)  # its receipt closes the expired shift and opens the next one
    assert run_refund(refund.pk) == "done"
    refund.refresh_from_db()
    first.refresh_from_db()
    second = Shift.objects.get(kiosk=order.kiosk, state="open")
    assert first.state == Shift.State.CLOSED and refund.card_operation.shift_id == second.pk
    assert reconcile_shift(first).gaps == []
    from nekassir.shift_closing import close_shift

    close_shift(order.kiosk)
    second.refresh_from_db()
    assert reconcile_shift(second).gaps == []


@pytest.mark.django_db(transaction=True)
def test_an_annulment_pushed_into_the_next_shift_is_explained_not_a_gap(client, venue, monkeypatch):
    """Soak: K2-145 — receipt in shift 5, card declined, shift 5 expired before the annulment (the register
    refuses receipts in an expired shift), so the annulment went into shift 6: each shift held a document
    without money. The reconciliation (panel and alerts) pairs them instead of calling both a gap."""
    from django.contrib.auth.models import User

    from core.locks import sale_lock_key
    from fiscal.models import Shift
    from nekassir.alerts import find_problems
    from nekassir.checkout import _advance
    from nekassir.panel.reconciliation import reconcile_shift
    from nekassir.shift_closing import close_shift

    order = _queued_order(client, venue, monkeypatch)
    with device_lock(sale_lock_key(order.kiosk)):
        _advance(order, {Order.Step.SELL})
    first = Shift.objects.get(kiosk=order.kiosk, state="open")
    venue.kkm.fault("decline")
    venue.atol.control.post("/_emulator/clock", json={"advance_seconds": 25 * 3600}).raise_for_status()
    monkeypatch.setattr(Conf, "SYNC", True)
    assert run_checkout(str(order.pk)) == Order.Status.CANCELLED
    first.refresh_from_db()
    second = Shift.objects.get(kiosk=order.kiosk, state="open")
    close_shift(order.kiosk)
    second.refresh_from_db()
    for shift, sign in ((first, 1), (second, -1)):
        rec = reconcile_shift(shift)
        assert shift.state == Shift.State.CLOSED and rec.gaps == [], rec.gaps
        assert rec.split == [(order.number, sign * order.total)]
    kinds = [p.kind for p in find_problems()]
    assert "shift_unreconciled" not in kinds, kinds
    client.force_login(User.objects.create_superuser("manager", password="x"))
    page = client.get(f"/shifts/{first.pk}/")
    assert page.status_code == 200 and 'data-testid="split-annulments"' in page.content.decode()
    assert order.number in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_close_done_but_not_recorded_is_taken_from_the_journal(client, venue):
    """Soak (seed 777): K5's closeShift succeeded and its worker was killed before marking the shift closed;
    when the next shift opened, shift 4 was closed "outside our journal" without the register's counters,
    so it could never be reconciled. The journal has the closeShift and the counters read just before it."""
    from fiscal.models import Shift
    from nekassir.panel.reconciliation import reconcile_shift

    order = _paid_order(client, venue)
    shift = Shift.objects.get(kiosk=order.kiosk, state="open")
    with register_session(order.kiosk) as session:  # what ``_close`` does, up to the kill
        session.run({"type": "getShiftTotals"})
        session.run({"type": "closeShift"}, reference="shift:close")
    _paid_order(client, venue)  # its receipt opens the next shift
    shift.refresh_from_db()
    assert shift.state == Shift.State.CLOSED and shift.closed_at is not None
    assert reconcile_shift(shift).gaps == []
