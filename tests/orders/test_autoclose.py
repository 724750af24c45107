"""The automatic shift close: before the register's expiredTime (its own clock), settlement first,
never held open by a stuck order; a manual close never interrupts a payment."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from django.db import connections
from django.utils import timezone

from core.locks import DeviceBusy, device_lock, sale_lock_key
from fiscal import shifts
from fiscal.models import FiscalDocument, Shift
from nekassir import autoclose, shift_closing
from payments.models import CardOperation, Settlement
from payments.settlement import settle_before_close
from payments.terminal import terminal_session
from tests.venue import build_venue

pytestmark = pytest.mark.django_db(transaction=True)
DAY = 24 * 3600


@pytest.fixture
def venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator):
    return build_venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator)


def advance_register_clock(venue, seconds):
    venue.atol.control.post("/_emulator/clock", json={"advance_seconds": seconds}).raise_for_status()


class HeldSale:
    """An order in progress on the kiosk: another thread holds its sale lock until released."""

    def __init__(self, kiosk):
        self.kiosk, self.held, self.release = kiosk, threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _hold(self):
        try:
            with device_lock(sale_lock_key(self.kiosk), purpose="заказ K1-001"):
                self.held.set()
                self.release.wait(20)
        finally:
            connections.close_all()

    def __enter__(self):
        self.thread.start()
        assert self.held.wait(5)
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join()


def test_the_shift_closes_itself_before_expired_time_by_the_register_clock(venue, settings):
    kiosk = venue.kiosks["K1"]
    shift = shifts.open_shift(kiosk)
    assert autoclose.scan() == []  # a fresh shift is not due
    advance_register_clock(venue, DAY - settings.SHIFT_CLOSE_MARGIN + 30)
    assert autoclose.scan() == [shift.pk]  # the close job ran inline (q2 sync in tests)
    shift.refresh_from_db()
    assert not shift.is_open and shift.close_requested_at is None
    settlement = shift.settlements.get()
    closing = FiscalDocument.objects.get(shift=shift, doc_type="closeShift")
    assert settlement.state == Settlement.State.OK
    assert settlement.operation.finished_at <= closing.operation.sent_at
    assert autoclose.scan() == []


def test_a_stuck_order_cannot_hold_the_shift_open(venue, settings):
    kiosk = venue.kiosks["K1"]
    shift = shifts.open_shift(kiosk)
    advance_register_clock(venue, DAY - settings.SHIFT_CLOSE_MARGIN + 30)
    with HeldSale(kiosk):
        autoclose.scan()
    shift.refresh_from_db()
    assert not shift.is_open


def test_an_unresolved_card_operation_skips_the_settlement_not_the_close(venue, settings):
    settings.TERMINAL_HTTP_TIMEOUT = settings.TERMINAL_GUEST_TIMEOUT = 0.3
    settings.TERMINAL_POLL_FOR = 0.2
    kiosk = venue.kiosks["K1"]
    shift = shifts.open_shift(kiosk)
    venue.kkm.fault("timeout", count=100)  # the terminal stops answering mid-payment
    with terminal_session(kiosk) as session:
        assert session.sale(10000, "K1-001").state == CardOperation.State.UNKNOWN
    advance_register_clock(venue, DAY - settings.SHIFT_CLOSE_MARGIN + 30)
    autoclose.scan()
    shift.refresh_from_db()
    assert not shift.is_open
    settlement = shift.settlements.get()
    assert settlement.state == Settlement.State.SKIPPED and "неразрешённая" in settlement.message
    assert "settlement" not in [e["operation"] for e in venue.kkm.journal()]


def test_a_manual_close_refuses_during_a_payment(venue):
    kiosk = venue.kiosks["K1"]
    shifts.open_shift(kiosk)
    with HeldSale(kiosk), pytest.raises(DeviceBusy):
        shift_closing.close_shift(kiosk)
    assert Shift.objects.get().is_open
    assert shift_closing.close_shift(kiosk).state == Shift.State.CLOSED  # once the payment is over


def test_an_expired_shift_met_at_sale_time_is_closed_first(venue):
    kiosk = venue.kiosks["K1"]
    first = shifts.open_shift(kiosk)
    advance_register_clock(venue, DAY + 60)
    second = shifts.ensure_shift_open(kiosk, before_close=settle_before_close)
    first.refresh_from_db()
    assert not first.is_open and second.is_open and first.settlements.exists()


def test_quiet_hour(settings):
    settings.SHIFT_CLOSE_AT = "04:00"
    tz = timezone.get_current_timezone()
    opened = timezone.make_aware(datetime(2026, 11, 27, 22, 0), tz)
    shift = Shift(opened_at=opened, expires_at=opened + timedelta(days=1))
    before = timezone.make_aware(datetime(2026, 11, 28, 3, 59), tz)
    after = timezone.make_aware(datetime(2026, 11, 28, 4, 1), tz)
    assert autoclose.close_reason(shift, before) is None
    assert "04:00" in autoclose.close_reason(shift, after)
