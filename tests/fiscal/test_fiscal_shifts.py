"""Shift workflows and the fiscal journal, against the ATOL emulator over real HTTP."""

from __future__ import annotations

import pytest

from core.emulator_http import Response, json_response
from core.locks import DeviceBusy, device_lock
from fiscal import shifts
from fiscal.models import FiscalDocument, FiscalOperation, Shift
from fiscal.register import (
    FiscalFailed,
    FiscalOutcomeUnknown,
    RegisterUnresolved,
    make_client,
    register_lock_key,
    register_session,
)
from nekassir import shift_closing
from payments.settlement import settle_before_close
from tests.factories import make_kiosk
from tests.fake_servers import BadAtolServer
from tests.threads import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def kiosk(atol_emulator):
    return make_kiosk(atol_emulator.url)


def journal_types(emulator, device="K1"):
    return [d["type"] for d in emulator.journal() if d["device"] == device]


def test_open_x_close_are_journaled_with_documents(kiosk, atol_emulator):
    shift = shifts.open_shift(kiosk)
    assert shift.is_open and shift.opened_at and shift.expires_at
    op = shifts.x_report(kiosk)
    assert op.state == FiscalOperation.State.DONE and op.fd_number is None
    closed = shift_closing.close_shift(kiosk)

    assert closed.pk == shift.pk and closed.state == Shift.State.CLOSED and closed.closed_at
    open_doc, close_doc = FiscalDocument.objects.filter(shift=shift).order_by("fd_number")
    assert (open_doc.doc_type, close_doc.doc_type) == ("openShift", "closeShift")
    assert close_doc.fd_number == open_doc.fd_number + 1
    assert closed.register_totals["closing_report"]["fiscalDocumentNumber"] == close_doc.fd_number
    assert journal_types(atol_emulator) == ["openShift", "reportX", "closeShift"]
    assert not FiscalOperation.objects.filter(state__in=FiscalOperation.UNRESOLVED).exists()


def test_opening_an_open_shift_is_quiet(kiosk, atol_emulator):
    first = shifts.open_shift(kiosk)
    again = shifts.open_shift(kiosk)
    assert again.pk == first.pk
    assert journal_types(atol_emulator) == ["openShift"]


def test_closing_a_closed_shift_reports_nothing_to_close(kiosk, atol_emulator):
    assert shift_closing.close_shift(kiosk) is None
    assert journal_types(atol_emulator) == []


def test_x_report_needs_an_open_shift(kiosk):
    with pytest.raises(FiscalFailed) as info:
        shifts.x_report(kiosk)
    assert info.value.kind == "shift_closed"


def test_an_expired_shift_is_closed_before_a_new_one_opens(kiosk, atol_emulator):
    first = shifts.open_shift(kiosk)
    atol_emulator.control.post("/_emulator/clock", json={"advance_seconds": 24 * 3600 + 1}).raise_for_status()
    assert shifts.status(kiosk).state == "expired"
    second = shifts.ensure_shift_open(kiosk, before_close=settle_before_close)
    first.refresh_from_db()
    assert first.state == Shift.State.CLOSED
    assert second.is_open and second.number == first.number + 1
    assert journal_types(atol_emulator) == ["openShift", "closeShift", "openShift"]


def test_paper_out_marks_the_register_not_ready(kiosk, atol_emulator):
    atol_emulator.fault("paper_out", device="K1")
    with pytest.raises(FiscalFailed) as info:
        shifts.open_shift(kiosk)
    assert info.value.kind == "no_paper"
    kiosk.refresh_from_db()
    assert not kiosk.register_ready and "бумаг" in kiosk.register_problem.lower()
    assert info.value.op.state == FiscalOperation.State.FAILED and info.value.op.error_code == 44


def test_a_crash_after_the_post_is_resumed_without_a_second_document(kiosk, atol_emulator):
    """The worker saved the uuid, POSTed, and died before reading the result."""
    with register_session(kiosk) as session:
        op = session.create({"type": "openShift"})
        FiscalOperation.objects.filter(pk=op.pk).update(state=FiscalOperation.State.SENT)
        make_client(kiosk).submit(str(op.uuid), op.request)
    # The next operation on this register resolves it first.
    shifts.status(kiosk)
    op.refresh_from_db()
    assert op.state == FiscalOperation.State.DONE and op.fd_number
    assert FiscalDocument.objects.filter(operation=op).count() == 1
    assert journal_types(atol_emulator) == ["openShift"]


def test_a_task_saved_but_never_sent_is_not_sent_later(kiosk, atol_emulator):
    """The process died between saving the task and sending it: resending it later could print a
    document nobody waits for, so it is closed as never sent and its workflow decides again."""
    with register_session(kiosk) as session:
        op = session.create({"type": "openShift"})
    shifts.status(kiosk)
    op.refresh_from_db()
    assert op.state == FiscalOperation.State.FAILED and op.error_kind == "never_sent"
    assert journal_types(atol_emulator) == []


def test_unknown_outcome_blocks_the_register_until_resolved(kiosk, atol_emulator, settings):
    shifts.open_shift(kiosk)
    settings.ATOL_MAX_WAIT = 0.3
    atol_emulator.fault("blocked_then_ready", device="K1", blocked_seconds=2.0)
    with pytest.raises(FiscalOutcomeUnknown) as info:
        shift_closing.close_shift(kiosk)
    op = info.value.op
    assert op.state == FiscalOperation.State.UNKNOWN and op.task_type == "closeShift"
    # While unresolved, nothing new is sent to this register.
    with pytest.raises(RegisterUnresolved):
        shifts.x_report(kiosk)
    assert journal_types(atol_emulator) == ["openShift"]
    settings.ATOL_MAX_WAIT = 10
    shifts.status(kiosk)  # resolves the close first, by its uuid
    op.refresh_from_db()
    assert op.state == FiscalOperation.State.DONE
    assert journal_types(atol_emulator) == ["openShift", "closeShift"]


def test_blocked_then_error_resolves_as_nothing_made(kiosk, atol_emulator):
    shifts.open_shift(kiosk)
    atol_emulator.fault("blocked_then_error", device="K1", blocked_seconds=0.2)
    with pytest.raises(FiscalFailed):
        shift_closing.close_shift(kiosk)
    assert journal_types(atol_emulator) == ["openShift"]
    assert Shift.objects.get().is_open


def test_one_operation_at_a_time_per_register(kiosk, atol_emulator):
    def other_session():
        with register_session(kiosk, wait=0.2):
            pass

    with device_lock(register_lock_key(kiosk), purpose="другая операция"):
        _, errors = run_in_threads(other_session, [()])
    assert len(errors) == 1 and isinstance(errors[0], DeviceBusy)
    assert "другая операция" in str(errors[0])


def test_two_registers_in_parallel(atol_emulator):
    kiosks = [make_kiosk(atol_emulator.url, code) for code in ("K1", "K2")]

    def cycle(k):
        shifts.open_shift(k)
        shift_closing.close_shift(k)

    _, errors = run_in_threads(cycle, [(k,) for k in kiosks])
    assert not errors
    assert Shift.objects.filter(state=Shift.State.CLOSED).count() == 2
    assert journal_types(atol_emulator, "K1") == journal_types(atol_emulator, "K2") == ["openShift", "closeShift"]


@pytest.mark.parametrize(
    "answer",
    [
        Response(200, b"<html>oops</html>"),
        json_response({"results": [{"status": "weird"}]}),
        json_response({}, status=500),
    ],
    ids=["not-json", "unknown-status", "http-500"],
)
def test_bad_answers_leave_a_journal_row_in_unknown(serve_emulator, settings, answer):
    settings.ATOL_MAX_WAIT = 0.3
    server = serve_emulator(BadAtolServer(answer))
    kiosk = make_kiosk(server.url)
    with pytest.raises(FiscalOutcomeUnknown):
        shifts.open_shift(kiosk)
    op = FiscalOperation.objects.get()  # the first device call, whatever it was, is journaled
    assert op.state == FiscalOperation.State.UNKNOWN
    assert op.error_kind == "bad_answer" and op.error_message


def test_free_lock_rows_are_pruned_and_come_back_on_use():
    """Per-order lock keys would add a row per order forever: a free row untouched for a day is deleted,
    a held one never, and the next use of a pruned key creates it again."""
    from datetime import timedelta

    from django.utils import timezone

    from core.locks import prune_free_locks
    from core.models import DeviceLock

    with device_lock("iiko:order:old"):
        pass
    with device_lock("iiko:order:recent"):
        pass
    DeviceLock.objects.filter(key="iiko:order:old").update(acquired_at=timezone.now() - timedelta(days=2))
    with device_lock("register:held"):
        DeviceLock.objects.filter(key="register:held").update(acquired_at=timezone.now() - timedelta(days=2))
        assert prune_free_locks() == 1
        assert set(DeviceLock.objects.values_list("key", flat=True)) == {"iiko:order:recent", "register:held"}
    with device_lock("iiko:order:old"):
        assert DeviceLock.objects.get(key="iiko:order:old").holder


def test_a_new_key_is_inserted_held_and_an_existing_one_claimed_as_before():
    """``new_key`` (one lock row per order: iiko delivery) inserts the row held in one statement; when the row
    exists it is claimed as usual: free -> ours, held by another live holder -> DeviceBusy."""
    import threading

    from core.models import DeviceLock

    with device_lock("iiko:order:1", new_key=True):
        assert DeviceLock.objects.get(key="iiko:order:1").holder
    assert DeviceLock.objects.get(key="iiko:order:1").holder == ""
    with device_lock("iiko:order:1", new_key=True):  # the row is there and free: claimed
        assert DeviceLock.objects.get(key="iiko:order:1").holder
    inside, leave = threading.Event(), threading.Event()

    def hold():
        from django.db import connection

        try:
            with device_lock("iiko:order:1", new_key=True):
                inside.set()
                leave.wait(10)
        finally:
            connection.close()  # this thread's own connection

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(10)
        with pytest.raises(DeviceBusy), device_lock("iiko:order:1", new_key=True):
            pass
    finally:
        leave.set()
        holder.join()
    assert DeviceLock.objects.filter(key="iiko:order:1").count() == 1
