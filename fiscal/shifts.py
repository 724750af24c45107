"""Shift workflows: status, open, close, X report, "ensure the shift is open".

Each takes the register's lock (``register_session``) and journals every task it sends. A close (and the close
of an expired shift before a receipt) calls the ``before_close`` its caller hands down just before closeShift:
the top floor passes the card terminal's settlement, so this room never reaches for the other rooms.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.events import record_event
from core.models import Kiosk
from fiscal import requisites, shift_records
from fiscal.models import FiscalDocument, FiscalOperation, Shift
from fiscal.register import FiscalFailed, RegisterSession, register_session

log = logging.getLogger(__name__)

# What the caller does just before the register's closeShift, with (kiosk, our open shift or None): the top
# floor settles the card terminal here (``payments.settlement.settle_before_close``), so that every close,
# the one forced by an expired shift before a receipt included, settles the same way. Returns what to journal
# with the close; must not raise for a failed settlement: the shift still closes.
BeforeClose = Callable[[Kiosk, Shift | None], dict[str, Any]]


@dataclass
class ShiftStatus:
    state: str  # closed | opened | expired (the register's words)
    number: int | None
    expires_at: datetime | None
    shift: Shift | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "number": self.number,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "shift_id": self.shift.pk if self.shift else None,
        }


def _operator_fields(kiosk: Kiosk) -> dict[str, Any]:
    operator = kiosk.atol_operator
    return {"operator": operator} if operator else {}


def read_status(session: RegisterSession) -> ShiftStatus:
    """Ask the register for its shift state and bring our Shift row in line with it."""
    op = session.run({"type": "getShiftStatus"})
    data = (op.result or {}).get("shiftStatus") or {}
    state = str(data.get("state", ""))
    number: Any = data.get("number")
    number = int(number) if number not in (None, "") else None
    expires_at = parse_datetime(str(data["expiredTime"])) if data.get("expiredTime") else None
    shift = _sync_shift(session.kiosk, state, number, expires_at)
    return ShiftStatus(state, number, expires_at, shift)


def _current_fn(session: RegisterSession) -> str:
    if session.kiosk.fn_number:
        return session.kiosk.fn_number
    op = session.run({"type": "getFnStatus"})
    fn_number = str(((op.result or {}).get("fnStatus") or {}).get("fnNumber") or "")
    if not fn_number:
        fn_number = str(((op.result or {}).get("fnStatus") or {}).get("serialNumber") or "")
    if fn_number:
        Kiosk.objects.filter(pk=session.kiosk.pk).update(fn_number=fn_number)
        session.kiosk.fn_number = fn_number
    return fn_number


def _sync_shift(kiosk: Kiosk, state: str, number: int | None, expires_at: datetime | None) -> Shift | None:
    if not number or state not in {"opened", "expired"} or not kiosk.fn_number:
        return None
    shift, created = Shift.objects.get_or_create(
        kiosk=kiosk, fn_number=kiosk.fn_number, number=number,
        defaults={"state": Shift.State.OPEN, "expires_at": expires_at},
    )
    if not created and (shift.expires_at != expires_at or shift.state != Shift.State.OPEN):
        Shift.objects.filter(pk=shift.pk).update(expires_at=expires_at, state=Shift.State.OPEN)
        shift.refresh_from_db()
    # The register is on this shift, so any other we still call open was closed: by a closeShift of ours
    # whose process died before it could say so, or by hand on the device.
    for stale in Shift.objects.filter(kiosk=kiosk, state=Shift.State.OPEN).exclude(pk=shift.pk):
        _close_from_journal(kiosk, stale)
    if shift.opened_at is None and expires_at is not None:
        # Opened outside our journal (by hand on the device): the register's 24 h tells when.
        Shift.objects.filter(pk=shift.pk).update(opened_at=expires_at - timedelta(hours=24))
        shift.refresh_from_db()
    return shift


def status(kiosk: Kiosk) -> ShiftStatus:
    with register_session(kiosk, purpose=f"{kiosk.code}: состояние смены") as session:
        _current_fn(session)
        return read_status(session)


def open_shift(kiosk: Kiosk, *, user=None) -> Shift:
    with register_session(kiosk, purpose=f"{kiosk.code}: открытие смены") as session:
        return _open(session, user=user)


def _open(session: RegisterSession, *, user=None) -> Shift:
    kiosk = session.kiosk
    _current_fn(session)
    try:
        op = session.run({"type": "openShift", **_operator_fields(kiosk)}, reference="shift:open")
    except FiscalFailed as exc:
        if exc.kind != "shift_already_open":
            raise
        log.info("kiosk=%s openShift: already open", kiosk.code)
        current = read_status(session)
        if current.shift is None:
            raise
        return current.shift
    current = read_status(session)  # the register's expiredTime for this shift
    # number=None would be an IS NULL lookup (the field is nullable); the plugin only takes an int.
    shift = current.shift or Shift.objects.get(kiosk=kiosk, fn_number=op.fn_number,
                                               number=op.shift_number)  # type: ignore[misc]
    document = getattr(op, "document", None)
    if document is not None and shift.opened_at != document.registered_at:
        Shift.objects.filter(pk=shift.pk).update(opened_at=document.registered_at or op.finished_at)
        shift.refresh_from_db()
    record_event("fiscal.shift.opened", kiosk=kiosk, user=user, object_ref=f"shift:{shift.pk}",
                 message=f"Смена №{shift.number} открыта", data={"fd": op.fd_number})
    return shift


def close_register(kiosk: Kiosk, *, before_close: BeforeClose, user=None, reason: str = "manual") -> Shift | None:
    """Close the register's shift: ``before_close`` (the settlement), then closeShift; keep the closing report.

    The register's part only: the whole close (the orders and refunds in flight first, under the kiosk's sale
    lock) is the top floor's ``nekassir.shift_closing.close_shift``. Returns the closed shift, or None when the
    register had no open shift.
    """
    with register_session(kiosk, purpose=f"{kiosk.code}: закрытие смены") as session:
        return _close(session, before_close=before_close, user=user, reason=reason)


def _close(session: RegisterSession, *, before_close: BeforeClose, user=None, reason: str = "manual") -> Shift | None:
    kiosk = session.kiosk
    _current_fn(session)
    current = read_status(session)
    if current.state == "closed":
        return None
    settled = before_close(kiosk, current.shift) or {}
    totals = _register_totals(session)
    try:
        op = session.run({"type": "closeShift", **_operator_fields(kiosk)}, reference="shift:close")
    except FiscalFailed as exc:
        if exc.kind != "shift_closed":
            raise
        return None
    shift = shift_records.mark_closed(kiosk, op, totals)
    record_event("fiscal.shift.closed", kiosk=kiosk, user=user, object_ref=f"shift:{shift.pk}",
                 message=f"Смена №{shift.number} закрыта ({reason})",
                 data={"fd": op.fd_number, "reason": reason, **settled})
    return shift


def _register_totals(session: RegisterSession, when: str = "before close") -> dict[str, Any] | None:
    """The register's own counters of the shift (``getShiftTotals``, journaled like every task): read just
    before closing, for reconciliation, and just after an X report, for the manager's screen."""
    try:
        op = session.run({"type": "getShiftTotals"})
    except FiscalFailed as exc:
        log.warning("kiosk=%s getShiftTotals failed %s: %s", session.kiosk.code, when, exc)
        return None
    return op.result


def _close_from_journal(kiosk: Kiosk, shift: Shift) -> None:
    """``shift`` is closed on the register: from our closeShift in the journal if there is one (with its
    report and the counters read before it), else as closed outside our journal (by hand on the device)."""
    op = (FiscalOperation.objects.filter(kiosk=kiosk, task_type="closeShift", state=FiscalOperation.State.DONE,
                                         fn_number=shift.fn_number, shift_number=shift.number).order_by("-id").first())
    if op is not None:
        shift_records.mark_closed_late(kiosk, op)
        return
    log.warning("kiosk=%s shift %s was closed outside our journal", kiosk.code, shift.number)
    Shift.objects.filter(pk=shift.pk).update(state=Shift.State.CLOSED)


@dataclass
class XReport:
    """A printed X report and the register's counters read right after it (``getShiftTotals``'s result, the
    figures the paper shows); ``totals`` is None when the register did not give them (the paper is printed)."""

    operation: FiscalOperation
    totals: dict[str, Any] | None


def print_x_report(kiosk: Kiosk, *, user=None) -> XReport:
    """Print the X report (not a fiscal document; only while a shift is open), then read the shift's counters
    in the same register session, so that nothing comes between the paper and the figures on screen."""
    with register_session(kiosk, purpose=f"{kiosk.code}: X-отчёт") as session:
        op = session.run({"type": "reportX", **_operator_fields(kiosk)}, reference="shift:xreport")
        totals = _register_totals(session, when="after an X report")
        shift = Shift.current(kiosk)  # the register's open shift as we know it: its page shows the latest report
        record_event("fiscal.shift.xreport", kiosk=kiosk, user=user, message="X-отчёт напечатан",
                     object_ref=f"shift:{shift.pk}" if shift is not None else "", data={"totals": totals})
        return XReport(op, totals)


def x_report(kiosk: Kiosk, *, user=None) -> FiscalOperation:
    """``print_x_report``'s operation (the ``kkt`` command prints it)."""
    return print_x_report(kiosk, user=user).operation


def ensure_open(session: RegisterSession, *, before_close: BeforeClose, trust: bool = False) -> Shift:
    """The shift is open when this returns. An expired shift is closed first (it blocks sales). ``trust``: for a
    receipt that follows at once (the checkout's), the register is asked only when our open Shift row cannot
    stand for its answer (``trusted_open_shift``); without it (a check by hand, a refund) it is always asked.

    Every receipt comes after this, so the requisites of an automatic device are made known here too: read
    after the shift is open, when an openShift has told the FN the register is on (``fiscal.requisites``).
    """
    trusted = trusted_open_shift(session.kiosk) if trust else None
    session.trusted_shift = trusted
    shift = trusted or _open_for_receipts(session, before_close)
    requisites.ensure_read(session)
    return shift


def _open_for_receipts(session: RegisterSession, before_close: BeforeClose) -> Shift:
    current = read_status(session)
    if current.state == "opened" and current.shift is not None:
        return current.shift
    if current.state == "expired":
        _close(session, before_close=before_close, reason="expired")
    return _open(session)


# Before a receipt the register is asked for its shift (getShiftStatus) unless our open Shift row can stand for
# the answer: it ends (the register's expiredTime) more than this plus SHIFT_CLOSE_MARGIN from now (a clock
# apart by minutes, a close that is due: the register is asked), and the register's last word on its shift agreed
# with it. A receipt refused because the shift expired or closed meanwhile made nothing and is printed again after
# a real query (the checkout's ``_PRINT_AGAIN_KINDS``); one that lands in another shift is acted on at once
# (``RegisterSession._shift_mismatch``).
TRUST_BEFORE_EXPIRY = timedelta(hours=1)
# Tasks whose answer says which shift the register is on: its shift status, and every fiscal document.
_SHIFT_ANSWERS = {"getShiftStatus", *FiscalDocument.Type.values}


def trusted_open_shift(kiosk: Kiosk) -> Shift | None:
    """Our open Shift row, when a receipt may go without asking the register first; None when it must ask.

    Trusted only when all hold: it is the kiosk's one open row, on the FN the register last named; its
    expiredTime is known and far (``TRUST_BEFORE_EXPIRY`` + ``SHIFT_CLOSE_MARGIN``); and the kiosk's latest
    register task that either says which shift the register is on (a shift status, a fiscal document) or did
    not end done (any error, unknown or unsent task, of any type) is a done one agreeing with the row: a
    status "opened" with its number, or a document with its FN and shift numbers. Any doubt asks the register.
    """
    if not kiosk.fn_number:
        return None
    rows = list(Shift.objects.filter(kiosk=kiosk, state=Shift.State.OPEN)[:2])
    if len(rows) != 1:
        return None
    shift = rows[0]
    if shift.fn_number != kiosk.fn_number or shift.expires_at is None:
        return None
    if shift.expires_at - timezone.now() <= TRUST_BEFORE_EXPIRY + timedelta(seconds=settings.SHIFT_CLOSE_MARGIN):
        return None
    done = FiscalOperation.State.DONE
    last = (FiscalOperation.objects.filter(kiosk=kiosk).filter(Q(task_type__in=_SHIFT_ANSWERS) | ~Q(state=done))
            .only("state", "task_type", "result", "fn_number", "shift_number").order_by("-id").first())
    return shift if last is not None and _agrees(last, shift) else None


def _agrees(op: FiscalOperation, shift: Shift) -> bool:
    if op.state != FiscalOperation.State.DONE:
        return False
    if op.task_type == "getShiftStatus":
        data = (op.result or {}).get("shiftStatus") or {}
        number: Any = data.get("number")
        return data.get("state") == "opened" and str(number) == str(shift.number)
    if op.task_type == FiscalDocument.Type.CLOSE_SHIFT:
        return False
    return op.fn_number == shift.fn_number and op.shift_number == shift.number


def ensure_shift_open(kiosk: Kiosk, *, before_close: BeforeClose) -> Shift:
    with register_session(kiosk, purpose=f"{kiosk.code}: проверка смены") as session:
        _current_fn(session)
        return ensure_open(session, before_close=before_close)
