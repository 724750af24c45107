"""Shift workflows: status, open, close, X report, "ensure the shift is open".

Each takes the register's lock (``register_session``) and journals every task it sends.
Closing runs the kiosk's pre-close hooks first (the card terminal's settlement, payments app),
so that ``kkt close``, the panel and the automatic closing all settle the terminal the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.dateparse import parse_datetime

from fiscal import register, requisites
from fiscal.models import FiscalOperation, Shift
from fiscal.register import FiscalFailed, RegisterSession, register_session
from nekassir.events import record_event
from nekassir.locks import DeviceBusy, device_lock, sale_lock_key
from nekassir.models import Kiosk

log = logging.getLogger(__name__)

# Called with (kiosk, shift or None) before the fiscal shift is closed; payments registers the
# terminal settlement here. A hook must not raise for a failed settlement: the shift still closes.
PRE_CLOSE_HOOKS: list[Callable[[Kiosk, Shift | None], dict[str, Any]]] = []

# Called with the kiosk (the sale lock held, the register free) before a close: each finishes what must
# land in this shift (nekassir.checkout: an order between its receipt and its payment or annulment;
# payments: the return receipt of a refund whose money already went back) and returns why the close
# must wait ("" when nothing does). A manual close refuses then; the automatic
# close (``force``) closes anyway and the leftover is flagged by reconciliation.
UNFINISHED_DOCUMENT_CHECKS: list[Callable[[Kiosk], str]] = []


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
    number = data.get("number")
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
    shift = current.shift or Shift.objects.get(kiosk=kiosk, fn_number=op.fn_number, number=op.shift_number)
    document = getattr(op, "document", None)
    if document is not None and shift.opened_at != document.registered_at:
        Shift.objects.filter(pk=shift.pk).update(opened_at=document.registered_at or op.finished_at)
        shift.refresh_from_db()
    record_event("fiscal.shift.opened", kiosk=kiosk, user=user, object_ref=f"shift:{shift.pk}",
                 message=f"Смена №{shift.number} открыта", data={"fd": op.fd_number})
    return shift


def close_shift(kiosk: Kiosk, *, user=None, reason: str = "manual", force: bool = False,
                wait: float | None = None) -> Shift | None:
    """Settle the terminal (hooks), then close the fiscal shift and keep the closing report.

    A payment in progress on the kiosk is never interrupted: the close waits for it up to ``wait``
    seconds, then refuses (DeviceBusy) — or, with ``force`` (the automatic close, which must not let
    the shift run past 24 hours), closes anyway: the register lock still keeps the two apart, and a
    terminal still busy only means its settlement is skipped and flagged.
    Returns the closed shift, or None when the register had no open shift.
    """
    wait = settings.CLOSE_WAIT_FOR_SALE if wait is None else wait
    try:
        with device_lock(sale_lock_key(kiosk), purpose=f"{kiosk.code}: закрытие смены", wait=wait):
            # With the sale lock no checkout runs: what one left half done (a killed worker) is finished now.
            unfinished = _finish_documents(kiosk)
            if unfinished and not force:
                raise DeviceBusy(sale_lock_key(kiosk), "", unfinished)
            return _close_now(kiosk, user=user, reason=reason)
    except DeviceBusy:
        if not force:
            raise
        log.warning("kiosk=%s closing the shift while an order is still in progress (%s)", kiosk.code, reason)
        return _close_now(kiosk, user=user, reason=f"{reason}; заказ ещё выполнялся")


def _finish_documents(kiosk: Kiosk) -> str:
    reasons = [reason for check in UNFINISHED_DOCUMENT_CHECKS if (reason := check(kiosk))]
    return "; ".join(reasons)


def _close_now(kiosk: Kiosk, *, user=None, reason: str) -> Shift | None:
    with register_session(kiosk, purpose=f"{kiosk.code}: закрытие смены") as session:
        return _close(session, user=user, reason=reason)


def _close(session: RegisterSession, *, user=None, reason: str = "manual") -> Shift | None:
    kiosk = session.kiosk
    _current_fn(session)
    current = read_status(session)
    if current.state == "closed":
        return None
    hook_results = {}
    for hook in PRE_CLOSE_HOOKS:
        hook_results.update(hook(kiosk, current.shift) or {})
    totals = _register_totals(session)
    try:
        op = session.run({"type": "closeShift", **_operator_fields(kiosk)}, reference="shift:close")
    except FiscalFailed as exc:
        if exc.kind != "shift_closed":
            raise
        return None
    shift = _mark_closed(kiosk, op, totals)
    record_event("fiscal.shift.closed", kiosk=kiosk, user=user, object_ref=f"shift:{shift.pk}",
                 message=f"Смена №{shift.number} закрыта ({reason})",
                 data={"fd": op.fd_number, "reason": reason, **hook_results})
    return shift


def _register_totals(session: RegisterSession) -> dict[str, Any] | None:
    """The register's own counters of the shift, read just before closing, for reconciliation."""
    try:
        op = session.run({"type": "getShiftTotals"})
    except FiscalFailed as exc:
        log.warning("kiosk=%s getShiftTotals failed before close: %s", session.kiosk.code, exc)
        return None
    return op.result


def _mark_closed(kiosk: Kiosk, op: FiscalOperation, totals: dict[str, Any] | None) -> Shift:
    result = op.result or {}
    params = result.get("fiscalParams") or {}
    with transaction.atomic():
        shift, _ = Shift.objects.get_or_create(
            kiosk=kiosk, fn_number=op.fn_number, number=op.shift_number, defaults={"state": Shift.State.OPEN}
        )
        document = getattr(op, "document", None)
        shift.state = Shift.State.CLOSED
        shift.closed_at = (document.registered_at if document else None) or op.finished_at
        count = params.get("receiptsCount")
        shift.receipts_count = int(count) if count not in (None, "") else None
        shift.register_totals = {"closing_report": params, "shift_totals": totals}
        shift.save()
    return shift


def _after_resumed(session: RegisterSession, op: FiscalOperation) -> None:
    """A closeShift sent by a process that died (kill -9) and finished by a later session: the shift is
    closed on the register, so mark it closed here too (else our row stays open beside the next one)."""
    if op.task_type == "closeShift" and op.state == FiscalOperation.State.DONE and op.shift_number:
        _mark_closed_late(session.kiosk, op)


def _mark_closed_late(kiosk: Kiosk, op: FiscalOperation) -> Shift:
    """Record a closeShift the register did but whose workflow died before ``_mark_closed``."""
    # The register's counters were read just before that closeShift (``_close``); after it they are gone.
    totals = (FiscalOperation.objects.filter(kiosk=kiosk, task_type="getShiftTotals", id__lt=op.pk,
                                             state=FiscalOperation.State.DONE).order_by("-id").first())
    shift = _mark_closed(kiosk, op, totals.result if totals else None)
    record_event("fiscal.shift.closed", kiosk=kiosk, object_ref=f"shift:{shift.pk}",
                 message=f"Смена №{shift.number} закрыта (завершено после перезапуска)", data={"fd": op.fd_number})
    return shift


def _close_from_journal(kiosk: Kiosk, shift: Shift) -> None:
    """``shift`` is closed on the register: from our closeShift in the journal if there is one (with its
    report and the counters read before it), else as closed outside our journal (by hand on the device)."""
    op = (FiscalOperation.objects.filter(kiosk=kiosk, task_type="closeShift", state=FiscalOperation.State.DONE,
                                         fn_number=shift.fn_number, shift_number=shift.number).order_by("-id").first())
    if op is not None:
        _mark_closed_late(kiosk, op)
        return
    log.warning("kiosk=%s shift %s was closed outside our journal", kiosk.code, shift.number)
    Shift.objects.filter(pk=shift.pk).update(state=Shift.State.CLOSED)


register.RESUMED_HOOKS.append(_after_resumed)


def x_report(kiosk: Kiosk, *, user=None) -> FiscalOperation:
    """Print the X report (not a fiscal document); only while a shift is open."""
    with register_session(kiosk, purpose=f"{kiosk.code}: X-отчёт") as session:
        op = session.run({"type": "reportX", **_operator_fields(kiosk)}, reference="shift:xreport")
        record_event("fiscal.shift.xreport", kiosk=kiosk, user=user, message="X-отчёт напечатан")
        return op


def ensure_open(session: RegisterSession) -> Shift:
    """The shift is open when this returns. An expired shift is closed first (it blocks sales).

    Every receipt comes after this, so the requisites of an automatic device are made known here too: read
    after the shift is open, when an openShift has told the FN the register is on (``fiscal.requisites``).
    """
    shift = _open_for_receipts(session)
    requisites.ensure_read(session)
    return shift


def _open_for_receipts(session: RegisterSession) -> Shift:
    current = read_status(session)
    if current.state == "opened" and current.shift is not None:
        return current.shift
    if current.state == "expired":
        _close(session, reason="expired")
    return _open(session)


def ensure_shift_open(kiosk: Kiosk) -> Shift:
    with register_session(kiosk, purpose=f"{kiosk.code}: проверка смены") as session:
        _current_fn(session)
        return ensure_open(session)
