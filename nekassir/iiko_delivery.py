"""Sending a paid order to iiko: attempts with their own ids, checked before the next, then not_delivered.

PROTOCOLS.md §3: there is no idempotency header, so every attempt has its own iiko order id, saved
(with the request) before the call. On any doubt about an attempt, ``order/by_id`` for that id is
asked first: if iiko has it and it is not in error, the order was delivered and nothing is re-sent.
After a creation error (typically "Creation timeout expired": iikoFront did not pick it up) the next
attempt uses a new id. When every attempt failed the order is ``not_delivered``: paid and fiscalized,
staff must see it at once (the panel shows it and can resend).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from nekassir import wirejson
from nekassir.events import record_event
from nekassir.iiko_client import IikoClient, IikoError, build_order
from nekassir.locks import DeviceBusy, device_lock
from nekassir.models import IikoAttempt, IikoConnection, Kiosk, Order

log = logging.getLogger(__name__)
Attempt = IikoAttempt.State
IN_DOUBT = (Attempt.PENDING, Attempt.SENT, Attempt.UNKNOWN)


class IikoNotConfigured(Exception):
    pass


def _connection(kiosk: Kiosk) -> IikoConnection:
    connection = kiosk.iiko
    if connection is None or not kiosk.iiko_organization_id or not kiosk.iiko_terminal_group_id:
        raise IikoNotConfigured(f"{kiosk.code}: подключение к iiko не настроено")
    return connection


def make_iiko_client(kiosk: Kiosk) -> IikoClient:
    connection = _connection(kiosk)
    return IikoClient(
        base_url=connection.base_url, api_login=connection.api_login or None, app_id=connection.app_id or None,
        client_secret=connection.client_secret or None, api_key=connection.api_key or None,
        timeout=settings.IIKO_HTTP_TIMEOUT,
    )


# One client per iiko account, kept by each process between orders: its token (lives 1 h; the client
# renews it after 50 min or on a 401) and its keep-alive connection are reused, instead of one token
# request and one TLS handshake to iiko Cloud per order. That keeps the contract: a pooled connection
# that iiko closed is either dropped before anything is sent (httpcore checks it) or fails as a lost
# answer, which is already an attempt in doubt, checked by its id before anything else.
_shared_clients: dict[tuple, IikoClient] = {}
_shared_pid = 0
_shared_lock = threading.Lock()


def shared_iiko_client(kiosk: Kiosk) -> IikoClient:
    """``make_iiko_client`` kept for reuse (thread-safe; never close it). Raises IikoNotConfigured."""
    global _shared_pid
    connection = _connection(kiosk)
    key = (connection.base_url, connection.api_login, connection.app_id, connection.client_secret,
           connection.api_key, settings.IIKO_HTTP_TIMEOUT)
    with _shared_lock:
        if _shared_pid != os.getpid():  # a forked worker must not use its parent's sockets
            _shared_clients.clear()
            _shared_pid = os.getpid()
        client = _shared_clients.get(key)
        if client is None:
            client = make_iiko_client(kiosk)
            if len(_shared_clients) >= 8:
                # Credentials edited in the admin leave old entries: dropped, not closed (a thread may
                # still be using one; its sockets close when it is collected).
                _shared_clients.clear()
            _shared_clients[key] = client
    return client


def deliver(order: Order) -> str:
    """Deliver ``order`` to iiko (or find that an earlier attempt already did). Returns the status."""
    try:
        with device_lock(f"iiko:order:{order.pk}", purpose=f"iiko {order.number}", wait=0):
            order.refresh_from_db(from_queryset=Order.objects.select_related("kiosk__iiko"))
            if order.step != Order.Step.IIKO:
                return order.status
            return _deliver(order)
    except DeviceBusy:
        # Another worker is delivering it right now; look again later in case that worker dies.
        return _defer(order)


def _deliver(order: Order) -> str:
    try:
        client = shared_iiko_client(order.kiosk)
    except IikoNotConfigured as exc:
        return _not_delivered(order, str(exc))
    if order.iiko_attempts.exists():  # an order just paid has none: nothing to follow up (one query, not three)
        for attempt in order.iiko_attempts.filter(state__in=IN_DOUBT):
            _follow(client, order, attempt)  # iiko may still be creating it: wait (bounded) for its answer
        if order.iiko_attempts.filter(state=Attempt.SUCCESS).exists():
            return _completed(order)
        if order.iiko_attempts.filter(state__in=IN_DOUBT).exists():
            # iiko cannot tell yet whether an earlier attempt exists: a new one could make a twin.
            return _defer(order)
    this_round = order.iiko_attempts.filter(round=order.iiko_round)  # a resend from the panel starts anew
    while (done := this_round.count()) < settings.IIKO_MAX_ATTEMPTS:
        if done:
            delays = settings.IIKO_RETRY_DELAYS or [0.0]
            time.sleep(delays[min(done - 1, len(delays) - 1)])
        outcome = _attempt(client, order)
        if outcome is True:
            return _completed(order)
        if outcome is None:
            return _defer(order)
    last = order.iiko_attempts.order_by("-id").first()
    return _not_delivered(order, last.error_message if last else "")


def _attempt(client: IikoClient, order: Order) -> bool | None:
    """One attempt with its own id: True delivered, False not created, None in doubt."""
    kiosk = order.kiosk
    iiko_id = str(uuid.uuid4())
    body = order_body(order, iiko_id)
    with transaction.atomic():  # one commit (each is a disk flush): saved, then marked sent, before the call
        attempt = IikoAttempt.objects.create(
            order=order, iiko_order_id=iiko_id, as_delivery=kiosk.iiko_send_as_delivery, request=body,
            round=order.iiko_round,
        )  # saved before the call, with its own id
        _record(attempt, Attempt.SENT)
    try:
        create = client.create_delivery if kiosk.iiko_send_as_delivery else client.create_order
        result = create(str(kiosk.iiko_organization_id), str(kiosk.iiko_terminal_group_id), body)
    except IikoError as exc:
        if not exc.outcome_unknown:
            _record(attempt, Attempt.ERROR, error=str(exc))
            return False
        _record(attempt, Attempt.UNKNOWN, error=str(exc))
        return _check(client, order, attempt)
    _record(attempt, Attempt.SENT, answer=result.raw, correlation_id=result.correlation_id)
    if result.creation_status == "Error":
        _record(attempt, Attempt.ERROR, error=_error_text(result.error_info))
        return False
    return _follow(client, order, attempt)


def _follow(client: IikoClient, order: Order, attempt: IikoAttempt) -> bool | None:
    """Wait (bounded) for iiko to finish creating the order: it answers InProgress first."""
    deadline = time.monotonic() + settings.IIKO_CREATE_WAIT
    while True:
        outcome = _check(client, order, attempt)
        if outcome is not None or time.monotonic() >= deadline:
            return outcome
        time.sleep(settings.IIKO_POLL_INTERVAL)


def _check(client: IikoClient, order: Order, attempt: IikoAttempt) -> bool | None:
    """``by_id`` for one attempt: True delivered, False not created, None still in doubt."""
    kiosk = order.kiosk
    try:
        if attempt.as_delivery:
            found = client.deliveries_by_id(str(kiosk.iiko_organization_id), [attempt.iiko_order_id])
        else:
            found = client.orders_by_id([str(kiosk.iiko_organization_id)], [attempt.iiko_order_id])
    except IikoError as exc:
        log.warning("order=%s iiko by_id failed: %s", order.pk, exc)
        _record(attempt, Attempt.UNKNOWN, error=str(exc))
        return None
    info = next((o for o in found if o.id == attempt.iiko_order_id), None)
    if info is None:
        # iiko has no order with this id: it was never created (or never sent).
        _record(attempt, Attempt.ERROR, error=attempt.error_message or "iiko не знает заказ с этим id")
        return False
    if info.creation_status == "Success":
        _record(attempt, Attempt.SUCCESS, answer=info.raw, number=str(info.number or ""), iiko_status=info.status)
        return True
    if info.creation_status == "Error":
        _record(attempt, Attempt.ERROR, answer=info.raw, error=_error_text(info.error_info))
        return False
    return None


def _record(attempt: IikoAttempt, state: str, *, answer: dict[str, Any] | None = None, error: str = "",
            correlation_id: str = "", number: str = "", iiko_status: str | None = None) -> None:
    values: dict[str, Any] = {"state": state}
    if state == Attempt.SENT and attempt.sent_at is None:
        values["sent_at"] = timezone.now()
    if answer is not None:
        values["responses"] = [*attempt.responses, wirejson.plain(answer)]
    if error:
        values["error_message"] = error[:2000]
    if correlation_id:
        values["correlation_id"] = correlation_id
    if number:
        values["iiko_number"] = number
    if iiko_status:
        values["iiko_status"] = iiko_status
    if state in (Attempt.SUCCESS, Attempt.ERROR):
        values["finished_at"] = timezone.now()
    IikoAttempt.objects.filter(pk=attempt.pk).update(**values)
    for name, value in values.items():
        setattr(attempt, name, value)


def _error_text(error_info: Any) -> str:
    if error_info is None:
        return "iiko: ошибка создания заказа"
    return f"iiko: {getattr(error_info, 'code', '')} {getattr(error_info, 'message', '') or ''}".strip()


def _completed(order: Order) -> str:
    success = order.iiko_attempts.filter(state=Attempt.SUCCESS).order_by("-id").first()
    with transaction.atomic():
        Order.objects.filter(pk=order.pk).update(
            step=Order.Step.DONE, status=Order.Status.COMPLETED, iiko_number=success.iiko_number if success else "",
            iiko_state=success.iiko_status if success else "", error_code="", error_message="", retry_at=None,
            updated_at=timezone.now(),
        )
        record_event("order.completed", kiosk=order.kiosk, object_ref=f"order:{order.pk}",
                     message=f"{order.number}: передан в iiko")
    order.refresh_from_db()
    return order.status


def _defer(order: Order) -> str:
    from nekassir.checkout import defer

    defer(order, "iiko: исход попытки ещё неизвестен")
    return order.status


def _not_delivered(order: Order, reason: str) -> str:
    from nekassir.checkout import GUEST_MESSAGES

    Order.objects.filter(pk=order.pk).update(
        step=Order.Step.DONE, status=Order.Status.NOT_DELIVERED, error_code="not_delivered",
        error_message=GUEST_MESSAGES["not_delivered"], retry_at=None, updated_at=timezone.now(),
    )
    record_event("order.not_delivered", kiosk=order.kiosk, object_ref=f"order:{order.pk}",
                 message=f"{order.number}: не передан в iiko ({reason})")
    order.refresh_from_db()
    return order.status


def order_body(order: Order, iiko_id: str) -> dict[str, Any]:
    """The ``order`` object for iiko from our order lines (prices as the guest paid them)."""
    kiosk = order.kiosk
    order_type = {
        "takeaway": kiosk.iiko_order_type_takeaway_id,
        "dine_in": kiosk.iiko_order_type_dine_in_id,
    }.get(order.order_type)
    if kiosk.iiko_send_as_delivery:
        order_type = kiosk.iiko_order_type_pickup_id or order_type
    items = [
        {
            "product_id": str(line.product_id),
            "size_id": str(line.size_id) if line.size_id else None,
            "amount": line.quantity,
            "price": line.price,
            "modifiers": [
                {"product_id": str(m.product_id), "group_id": str(m.group_id) if m.group_id else None,
                 "amount": m.quantity, "price": m.price}
                for m in line.modifiers.all()
            ],
        }
        for line in order.lines.all().prefetch_related("modifiers").order_by("position")
    ]
    return build_order(
        iiko_id, order.number, str(order_type or ""), items, str(kiosk.iiko_payment_type_id or ""), order.total,
        phone=order.phone or None,
    )
