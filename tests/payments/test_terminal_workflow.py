"""Card terminal workflows (journal, unknown outcomes, settlement) against the emulators over HTTP."""

from __future__ import annotations

import json

import pytest

from fiscal import shifts
from fiscal.models import FiscalDocument
from nekassir import shift_closing
from payments.models import CardOperation, Settlement
from payments.settlement import settle
from payments.terminal import TerminalUnresolved, terminal_session
from tests.factories import make_terminal_kiosk
from tests.processes import run_manage

pytestmark = pytest.mark.django_db(transaction=True)
State = CardOperation.State


@pytest.fixture
def fast_terminal(settings):
    """Short client timeouts so that "the answer never comes" costs a fraction of a second."""
    settings.TERMINAL_HTTP_TIMEOUT = 0.4
    settings.TERMINAL_GUEST_TIMEOUT = 0.4
    settings.TERMINAL_POLL_FOR = 0.3
    return settings


@pytest.fixture
def kkm_kiosk(atol_emulator, kkm_emulator):
    return make_terminal_kiosk(atol_emulator.url, kkm_url=kkm_emulator.url)


@pytest.fixture
def dc_kiosk(atol_emulator, dc_emulator):
    return make_terminal_kiosk(atol_emulator.url, dc_url=dc_emulator.url)


def sale(kiosk, kopecks=18900):
    with terminal_session(kiosk) as session:
        return session.sale(kopecks, "K1-001", reference="order:test")


def operations(emulator):
    return [(e["operation"], e["state"]) for e in emulator.journal()]


def test_approved_sale_is_journaled_with_rrn_and_card(kkm_kiosk, kkm_emulator):
    op = sale(kkm_kiosk)
    assert op.state == State.APPROVED
    assert op.rrn and op.masked_pan and op.terminal_reference and op.slip
    assert op.raw_request and op.raw_response
    assert operations(kkm_emulator) == [("sale", "approved")]


@pytest.mark.parametrize(("fault", "code"), [("decline", "05"), ("insufficient_funds", "51")])
def test_declines_keep_the_bank_code(kkm_kiosk, kkm_emulator, fault, code):
    kkm_emulator.fault(fault)
    op = sale(kkm_kiosk)
    assert op.state == State.DECLINED and op.bank_code == code and op.message


@pytest.mark.parametrize(("approved", "final"), [(True, State.APPROVED), (False, State.DECLINED)])
def test_unknown_sale_is_resolved_by_get_rezult(kkm_kiosk, kkm_emulator, fast_terminal, approved, final):
    kkm_emulator.fault("timeout", count=2, approved=approved)  # the sale and its first GetRezult hang
    op = sale(kkm_kiosk)
    assert op.state == State.UNKNOWN  # never "declined" for a lost answer
    with terminal_session(kkm_kiosk):  # the next use of the terminal resolves it first
        pass
    op.refresh_from_db()
    assert op.state == final and "GetRezult" in op.resolution
    assert [e[0] for e in operations(kkm_emulator)] == ["sale"]  # nothing was repeated


def test_still_unknown_sale_is_reversed(kkm_kiosk, kkm_emulator, fast_terminal):
    kkm_emulator.fault("timeout", count=3)  # the sale, its GetRezult, and the GetRezult of the resolution
    op = sale(kkm_kiosk)
    assert op.state == State.UNKNOWN
    with terminal_session(kkm_kiosk):
        pass
    op.refresh_from_db()
    assert op.state == State.REVERSED
    reversal = CardOperation.objects.get(kind=CardOperation.Kind.REVERSAL)
    assert reversal.original == op and reversal.state == State.APPROVED
    assert operations(kkm_emulator) == [("sale", "approved"), ("reversal", "approved")]


def test_dualconnector_lost_answer_is_reversed(dc_kiosk, dc_emulator, fast_terminal):
    dc_emulator.fault("lost_response")
    op = sale(dc_kiosk)
    assert op.state == State.UNKNOWN
    with terminal_session(dc_kiosk):
        pass
    op.refresh_from_db()
    assert op.state == State.REVERSED
    assert operations(dc_emulator) == [("sale", "approved"), ("reversal", "approved")]


def test_dualconnector_lost_answer_of_a_declined_sale_reverses_nothing(dc_kiosk, dc_emulator, fast_terminal):
    dc_emulator.fault("lost_response", approved=False)
    op = sale(dc_kiosk)
    with terminal_session(dc_kiosk):
        pass
    op.refresh_from_db()
    assert op.state == State.DECLINED
    assert operations(dc_emulator)[0] == ("sale", "declined")


def test_a_sale_saved_but_never_sent_is_declined_without_calling(kkm_kiosk, kkm_emulator):
    with terminal_session(kkm_kiosk) as session:
        op = session.create(CardOperation.Kind.SALE, 18900)
    with terminal_session(kkm_kiosk):
        pass
    op.refresh_from_db()
    assert op.state == State.DECLINED
    assert operations(kkm_emulator) == []


@pytest.mark.parametrize("transport", ["kkm", "dc"])
def test_cancel_before_settlement_refund_after(request, transport):
    kiosk = request.getfixturevalue(f"{transport}_kiosk")
    paid = sale(kiosk)
    with terminal_session(kiosk) as session:
        cancelled = session.cancel(paid, paid.amount_kopecks)
    assert cancelled.state == State.APPROVED

    second = sale(kiosk, 30000)
    assert settle(kiosk).state == Settlement.State.OK
    with terminal_session(kiosk) as session:
        too_late = session.cancel(second, second.amount_kopecks)
        partial = session.refund(second, 10000)
        rest = session.refund(second, 20000)
        above = session.refund(second, 100)
    assert too_late.state == State.DECLINED
    assert partial.state == rest.state == State.APPROVED
    assert above.state == State.DECLINED


def test_settlement_failing_then_succeeding(kkm_kiosk, kkm_emulator):
    sale(kkm_kiosk)
    kkm_emulator.fault("settlement_fails")
    settlement = settle(kkm_kiosk)
    assert settlement.state == Settlement.State.OK and settlement.attempts == 2 and settlement.slip
    assert [e for e in operations(kkm_emulator) if e[0] == "settlement"] == [
        ("settlement", "failed"), ("settlement", "approved"),
    ]


def test_settlement_failing_every_time_is_flagged(kkm_kiosk, kkm_emulator, settings):
    kkm_emulator.fault("settlement_fails", count=settings.SETTLEMENT_ATTEMPTS)
    settlement = settle(kkm_kiosk)
    assert settlement.state == Settlement.State.FAILED and "не выполнена" in settlement.message


def test_settlement_refused_while_an_operation_is_unresolved(kkm_kiosk, kkm_emulator, fast_terminal):
    kkm_emulator.fault("timeout", count=100)  # the terminal answers nothing at all
    op = sale(kkm_kiosk)
    assert op.state == State.UNKNOWN
    settlement = settle(kkm_kiosk)
    assert settlement.state == Settlement.State.SKIPPED and "неразрешённая" in settlement.message
    with pytest.raises(TerminalUnresolved):
        sale(kkm_kiosk)
    assert "settlement" not in [e[0] for e in operations(kkm_emulator)]


def test_closing_a_shift_settles_first_and_keeps_both(kkm_kiosk, kkm_emulator, atol_emulator):
    shifts.open_shift(kkm_kiosk)
    sale(kkm_kiosk)
    shift = shift_closing.close_shift(kkm_kiosk)
    settlement = shift.settlements.get()
    closing = FiscalDocument.objects.get(shift=shift, doc_type="closeShift")
    assert settlement.state == Settlement.State.OK and settlement.slip
    assert settlement.operation.finished_at <= closing.operation.sent_at
    assert settlement.slip_printed
    assert [d["type"] for d in atol_emulator.journal()] == ["openShift", "closeShift"]


def test_a_failed_settlement_does_not_stop_the_close(kkm_kiosk, kkm_emulator, settings):
    shifts.open_shift(kkm_kiosk)
    kkm_emulator.fault("settlement_fails", count=settings.SETTLEMENT_ATTEMPTS)
    shift = shift_closing.close_shift(kkm_kiosk)
    assert not shift.is_open
    assert shift.settlements.get().state == Settlement.State.FAILED


def test_terminal_command(kkm_kiosk, kkm_emulator):
    check = run_manage("terminal", "K1", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["check"]["state"] == "approved"
    sale(kkm_kiosk)
    status = json.loads(run_manage("terminal", "K1", "status").stdout)
    assert status["last_operation"]["kind"] == "sale" and status["unresolved"] == []
    assert status["batch_since_settlement"]["sale"] == {"count": 1, "amount": "189.00"}
    settled = run_manage("terminal", "K1", "settle")
    assert settled.returncode == 0 and json.loads(settled.stdout)["settlement"]["state"] == "ok"
    kkm_emulator.fault("settlement_fails", count=10)
    failed = run_manage("terminal", "K1", "settle")
    assert failed.returncode == 1
