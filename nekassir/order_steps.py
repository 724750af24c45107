"""An order's step bookkeeping, shared by its steps: the checkout (receipt, card, annulment) and the delivery to
iiko (``nekassir.iiko_delivery``). What the guest reads by error code, writing the order's fields as a step
moves, deferring an order to recovery with backoff, and the order's journal events."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from core.events import record_event
from nekassir.models import Order

log = logging.getLogger(__name__)

# What the guest reads on the kiosk, by error code.
GUEST_MESSAGES = {
    "register_not_ready": "Касса не готова. Оплата не списана, обратитесь к сотруднику.",
    "card_declined": "Оплата не прошла. Деньги не списаны, чек аннулирован.",
    "terminal_not_configured": "Оплата картой сейчас недоступна. Деньги не списаны.",
    "annulment_pending": "Оплата не прошла. Деньги не списаны; чек будет аннулирован автоматически.",
    "not_delivered": "Заказ оплачен, но не передан на кухню. Сотрудник уже видит его и поможет.",
    "outcome_unknown": "Проверяем результат операции, подождите.",
    "card_unresolved": "Не удалось узнать результат оплаты. Обратитесь к сотруднику: если деньги списаны, "
                       "заказ будет выдан или деньги вернутся.",
    "guest_timeout": "Время оплаты истекло. Деньги не списаны, заказ отменён.",
    "paid_after_guest_left": "Оплата прошла позже, чем гость ждал у киоска. Сотрудник передаст заказ на кухню "
                             "или вернёт деньги.",
    # Marked goods (issue 13). marking_rejected names the item in the order's own message (nekassir.checkout_marks);
    # this is the text when none could be named.
    "marking_rejected": "Код маркировки товара не прошёл проверку. Деньги не списаны, обратитесь к сотруднику.",
    "marking_unavailable": "Проверка кодов маркировки сейчас недоступна. Деньги не списаны, заказ не оплачен: "
                           "обратитесь к сотруднику.",
}


def update_order(order: Order, **values) -> None:
    """Write the given fields now (each step is persisted before and after its device call).

    Writes that belong together (a new operation and the order's link to it, a step and its journal
    event) are grouped in one ``transaction.atomic()`` by the callers: each commit waits for the
    database's disk flush (~1 ms), and a checkout made some thirty of them.
    """
    values["updated_at"] = timezone.now()
    Order.objects.filter(pk=order.pk).update(**values)
    for name, value in values.items():
        setattr(order, name, value)


def defer(order: Order, reason: str, code: str = "") -> bool:
    """The order waits (unknown outcome, busy or not-ready device); recovery runs it again later."""
    attempts = order.checkout_attempts + 1
    delay = min(settings.CHECKOUT_RETRY_MAX, settings.CHECKOUT_RETRY_BASE * 2 ** min(attempts, 10))
    values = {"checkout_attempts": attempts, "retry_at": timezone.now() + timedelta(seconds=delay)}
    if code:
        values.update(error_code=code, error_message=GUEST_MESSAGES.get(code, ""))
    if attempts >= settings.CHECKOUT_ATTENTION_AFTER and order.status != Order.Status.NEEDS_ATTENTION:
        # Still retried, but staff must look: a device has not answered for a while.
        values["status"] = Order.Status.NEEDS_ATTENTION
        order_event(order, "order.needs_attention", f"отложен {attempts} раз: {reason}")
    update_order(order, **values)
    log.warning("order=%s kiosk=%s deferred (%s), retry in %ss", order.pk, order.kiosk.code, reason, delay)
    return False


def order_event(order: Order, action: str, message: str) -> None:
    record_event(action, kiosk=order.kiosk, object_ref=f"order:{order.pk}", message=f"{order.number}: {message}")
