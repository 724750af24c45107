"""The checkout's work on marked goods (issue 13, PROTOCOLS.md §4): the MARKS step's checks before anything is
printed or charged, the validation again before the receipt when the shift changed, and the return's validation
before an annulment. The steps themselves (order states, the guest window, deferring) are ``nekassir.checkout``.

MARKS, in order:
a. the permissive-mode check service (``MARKING_CHECK_URL``; skipped when empty) for all the order's codes in
   one request, unless the order already has an answered check (a resumed step asks nothing again); each
   code's verdict is kept on its ``OrderMark``; an unsellable code refuses the order (``marking_rejected``);
   no answer: ``MARKING_OFFLINE_SALE`` decides (``refuse``: ``marking_unavailable``; ``offline``: go on);
b. the register's validation (``fiscal.marking.validate_codes``, one code at a time under the register's lock,
   the shift opened first): each result kept on its unit with the FN and shift it counts for; a refused code
   refuses the order; an offline result (the operator not reached, the FN's own check passed) is decided by
   ``MARKING_OFFLINE_SALE`` as in (a).
A validation counts only for a receipt in the same shift: ``revalidate`` runs in the SELL step's register
session after the shift is made open, for every unit validated under another FN or shift.
For a return (the annulment) the codes are validated with ``itemPieceReturn``; the result is recorded on the unit
(``return_result``) and never blocks.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import transaction

from fiscal.marking import CodeValidation, validate_codes
from fiscal.models import Shift
from fiscal.register import RegisterSession, register_session
from fiscal.shifts import ensure_open
from marking import checks as marking_checks
from marking.models import MarkingCheck
from nekassir.models import Order, OrderMark
from nekassir.order_steps import GUEST_MESSAGES, order_event, update_order
from nekassir.receipts import RETURNED
from payments.settlement import settle_before_close

log = logging.getLogger(__name__)

MAX_GUEST_MESSAGE = 255  # Order.error_message


@dataclass
class MarksOutcome:
    """What the MARKS step (or a validation again) found. ``code`` "" when the order may go on to its receipt,
    else ``marking_rejected`` / ``marking_unavailable`` with the guest's ``message`` and the journal's ``detail``.
    ``mode``: ``online``, or ``offline`` when a code is sold on the register's offline result."""

    code: str = ""
    message: str = ""
    detail: str = ""
    mode: str = Order.MarkingMode.ONLINE


class MarksRefused(Exception):
    """Raised by ``revalidate`` inside the SELL step: the receipt must not be printed."""

    def __init__(self, outcome: MarksOutcome):
        super().__init__(outcome.detail)
        self.outcome = outcome


def reserved_marks(order: Order) -> list[OrderMark]:
    return list(order.marks.filter(state=OrderMark.State.RESERVED).select_related("line")
                .order_by("line__position", "unit"))


def check_marks(order: Order) -> MarksOutcome:
    """The MARKS step's checks, (a) then (b). Raises ``FiscalError``/``DeviceBusy`` as a register session does."""
    marks = reserved_marks(order)
    outcome = MarksOutcome()
    if marking_checks.is_enabled():
        service = _service_check(order, marks)
        if service.code:
            return service
        outcome.mode = service.mode
    with register_session(order.kiosk, purpose=f"проверка кодов маркировки {order.number}") as session:
        shift = ensure_open(session, before_close=settle_before_close)
        register = _validate(order, session, shift, marks)
    if register.code:
        return register
    if register.mode == Order.MarkingMode.OFFLINE:
        outcome.mode = Order.MarkingMode.OFFLINE
    return outcome


def revalidate(order: Order, session: RegisterSession, shift: Shift) -> None:
    """In the SELL step, after the shift is open: units validated under another FN or shift (a close and reopen,
    a resume in a later shift) are validated again before the receipt; ``MarksRefused`` when one fails."""
    marks = [m for m in reserved_marks(order) if (m.validated_fn, m.validated_shift) != (shift.fn_number, shift.number)]
    if not marks:
        return
    order_event(order, "order.marks.revalidate",
                f"смена {shift.number}: коды маркировки проверяются кассой снова ({len(marks)} шт.)")
    outcome = _validate(order, session, shift, marks)
    if outcome.code:
        raise MarksRefused(outcome)
    if outcome.mode == Order.MarkingMode.OFFLINE and order.marking_mode != Order.MarkingMode.OFFLINE:
        update_order(order, marking_mode=Order.MarkingMode.OFFLINE)


def validate_return(order: Order, session: RegisterSession) -> None:
    """Before the annulment's sellReturn: the sold units validated with ``itemPieceReturn`` (the FN must know
    them in this shift); the result is recorded, never a reason to stop (the operator may not know the sale yet)."""
    marks = list(order.marks.filter(state=OrderMark.State.SOLD).order_by("line__position", "unit"))
    record_return_validation(session, marks, reference=f"order:{order.pk}:annul-marks")


def record_return_validation(session: RegisterSession, marks: list[OrderMark], *, reference: str) -> None:
    """Units about to go back (an annulment, a refund) validated with ``itemPieceReturn`` in this shift, the FN
    taking a code into a receipt only so; each result kept in ``return_result``. Never a reason to stop: the money
    goes back, and right after a sale the marking operator may not know the code was sold."""
    if not marks:
        return
    results = validate_codes(session, [m.code for m in marks], status=RETURNED, reference=reference)
    for mark, result in zip(marks, results, strict=True):
        mark.return_result = asdict(result)
        mark.save(update_fields=["return_result", "updated_at"])


def mark_sold(order: Order) -> None:
    OrderMark.objects.filter(order=order, state=OrderMark.State.RESERVED).update(state=OrderMark.State.SOLD)


def release(order: Order) -> int:
    """The order ended without a sale, or its receipt was annulled: its codes are free for another order."""
    return OrderMark.objects.filter(order=order, state__in=OrderMark.ACTIVE).update(state=OrderMark.State.RELEASED)


# --- (a) the check service --------------------------------------------------------------------------------


def _service_check(order: Order, marks: list[OrderMark]) -> MarksOutcome:
    check = order.marking_check
    if check is None or check.state != MarkingCheck.State.ANSWERED:
        check = marking_checks.check_codes(order.kiosk, [m.code for m in marks])
        update_order(order, marking_check=check)
    if check.state != MarkingCheck.State.ANSWERED:
        detail = f"служба проверки кодов: {check.get_state_display()} ({check.error[:200]})"
        return _unreachable(order, detail)
    verdicts = check.verdicts
    refused: list[tuple[OrderMark, str]] = []
    with transaction.atomic():
        for mark in marks:
            verdict = verdicts.get(mark.code)
            mark.service_result = verdict.as_json() if verdict else {"raw": mark.code, "sellable": False,
                                                                     "reason": "служба не ответила по этому коду"}
            mark.save(update_fields=["service_result", "updated_at"])
            if verdict is None or not verdict.sellable:
                refused.append((mark, verdict.reason if verdict else "служба не ответила по этому коду"))
    if refused:
        return _rejected(refused, "служба проверки")
    order_event(order, "order.marks.service", f"служба проверки: {len(marks)} код(ов) можно продать "
                                              f"(reqId {check.req_id})")
    return MarksOutcome()


# --- (b) the register -------------------------------------------------------------------------------------


def _validate(order: Order, session: RegisterSession, shift: Shift, marks: list[OrderMark]) -> MarksOutcome:
    results = validate_codes(session, [m.code for m in marks], reference=f"order:{order.pk}:marks")
    refused: list[tuple[OrderMark, str]] = []
    offline: list[OrderMark] = []
    with transaction.atomic():
        for mark, result in zip(marks, results, strict=True):
            mark.register_result = asdict(result)
            mark.validated_fn, mark.validated_shift = shift.fn_number, shift.number
            mark.save(update_fields=["register_result", "validated_fn", "validated_shift", "updated_at"])
            if result.accepted:
                continue
            if _offline_but_fn_accepted(result):
                offline.append(mark)
            else:
                refused.append((mark, result.reason))
    if refused:
        return _rejected(refused, "касса")
    if offline:
        outcome = _unreachable(order, f"касса: оператор маркировки не ответил по {len(offline)} код(ам)")
        if outcome.code:
            return outcome
        order_event(order, "order.marks.register", f"касса: {len(marks)} код(ов) проверены, {len(offline)} — "
                                                   "только ФН (продажа по автономной проверке)")
        return outcome
    order_event(order, "order.marks.register", f"касса: {len(marks)} код(ов) проверены, смена {shift.number}")
    return MarksOutcome()


def _offline_but_fn_accepted(result: CodeValidation) -> bool:
    return result.offline and result.fn_accepted


# --- outcomes -------------------------------------------------------------------------------------------


def _rejected(refused: list[tuple[OrderMark, str]], by: str) -> MarksOutcome:
    mark, reason = refused[0]
    message = f"{mark.line.name}: код маркировки не прошёл проверку ({reason}). Обратитесь к сотруднику."
    if len(message) > MAX_GUEST_MESSAGE:
        message = f"{mark.line.name[:120]}…: код маркировки не прошёл проверку. Обратитесь к сотруднику."
    detail = "; ".join(f"{m.line.receipt_name} #{m.unit}: {why}" for m, why in refused[:5])
    return MarksOutcome(code="marking_rejected", message=message[:MAX_GUEST_MESSAGE], detail=f"{by}: {detail}")


def _unreachable(order: Order, detail: str) -> MarksOutcome:
    """The check service or the marking operator could not be reached: ``MARKING_OFFLINE_SALE`` decides."""
    if settings.MARKING_OFFLINE_SALE == "offline":
        order_event(order, "order.marks.offline", f"{detail}: продажа по автономной проверке (MARKING_OFFLINE_SALE)")
        return MarksOutcome(mode=Order.MarkingMode.OFFLINE)
    return MarksOutcome(code="marking_unavailable", message=GUEST_MESSAGES["marking_unavailable"], detail=detail)
