"""Refunds from the service menu: money back to the card, a sellReturn receipt of those lines, and
optionally the order cancelled in iiko (which has no refunds of its own: PROTOCOLS.md §3).

``request_refund`` saves the Refund, with its amount, under a per-order lock before anything is
sent; refunds in flight count against what can still be refunded. So a double click or two managers
at once can never refund twice or more than was paid. ``run_refund`` (a device job) is resumable
like the checkout: the card operation and the return receipt are each saved before their call.

Amounts of partial refunds telescope: refunding part of a line is priced as "the line's amount for
everything refunded so far, minus the same before this refund", so however a line is split up, the
parts add up to exactly what was paid for it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.events import record_event
from core.locks import DeviceBusy, device_lock, sale_lock_key
from core.models import Kiosk
from fiscal.models import FiscalOperation
from fiscal.register import FiscalError, FiscalFailed, RegisterSession, register_session
from fiscal.shifts import ensure_open, ensure_shift_open
from iiko.client import IikoError
from iiko.connection import IikoNotConfigured, make_iiko_client
from nekassir.broker import queue_task
from nekassir.checkout_marks import record_return_validation
from nekassir.models import Order, OrderLine, OrderMark, OrderModifier, Refund, to_kopecks
from nekassir.receipts import RETURNED, line_position, mark_position, modifier_position, receipt_task
from payments.acquiring import rubles_to_kopecks
from payments.models import CardOperation, Settlement
from payments.settlement import settle_before_close
from payments.terminal import TerminalError, terminal_session

log = logging.getLogger(__name__)
State = Refund.State


class RefundError(Exception):
    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


# --- how much, and of what ------------------------------------------------------------------------
def refunded_quantities(order: Order, *, exclude: Refund | None = None) -> dict[int, Decimal]:
    """Quantities per line already refunded to the card or being refunded now."""
    done: dict[int, Decimal] = defaultdict(Decimal)
    refunds = order.refunds.filter(state__in=Refund.ACTIVE, to_card=True)
    if exclude is not None:
        refunds = refunds.filter(id__lt=exclude.pk)
    for refund in refunds:
        for line_id, quantity in refund.lines.items():
            done[int(line_id)] += Decimal(quantity)
    return done


def refundable(order: Order) -> dict[int, Decimal]:
    """What can still be refunded, per OrderLine id."""
    done = refunded_quantities(order)
    return {line.pk: line.quantity - done[line.pk] for line in order.lines.all()}


# --- marked units (issue 13): a marked line goes back by the unit, its codes chosen by the manager ----------
# A unit may go back when it was sold and no refund holds it (a failed refund gave its units back).
FREE_FOR_REFUND = Q(state=OrderMark.State.SOLD) & (Q(refund__isnull=True) | Q(refund__state=Refund.State.FAILED))


def refundable_marks(order: Order) -> dict[int, list[OrderMark]]:
    """Per marked line (OrderLine id): its units that may still go back, in unit order."""
    free: dict[int, list[OrderMark]] = defaultdict(list)
    for mark in order.marks.filter(FREE_FOR_REFUND).order_by("line__position", "unit"):
        free[mark.line_id].append(mark)
    return free


def _line_label(line: OrderLine) -> str:
    return f"Позиция {line.position} «{line.receipt_name}»"


def _tie_marks(refund: Refund, cleaned: dict[int, Decimal], chosen: dict[int, list[int]]) -> None:
    """Tie the refunded units of each marked line to ``refund`` (inside its transaction, under the order's refund
    lock): the manager's choice, or the last units of the line for the quantity. The update only takes units
    still free, so two refunds can never take the same unit; a unit taken meanwhile refuses the refund."""
    lines = {line.pk: line for line in refund.order.lines.all()}
    marked = set(refund.order.marks.values_list("line_id", flat=True))
    free = refundable_marks(refund.order)
    for line_id, ids in chosen.items():
        if line_id not in lines:
            raise RefundError("Позиция не из этого заказа", "unknown_line")
        if ids and line_id not in cleaned:
            raise RefundError(f"{_line_label(lines[line_id])}: отмечены коды маркировки ({len(ids)} шт.), "
                              f"а количество к возврату не указано", "marks_mismatch")
    for line_id, quantity in cleaned.items():
        line = lines[line_id]
        if line_id not in marked:
            continue
        if quantity != quantity.to_integral_value():
            raise RefundError(f"{_line_label(line)}: маркированный товар возвращается поштучно", "bad_quantity")
        count = int(quantity)
        available = [mark.pk for mark in free.get(line_id, [])]
        if line_id in chosen:
            ids = list(dict.fromkeys(chosen[line_id]))
            if len(ids) != count:
                raise RefundError(f"{_line_label(line)}: отмечено кодов маркировки {len(ids)}, а к возврату "
                                  f"{count} шт. — отметьте столько кодов, сколько единиц возвращается",
                                  "marks_mismatch")
        else:  # the default: the last units of the line
            ids = available[len(available) - count:] if count <= len(available) else available
        if len(ids) != count or not set(ids) <= set(available):
            raise RefundError(f"{_line_label(line)}: код маркировки уже возвращён или возвращается другим "
                              f"возвратом — обновите страницу и выберите коды снова", "mark_taken")
        taken = OrderMark.objects.filter(FREE_FOR_REFUND, pk__in=ids, line_id=line_id).update(
            refund=refund, updated_at=timezone.now())
        if taken != count:
            raise RefundError(f"{_line_label(line)}: код маркировки уже возвращён или возвращается другим "
                              f"возвратом — обновите страницу и выберите коды снова", "mark_taken")


def _clean_marks(marks: dict[Any, Any] | None) -> dict[int, list[int]]:
    cleaned: dict[int, list[int]] = {}
    for raw_line, raw_ids in (marks or {}).items():
        try:
            cleaned[int(raw_line)] = [int(raw_id) for raw_id in raw_ids]
        except (TypeError, ValueError):
            raise RefundError("Неверный выбор кодов маркировки", "bad_marks") from None
    return cleaned


def _line_amount(line: OrderLine, quantity: Decimal) -> Decimal:
    return line.amount if quantity == line.quantity else OrderLine.amount_of(line.price, quantity)


def _modifier_amount(modifier: OrderModifier, line: OrderLine, quantity: Decimal) -> Decimal:
    if quantity == line.quantity:
        return modifier.amount
    return OrderModifier.amount_of(modifier.price, modifier.quantity, quantity)


def return_positions(refund: Refund) -> list[dict[str, Any]]:
    """The sellReturn positions of a refund: part amounts that telescope to what was paid."""
    before = refunded_quantities(refund.order, exclude=refund)
    items = []
    lines = {line.pk: line for line in refund.order.lines.prefetch_related("modifiers")}
    marks: dict[int, list[OrderMark]] = defaultdict(list)
    for mark in refund.marks.order_by("line__position", "unit") if refund.pk else []:
        marks[mark.line_id].append(mark)
    for line_id, raw in sorted(refund.lines.items(), key=lambda kv: lines[int(kv[0])].position):
        line, quantity = lines[int(line_id)], Decimal(raw)
        prior = before[line.pk]
        units = marks.get(line.pk)
        if units:  # a marked line goes back by the unit: one position per code, itemPieceReturn
            for done, mark in enumerate(units):
                item = mark_position(line, mark, RETURNED)
                item["amount"] = _line_amount(line, prior + done + 1) - _line_amount(line, prior + done)
                items.append(item)
        else:
            amount = _line_amount(line, prior + quantity) - _line_amount(line, prior)
            items.append(line_position(line, quantity, amount))
        for modifier in line.modifiers.all():
            if modifier.price > 0:
                part = _modifier_amount(modifier, line, prior + quantity) - _modifier_amount(modifier, line, prior)
                items.append(modifier_position(modifier, quantity, part))
    return items


# A line's quantity has at most 3 decimals (grams of a weighed product) and is far below this: anything
# bigger is a typo or an attack, refused before it is rounded (1e100 cannot be rounded to 0.001 at all).
MAX_QUANTITY = Decimal("99999.999")


def _quantity(raw: Any) -> Decimal:
    """A refund quantity parsed, range-checked and rounded in one place: a Decimal with 3 decimals, or
    RefundError (never a decimal exception: they would reach the manager as a 500)."""
    try:
        quantity = Decimal(str(raw).strip())
        if not quantity.is_finite() or not 0 <= quantity <= MAX_QUANTITY:
            raise RefundError("Неверное количество", "bad_quantity")
        rounded = quantity.quantize(Decimal("0.001"))
    except InvalidOperation:
        raise RefundError("Неверное количество", "bad_quantity") from None
    if rounded != quantity:
        raise RefundError("Неверное количество: не больше трёх знаков после запятой", "bad_quantity")
    return quantity


def _clean_quantities(order: Order, quantities: dict[Any, Any]) -> dict[int, Decimal]:
    remaining = refundable(order)
    cleaned: dict[int, Decimal] = {}
    for raw_id, raw_quantity in quantities.items():
        try:
            line_id = int(raw_id)
        except ValueError:
            raise RefundError("Неверное количество", "bad_quantity") from None
        quantity = _quantity(raw_quantity)
        if line_id not in remaining:
            raise RefundError("Позиция не из этого заказа", "unknown_line")
        if quantity > remaining[line_id]:
            raise RefundError("Нельзя вернуть больше, чем оплачено и ещё не возвращено", "above_paid")
        if quantity > 0:
            cleaned[line_id] = quantity
    return cleaned


def _paid(order: Order) -> CardOperation:
    sale = order.card_sale
    if sale is None or sale.state != CardOperation.State.APPROVED:
        raise RefundError("Заказ не оплачен картой: возвращать нечего", "not_paid")
    if sale.resolved_by_id and not sale.terminal_reference:
        # Approved by hand after a lost answer (nekassir.card_resolution): KKM Server cancels and refunds only
        # by the UniversalID that answer carried, so the terminal cannot be asked from here.
        raise RefundError(f"Оплата подтверждена вручную, а терминал возвращает деньги только по её UniversalID, "
                          f"которого у нас нет: верните деньги на самом терминале по RRN {sale.rrn or '—'} "
                          f"и оформите чек возврата через ККТ.", "no_terminal_reference")
    return sale


def refund_lock_key(order: Order) -> str:
    """Held while a refund of ``order`` is checked and saved (the panel holds it around its own checks)."""
    return f"refund:order:{order.pk}"


# --- the request --------------------------------------------------------------------------------
def request_refund(order: Order, quantities: dict[Any, Any], *, to_card: bool, cancel_in_iiko: bool,
                   user=None, marks: dict[Any, Any] | None = None) -> Refund:
    """Validate and save a refund, then queue it. Raises RefundError with a Russian message.

    ``marks``: for a marked line (OrderLine id), the ids of the OrderMark units going back, as many as its
    quantity; a marked line left out gives back its last units."""
    if not to_card and not cancel_in_iiko:
        raise RefundError("Выберите: вернуть деньги на карту и/или отменить заказ в iiko", "nothing_selected")
    try:
        with device_lock(refund_lock_key(order), purpose="возврат", wait=10):
            refund = _create(order, quantities, to_card=to_card, cancel_in_iiko=cancel_in_iiko, user=user,
                             marks=_clean_marks(marks))
    except DeviceBusy:
        raise RefundError("По заказу уже оформляется возврат, попробуйте ещё раз", "busy") from None
    transaction.on_commit(lambda: start_refund(refund.pk))
    return refund


def start_refund(refund_id: int) -> None:
    """Queue (again) the run of a saved refund on the device cluster; a run finds where the refund is."""
    queue_task("nekassir.refunds.run_refund", refund_id, cluster="devices", task_name=f"refund {refund_id}")


def _create(order: Order, quantities: dict[Any, Any], *, to_card: bool, cancel_in_iiko: bool, user,
            marks: dict[int, list[int]]) -> Refund:
    order.refresh_from_db()
    sale = _paid(order) if to_card else None
    cleaned = _clean_quantities(order, quantities) if to_card else {}
    if to_card and not cleaned:
        raise RefundError("Не выбрано ни одной позиции для возврата", "nothing_selected")
    with transaction.atomic():
        refund = Refund(order=order, kiosk=order.kiosk, lines={str(k): str(v) for k, v in cleaned.items()},
                        amount_kopecks=0, to_card=to_card, cancel_in_iiko=cancel_in_iiko, created_by=user)
        refund.save()
        if to_card:
            _tie_marks(refund, cleaned, marks)
            assert sale is not None  # _paid gave it (or refused the refund)
            amount = sum((p["amount"] for p in return_positions(refund)), Decimal("0"))
            already = sum(r.amount_kopecks for r in order.refunds.filter(state__in=Refund.ACTIVE, to_card=True)
                          .exclude(pk=refund.pk))
            kopecks = rubles_to_kopecks(to_kopecks(amount))
            if kopecks <= 0 or already + kopecks > sale.amount_kopecks:
                raise RefundError("Сумма возврата больше оплаченной", "above_paid")
            Refund.objects.filter(pk=refund.pk).update(amount_kopecks=kopecks)
            refund.amount_kopecks = kopecks
        record_event("order.refund.requested", kiosk=order.kiosk, user=user, object_ref=f"order:{order.pk}",
                     message=f"{order.number}: возврат {refund.amount} ₽", data={"refund_id": refund.pk})
    return refund


# --- the job ------------------------------------------------------------------------------------
def run_refund(refund_id: int) -> str:
    """Carry the refund out (or on): card, then the return receipt, then iiko. Safe to run again."""
    # One run per refund at a time: a job delivered twice, or recovery re-queueing a refund still
    # running, must not ask the terminal for the money twice.
    try:
        with device_lock(f"refund:run:{refund_id}", purpose="возврат", wait=0):
            return _run_refund(Refund.objects.select_related("order", "kiosk").get(pk=refund_id))
    except DeviceBusy:
        return Refund.objects.get(pk=refund_id).state


def _run_refund(refund: Refund) -> str:
    if refund.state in (State.DONE, State.FAILED):
        return refund.state
    _set(refund, state=State.IN_PROGRESS)
    if refund.to_card and not _money_and_receipt(refund):
        return refund.state
    if refund.cancel_in_iiko:
        _iiko_step(refund)
    _set(refund, state=State.DONE, finished_at=timezone.now())
    record_event("order.refund.done", kiosk=refund.kiosk, user=refund.created_by,
                 object_ref=f"order:{refund.order_id}", message=f"{refund.order.number}: возврат выполнен")
    return refund.state


def _money_and_receipt(refund: Refund) -> bool:
    """Card return, then its sellReturn, under the kiosk's sale lock: a shift close waits for both, so
    the return receipt lands in the shift of the card return (reconciliation compares the two)."""
    kiosk = refund.kiosk
    try:
        with device_lock(sale_lock_key(kiosk), purpose=f"возврат {refund.order.number}", wait=settings.SALE_LOCK_WAIT):
            op = refund.card_operation
            if op is None or op.state != CardOperation.State.APPROVED:
                # The card return belongs to the shift its return receipt lands in: open it first (a
                # refund may come after the close), and give no money back while the register can't work.
                ensure_shift_open(kiosk, before_close=settle_before_close)
            return _card_step(refund) and _receipt_step(refund)
    except DeviceBusy as exc:
        _set(refund, message=f"Киоск занят: {exc}")
        return False  # resumed by recovery
    except FiscalError as exc:
        _set(refund, message=f"ККТ не готова, деньги не возвращались: {exc}")
        return False  # resumed by recovery


def finish_return_receipts(kiosk: Kiosk) -> str:
    """A step of a shift's close (``nekassir.shift_closing``): before it, print the return receipts of
    refunds whose money went back (or may have); say what still waits."""
    for refund_id in _money_back_without_receipt(kiosk).values_list("pk", flat=True):
        run_refund(refund_id)
    waiting = [r.order.number for r in _money_back_without_receipt(kiosk).select_related("order")]
    return f"возврат ждёт чека возврата: {', '.join(waiting)}" if waiting else ""


def _money_back_without_receipt(kiosk: Kiosk):
    return (Refund.objects.filter(kiosk=kiosk, to_card=True, state__in=[State.IN_PROGRESS, State.NEEDS_ATTENTION],
                                  card_operation__isnull=False)
            .exclude(card_operation__state=CardOperation.State.DECLINED)
            .exclude(return_operation__state=FiscalOperation.State.DONE))


def _card_step(refund: Refund) -> bool:
    """Money back: a same-day cancel before the terminal's settlement, a refund after it."""
    for _ in range(2):  # a refused cancel (the batch was settled after all) falls back to a refund once
        op = refund.card_operation
        try:
            with terminal_session(refund.kiosk, purpose=f"возврат {refund.order.number}", wait=60) as session:
                if op is None or _retry_as_refund(op):
                    sale = refund.order.card_sale
                    assert sale is not None  # a refund to the card was created from the order's paid sale
                    settled = op is not None or _settled_since(sale)
                    kind = CardOperation.Kind.REFUND if settled else CardOperation.Kind.CANCEL
                    op = session.create(kind, refund.amount_kopecks, original=sale, reference=f"refund:{refund.pk}")
                    _set(refund, card_operation=op)
                    session.perform(op)
        except (TerminalError, DeviceBusy) as exc:
            _set(refund, message=f"Терминал: {exc}")
            return False  # resumed by recovery once the terminal is free / resolved
        op.refresh_from_db()
        if op.state == CardOperation.State.APPROVED:
            return True
        if not _retry_as_refund(op):
            break
    assert op is not None  # the loop ran and every way through it left an operation
    if op.unresolved:
        return False
    _set(refund, state=State.FAILED, message=f"Банк отказал: {op.message or op.get_state_display()}",
         finished_at=timezone.now())
    return False


def _retry_as_refund(op: CardOperation) -> bool:
    return op.kind == CardOperation.Kind.CANCEL and op.state == CardOperation.State.DECLINED


def _settled_since(sale: CardOperation) -> bool:
    return Settlement.objects.filter(kiosk=sale.kiosk, state=Settlement.State.OK,
                                     created_at__gt=sale.finished_at or sale.created_at).exists()


def _receipt_step(refund: Refund) -> bool:
    """The sellReturn of the refunded lines (the money went back, so the receipt must follow)."""
    try:
        with register_session(refund.kiosk, purpose=f"чек возврата {refund.order.number}") as session:
            op = refund.return_operation
            if op is None or op.state == FiscalOperation.State.FAILED:
                ensure_open(session, before_close=settle_before_close)
                _validate_return(refund, session)
                op = session.create(_return_task(refund), reference=f"refund:{refund.pk}")
                _set(refund, return_operation=op)
                session.perform(op)
    except FiscalFailed as exc:
        _set(refund, state=State.NEEDS_ATTENTION, message=f"Деньги возвращены, чек возврата ждёт ККТ: {exc}")
        return False
    except (FiscalError, DeviceBusy) as exc:
        _set(refund, message=f"Чек возврата: {exc}")
        return False
    receipt_id = refund.return_operation_id
    done = FiscalOperation.State.DONE
    if receipt_id is not None and FiscalOperation.objects.filter(pk=receipt_id, state=done).exists():
        # The codes went back to the marking operator with the receipt: they may be sold again.
        OrderMark.objects.filter(refund=refund, state=OrderMark.State.SOLD).update(
            state=OrderMark.State.RETURNED, updated_at=timezone.now())
    _reconcile_with_receipt(refund)
    return True


def _validate_return(refund: Refund, session: RegisterSession) -> None:
    """Before the return receipt: the refund's units validated with ``itemPieceReturn`` in this shift (the FN
    takes a code into a receipt only so). The result is recorded on each unit and never stops the refund: the
    money is back, and right after a sale the marking operator may not know the code was sold."""
    marks = list(refund.marks.order_by("line__position", "unit"))
    record_return_validation(session, marks, reference=f"refund:{refund.pk}:marks")


def _reconcile_with_receipt(refund: Refund) -> None:
    """The card return is reconciled in the shift of its return receipt. They differ only when the shift
    ran out (expired, or closed by force) between the two: the receipt could not go into a closed shift."""
    document = getattr(refund.return_operation, "document", None)
    card = refund.card_operation
    if document is None or card is None or document.shift_id in (None, card.shift_id):
        return
    log.warning("refund %s: card return in shift %s, its receipt in shift %s: reconciled with the receipt",
                refund.pk, card.shift_id, document.shift_id)
    CardOperation.objects.filter(pk=card.pk).update(shift=document.shift_id)
    card.shift_id = document.shift_id


def _return_task(refund: Refund) -> dict[str, Any]:
    items = return_positions(refund)
    total = sum((i["amount"] for i in items), Decimal("0"))
    return receipt_task(refund.order, "sellReturn", items, total)


def _iiko_step(refund: Refund) -> None:
    order = refund.order
    attempt = order.iiko_attempts.filter(state="success").order_by("-id").first()
    if attempt is None:
        _set(refund, iiko_state="заказа нет в iiko")
        return
    try:
        with make_iiko_client(refund.kiosk) as client:
            org = str(refund.kiosk.iiko_organization_id)
            if attempt.as_delivery:
                client.cancel_delivery(org, attempt.iiko_order_id)
            else:
                client.cancel_order(org, attempt.iiko_order_id, removal_comment=f"Возврат {order.number}")
    except (IikoError, IikoNotConfigured) as exc:
        _set(refund, iiko_state=f"ошибка: {exc}"[:64])
        return
    _set(refund, iiko_state="отменён")
    Order.objects.filter(pk=order.pk).update(iiko_state="Cancelled", updated_at=timezone.now())


def _set(refund: Refund, **values) -> None:
    Refund.objects.filter(pk=refund.pk).update(**values)
    for name, value in values.items():
        setattr(refund, name, value)


def resume_refunds() -> int:
    """Recovery: refunds left created / in progress / waiting for the register are run again."""
    count = 0
    stale = timezone.now() - timedelta(minutes=2)
    waiting = Refund.objects.filter(state__in=[State.CREATED, State.IN_PROGRESS, State.NEEDS_ATTENTION],
                                    created_at__lt=stale)
    for refund_id in waiting.values_list("pk", flat=True):
        start_refund(refund_id)
        count += 1
    return count
