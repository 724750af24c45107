"""The kiosk card checkout: fiscal receipt → card → iiko, as a resumable state machine.

Every step is written to the database before and after its device call (``Order.step`` and the
ids of the operations it made), so ``run_checkout`` can be run again at any time — after a crash,
a kill -9, a lost answer — and carries on from where the order is, never repeating a device call:

    MARKS  only an order with marked goods: its codes checked by the check service and validated by the register
           (nekassir.checkout_marks) → on to SELL, or failed marking_rejected / marking_unavailable
    SELL   ensure the shift is open (the register is asked only when our open Shift row cannot stand for its answer:
           fiscal.shifts.trusted_open_shift), print the sell receipt (payment "electronically"); marked units
           validated in another shift are validated again first
    CARD   card sale on the terminal; unknown outcomes are resolved first (payments.terminal)
    IIKO   approved: send the order to iiko (nekassir.iiko_delivery) → completed / not_delivered
    ANNUL  not paid: sellReturn of the same lines → cancelled (waits while the register cannot print)
    DONE

A device call's answer and the order's next step are one commit (``perform(then=...)``): each commit waits for
the disk, and the id is still committed before the call, the answer after it.

MARKS, SELL, CARD and ANNUL run under the kiosk's sale lock, so a manual shift close waits for (or refuses
during) a payment in progress and never interrupts it. IIKO runs outside it: the next guest's
payment need not wait for iiko.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.locks import DeviceBusy, device_lock, sale_lock_key
from fiscal.models import FiscalOperation
from fiscal.register import NEVER_SENT, FiscalError, FiscalFailed, register_lock_key, register_session
from fiscal.shifts import ensure_open
from nekassir import checkout_marks, report_summary
from nekassir.broker import queue_task
from nekassir.checkout_marks import MarksOutcome, MarksRefused
from nekassir.iiko_delivery import deliver
from nekassir.models import Order
from nekassir.order_steps import GUEST_MESSAGES, defer, order_event, update_order
from nekassir.receipts import annul_task, has_marks, sell_task
from payments.acquiring import rubles_to_kopecks
from payments.models import CardOperation
from payments.settlement import settle_before_close
from payments.terminal import TerminalError, TerminalNotConfigured, TerminalUnresolved, terminal_session

log = logging.getLogger(__name__)
Status = Order.Status
Step = Order.Step

def start_checkout(order_id) -> None:
    """Queue the checkout of a new order on the device cluster (call it in transaction.on_commit): its task
    runs the checkout on one of the worker's threads (nekassir.device_threads) and returns at once."""
    queue_task("nekassir.device_threads.dispatch_checkout", str(order_id), cluster="devices",
               task_name=f"checkout {order_id}")


def run_checkout(order_id: str) -> str:
    """Advance the order as far as it can go now; returns its status. Safe to call again at any time."""
    order = Order.objects.select_related("kiosk__iiko").get(pk=order_id)
    if order.step == Step.DONE:
        return order.status
    kiosk = order.kiosk
    # A new order's receipt comes next: the register's lock is claimed with the sale lock, in one statement.
    with_register = ({register_lock_key(kiosk): f"чек заказа {order.number}"}
                     if order.step == Step.SELL and order.sell_operation_id is None and kiosk.has_register
                     and kiosk.atol_url else None)
    try:
        with device_lock(sale_lock_key(kiosk), purpose=f"заказ {order.number}", wait=settings.SALE_LOCK_WAIT,
                         with_keys=with_register):
            # Another run may have moved it while we waited for the lock (the kiosk comes in the same query).
            order.refresh_from_db(from_queryset=Order.objects.select_related("kiosk__iiko"))
            paid_before = order.step == Step.IIKO
            _advance(order, {Step.MARKS, Step.SELL, Step.CARD, Step.ANNUL})
    except DeviceBusy as exc:
        defer(order, f"киоск занят: {exc}")
        return order.status
    if order.step == Step.IIKO:
        deliver(order, just_paid=not paid_before)  # paid in this run: iiko has not seen it
    return order.status


def _advance(order: Order, steps: set[str]) -> None:
    """Run steps while the order moves; stop when it waits (deferred) or leaves ``steps``."""
    handlers: dict[str, Callable[[Order], bool]] = {
        Step.MARKS: _marks, Step.SELL: _sell, Step.CARD: _card, Step.ANNUL: _annul,
    }
    for _ in range(20):  # a bound: every step either moves the order on or defers it
        if order.step not in steps:
            return
        if not handlers[order.step](order):
            return
    log.error("order=%s checkout did not settle in 20 steps (step %s)", order.pk, order.step)


# --- steps: each returns True when the order moved on, False when it must wait ---------------
def _marks(order: Order) -> bool:
    """Marked goods: every code checked (service, then register) before anything is printed or charged."""
    if guest_window_closed(order):
        # Nothing checked, printed or charged yet: the guest may be gone.
        return _finish(order, Status.CANCELLED, "guest_timeout",
                       detail="окно гостя истекло до проверки кодов маркировки")
    if order.status != Status.CHECKING_MARKS:
        update_order(order, status=Status.CHECKING_MARKS)
    try:
        outcome = checkout_marks.check_marks(order)
    except FiscalFailed as exc:
        # Refused before anything was made (the shift could not be opened, the FN...): nothing printed or charged.
        return _finish(order, Status.FAILED, "register_not_ready", detail=str(exc))
    except (FiscalError, DeviceBusy) as exc:
        return defer(order, f"проверка кодов маркировки: {exc}")
    if guest_window_closed(order):
        # The window wins over the checks' verdict: the guest may be gone, nothing is printed or charged.
        return _finish(order, Status.CANCELLED, "guest_timeout",
                       detail=f"окно гостя истекло во время проверки кодов маркировки {outcome.detail}".strip())
    if outcome.code:
        return _marks_refused(order, outcome)
    with transaction.atomic():
        update_order(order, step=Step.SELL, marking_mode=outcome.mode)
        order_event(order, "order.marks.done", "коды маркировки проверены"
                    + (" (продажа по автономной проверке кассы)" if outcome.mode == Order.MarkingMode.OFFLINE else ""))
    return True


def _marks_refused(order: Order, outcome: MarksOutcome) -> bool:
    return _finish(order, Status.FAILED, outcome.code, detail=outcome.detail, message=outcome.message)


def _sell(order: Order) -> bool:
    if order.sell_operation_id is None and guest_window_closed(order):
        # Nothing printed yet and the guest may be gone: no receipt, no charge.
        return _finish(order, Status.CANCELLED, "guest_timeout", detail="окно гостя истекло до печати чека")
    try:
        with register_session(order.kiosk, purpose=f"чек заказа {order.number}") as session:
            op = order.sell_operation
            if op is not None:
                op.refresh_from_db()  # the session may just have resolved it
            for _ in range(3):  # a bound: a receipt is printed again only after a proven "not made"
                if op is not None and not _print_again(op):
                    break
                op = _print_receipt(order, session)
                if op is None:
                    # The window wins, over a reopened shift too: no receipt was made, so nothing to annul.
                    return _finish(order, Status.CANCELLED, "guest_timeout", detail="окно гостя истекло до печати чека")
    except MarksRefused as refused:
        # Validated again in a new shift and refused now: no receipt was made.
        return _marks_refused(order, refused.outcome)
    except FiscalFailed as exc:
        # Refused before anything was made (no paper, cover open, FN...): nothing charged.
        return _finish(order, Status.FAILED, "register_not_ready", detail=str(exc))
    except (FiscalError, DeviceBusy) as exc:
        return defer(order, f"чек: {exc}")
    if order.step == Step.CARD:
        return True  # the receipt's answer and the order's next step were one commit (_receipt_made)
    assert op is not None  # every way out of the loop above has one
    op = FiscalOperation.objects.select_related("document__shift").get(pk=op.pk)  # may just have been resolved
    if op.state == FiscalOperation.State.FAILED:
        return _finish(order, Status.FAILED, "register_not_ready", detail=op.error_message)
    with transaction.atomic():
        _receipt_made(order, op)
    return True


def _receipt_made(order: Order, op: FiscalOperation) -> None:
    """The sell receipt is made: on to the card. Written in the commit that records the receipt's answer when the
    receipt was printed now (``RegisterSession.perform(then=...)``), or after an earlier one is found done."""
    # The card step's status is set here too: the kiosk says "insert card" from now on.
    document = getattr(op, "document", None)
    update_order(order, step=Step.CARD, status=Status.AWAITING_CARD, shift=document and document.shift)
    if has_marks(order):
        checkout_marks.mark_sold(order)
    order_event(order, "order.receipt.done", f"Чек прихода ФД {op.fd_number}"
                + (" (записан в ФН, не напечатан: нет бумаги)" if op.not_printed else ""))


# A sell task that ended with these is proven not made and may be made again under a new uuid: it never
# left (the process died before sending), or the register refused it because the shift expired or closed
# between our shift check and the sell (error 68 / 73: the register's clock passed ``expiredTime``).
_SHIFT_REFUSALS = ("shift_expired", "shift_closed")
_PRINT_AGAIN_KINDS = {NEVER_SENT, *_SHIFT_REFUSALS}


def _print_again(op: FiscalOperation) -> bool:
    return op.state == FiscalOperation.State.FAILED and op.error_kind in _PRINT_AGAIN_KINDS


def _refused_for_shift(exc: FiscalFailed) -> bool:
    """The register refused the task because the shift expired or closed under it: nothing was made, and the
    next shift check asks the register (its last task ended in an error), so the task may be sent again."""
    return getattr(exc.cause, "kind", "") in _SHIFT_REFUSALS


def _print_receipt(order: Order, session) -> FiscalOperation | None:
    """Make sure the shift is open (an expired one is settled and closed first), then, if the guest's window
    is still open (None if not), send the order's sell task under a new uuid saved before the call. A shift
    that expires under the sell comes back as a FAILED operation of kind ``shift_expired`` (nothing was
    made) for the caller to print again."""
    shift = ensure_open(session, before_close=settle_before_close, trust=True)  # asks the register when in doubt
    if guest_window_closed(order):
        return None
    if has_marks(order):  # no query for an order without marked goods
        checkout_marks.revalidate(order, session, shift)  # a validation counts only in its own shift
    task = sell_task(order)
    with transaction.atomic():  # one commit: the task (its uuid, marked sent) and the order's link to it
        op = session.create(task, reference=f"order:{order.pk}:sell", sent=True)
        # the uuid is saved before the receipt is sent; the kiosk says "printing the receipt" from now on
        update_order(order, sell_operation=op, status=Status.PRINTING_RECEIPT)
    try:
        return session.perform(op, then=lambda done: _receipt_made(order, done))  # the row as just recorded
    except FiscalFailed as exc:
        if not _refused_for_shift(exc):
            raise
        log.warning("order=%s kiosk=%s the shift expired under the sell (%s): settle, close, open, print again",
                    order.pk, order.kiosk.code, exc)
        order_event(order, "order.receipt.shift_expired",
                    "смена истекла под чеком: закрываем, открываем, печатаем снова")
    op.refresh_from_db()
    return op


def _card(order: Order) -> bool:
    if order.card_sale_id is None and guest_window_closed(order):
        return _guest_left(order)
    if order.status != Status.AWAITING_CARD:
        update_order(order, status=Status.AWAITING_CARD)
    try:
        # The terminal's row is freed with the sale lock's (one statement), or before the annulment's register lock.
        with terminal_session(order.kiosk, purpose=f"оплата заказа {order.number}", release_later=True) as session:
            op = order.card_sale
            if op is not None and _refused_busy(op):
                op = None  # that sale never ran (terminal busy): a new one, now that nothing earlier is left
            if op is None and guest_window_closed(order):
                # Checked again under the terminal's lock: waiting for it, or resolving what an earlier
                # process left on the terminal, may have taken the rest of the guest's window.
                return _guest_left(order)
            if op is None:
                with transaction.atomic():  # one commit: the operation (our op id) and the order's link to it
                    op = session.create(CardOperation.Kind.SALE, rubles_to_kopecks(order.total),
                                        reference=f"order:{order.pk}", shift=order.shift)
                    update_order(order, card_sale=op)  # our op id is saved before the terminal is called
                session.perform(op, order_number=order.number, then=lambda done: _card_answered(order, done))
    except TerminalNotConfigured as exc:
        update_order(order, step=Step.ANNUL, error_code="terminal_not_configured", error_message=str(exc))
        return True
    except TerminalUnresolved as exc:
        return _card_unresolved(order, exc)
    except (TerminalError, DeviceBusy) as exc:
        return defer(order, f"оплата: {exc}")
    if order.step == Step.IIKO:
        return True  # approved: the card's answer and the order's next step were one commit (_card_answered)
    op.refresh_from_db()
    if _refused_busy(op):
        # Nothing ran: the terminal is busy with an earlier operation of ours (a worker that died while the
        # guest was at the PIN pad). No annulment; the next pass resolves that one first, then pays.
        return defer(order, f"оплата: терминал занят ({op.message})")
    if op.state == CardOperation.State.APPROVED:
        if _approved_after_window(order, op):
            return _finish(order, Status.NEEDS_ATTENTION, "paid_after_guest_left",
                           detail=f"оплата (RRN {op.rrn}) подтвердилась после окна гостя: передать в iiko или вернуть")
        with transaction.atomic():
            _paid(order, op)
        return True
    if op.state in (CardOperation.State.DECLINED, CardOperation.State.REVERSED):
        with transaction.atomic():
            update_order(order, step=Step.ANNUL, error_code="card_declined", error_message=op.message or op.resolution)
            order_event(order, "order.card.declined", op.message or op.get_state_display())
        return True
    # Unknown: the next pass enters the terminal session again, which resolves it first.
    return True


def _card_answered(order: Order, op: CardOperation) -> None:
    """In the commit that records the sale's own answer: approved in its own exchange (the guest at the PIN pad),
    the order goes on to iiko at once. Anything else is decided after the terminal session (``_card``)."""
    if op.state == CardOperation.State.APPROVED and not _approved_after_window(order, op):
        _paid(order, op)


def _paid(order: Order, op: CardOperation) -> None:
    update_order(order, step=Step.IIKO, status=Status.SENDING_TO_IIKO)
    order_event(order, "order.card.approved", f"Оплата одобрена, RRN {op.rrn}")


def _refused_busy(op: CardOperation) -> bool:
    return op.kind == CardOperation.Kind.SALE and op.state == CardOperation.State.DECLINED and op.reason == "busy"


def _card_unresolved(order: Order, exc: TerminalUnresolved) -> bool:
    """The terminal is blocked by an operation of unknown outcome. When it is this order's own sale, the order
    waits for the terminal or a manager (needs_attention, step still CARD): never annulled while the money
    may be taken. Recovery keeps trying (payments.terminal), and so does the order's own retry."""
    sale = order.card_sale
    if sale is not None:
        sale.refresh_from_db()
    if sale is not None and sale.unresolved:
        with transaction.atomic():
            if order.error_code != "card_unresolved":
                order_event(order, "order.card.unresolved", f"исход оплаты неизвестен, терминал заблокирован: {exc}")
            update_order(order, status=Status.NEEDS_ATTENTION, error_code="card_unresolved",
                         error_message=GUEST_MESSAGES["card_unresolved"])
    return defer(order, f"оплата: {exc}")


def _guest_left(order: Order) -> bool:
    """The card step comes too late (register blocked, worker killed, queue backlog, a close carrying the
    order on): the guest is not charged; the printed receipt is annulled and the order ends ``guest_timeout``."""
    with transaction.atomic():
        update_order(order, step=Step.ANNUL, error_code="guest_timeout",
                     error_message=GUEST_MESSAGES["guest_timeout"])
        order_event(order, "order.guest_timeout",
                    "окно гостя истекло до оплаты: чек аннулируется, карта не списывается")
    return True


def _approved_after_window(order: Order, op: CardOperation) -> bool:
    """An unknown sale that turned out approved only after the guest's window (by a status query, a later
    recovery or a manager) is not sent to the kitchen by itself: nobody may be there to take the food.
    A sale approved in its own exchange had the guest at the PIN pad, however late it ended."""
    resolved_later = bool(op.resolution) or op.resolved_by_id is not None
    return resolved_later and (op.finished_at or timezone.now()) > guest_window_end(order)


def _annul(order: Order) -> bool:
    try:
        with register_session(order.kiosk, purpose=f"аннулирование чека {order.number}") as session:
            op = order.annul_operation
            for _ in range(2):  # once more only when the register refused it for an expired or closed shift
                if op is not None and op.state != FiscalOperation.State.FAILED:
                    break
                op = _send_annulment(order, session)
            assert op is not None  # the first pass makes one when there was none
            if op.state == FiscalOperation.State.FAILED:  # refused twice for the shift: wait like any refusal
                raise FiscalFailed(op.error_message, op)
    except FiscalFailed as exc:
        # The register cannot print now (paper, cover...): nothing was made; retried when it is ready.
        update_order(order, status=Status.NEEDS_ATTENTION)
        return defer(order, f"аннулирование ждёт ККТ: {exc}", code="annulment_pending")
    except (FiscalError, DeviceBusy) as exc:
        return defer(order, f"аннулирование: {exc}")
    op.refresh_from_db()
    order_event(order, "order.receipt.annulled", f"Чек возврата прихода ФД {op.fd_number}")
    return _finish(order, Status.CANCELLED, order.error_code or "card_declined")


def _send_annulment(order: Order, session) -> FiscalOperation:
    """The annulment under a new uuid saved before the call, after a shift check. The shift is trusted from our
    row; if the register's clock says otherwise (error 68 / 73: nothing was made), the failed task is returned
    and the next check asks the register (its last task ended in an error), so the annulment lands in the new
    shift (DESIGN: an annulment pushed into the next shift is paired by the reconciliation)."""
    ensure_open(session, before_close=settle_before_close, trust=True)
    checkout_marks.validate_return(order, session)  # recorded, never blocks
    with transaction.atomic():
        op = session.create(annul_task(order), reference=f"order:{order.pk}:annul")
        update_order(order, annul_operation=op)
    try:
        session.perform(op)
    except FiscalFailed as exc:
        if not _refused_for_shift(exc):
            raise
        order_event(order, "order.annul.shift_expired",
                    "смена истекла под аннулированием: закрываем, открываем, повторяем")
    op.refresh_from_db()
    return op


def guest_window_closed(order: Order) -> bool:
    """The guest's window (``CHECKOUT_GUEST_WINDOW`` after the order's POST) is over: the guest may have
    walked away, so no card payment may start any more (DESIGN.md: an order that is late is annulled)."""
    return timezone.now() > guest_window_end(order)


def guest_window_end(order: Order):
    return order.created_at + timedelta(seconds=settings.CHECKOUT_GUEST_WINDOW)


def _finish(order: Order, status: str, code: str = "", detail: str = "", message: str = "") -> bool:
    message = message or GUEST_MESSAGES.get(code, "")
    with transaction.atomic():
        update_order(order, step=Step.DONE, status=status, error_code=code, error_message=message, retry_at=None)
        report_summary.order_settled(order)  # the report's kept figures of its day (made before this hour)
        if status in (Status.FAILED, Status.CANCELLED):
            # No sale stands (none was made, or it was annulled): the order's marking codes are free again.
            checkout_marks.release(order)
        order_event(order, f"order.{status}", detail or message or status)
    return False


def finish_between_receipt_and_payment(kiosk) -> str:
    """The first step of a shift's close (``nekassir.shift_closing``). The close holds the kiosk's sale lock, so no
    checkout runs now: an order whose receipt is (or may be) printed but whose payment or annulment is
    not done (its worker died, or it waits for the terminal) is carried on here, so that its receipt and
    its payment land in the same shift. Says what still waits."""
    for order_id in _between_receipt_and_payment(kiosk).values_list("pk", flat=True):
        run_checkout(str(order_id))  # the sale lock is re-entrant: the close's own thread holds it
    waiting = list(_between_receipt_and_payment(kiosk).values_list("number", flat=True)[:5])
    return f"заказ ждёт оплаты или аннулирования чека: {', '.join(waiting)}" if waiting else ""


def _between_receipt_and_payment(kiosk):
    started_receipt = Q(step=Step.SELL, sell_operation__isnull=False)
    return (Order.objects.filter(kiosk=kiosk).filter(started_receipt | Q(step__in=[Step.CARD, Step.ANNUL]))
            .exclude(sell_operation__state=FiscalOperation.State.FAILED))


def resume_due_orders(limit: int = 100, *, stale_after: float | None = None, everything: bool = False) -> int:
    """Recovery: queue every unfinished order whose retry time has come, or that nobody has moved for
    ``stale_after`` seconds (its process died: kill -9, power loss; or its job was never queued).
    ``everything``: every unfinished order, whatever its retry time (the device cluster is starting).

    Each order is claimed by a compare-and-set on ``retry_at``, so two recoveries running at once
    queue it once; a duplicate run would be harmless anyway (the sale lock and the saved ids).
    """
    now = timezone.now()
    stale_after = settings.CHECKOUT_STALE_AFTER if stale_after is None else stale_after
    forgotten = Q(retry_at__isnull=True, updated_at__lte=now - timedelta(seconds=stale_after))
    due = Order.objects.exclude(step=Step.DONE)
    if not everything:
        due = due.filter(Q(retry_at__lte=now) | forgotten)
    queued = 0
    for order_id, retry_at in due.values_list("pk", "retry_at")[:limit]:
        claim = Order.objects.filter(pk=order_id, retry_at=retry_at) if retry_at else Order.objects.filter(
            pk=order_id, retry_at__isnull=True)
        if claim.update(retry_at=now + timedelta(seconds=settings.CHECKOUT_RETRY_MAX)):
            start_checkout(order_id)
            queued += 1
    return queued
