"""Sending a paid order to iiko: attempts with their own ids, checked before the next, then not_delivered.

PROTOCOLS.md §3: there is no idempotency header, so every attempt has its own iiko order id, saved
(with the request) before the call. On any doubt about an attempt, ``order/by_id`` for that id is
asked first: if iiko has it and it is not in error, the order was delivered and nothing is re-sent.
After a creation error (typically "Creation timeout expired": iikoFront did not pick it up) the next
attempt uses a new id. When every attempt failed the order is ``not_delivered``: paid and fiscalized,
staff must see it at once (the panel shows it and can resend).

No twin orders (issue 11 item 8). A new id is used only once iiko has said that the previous one is
not an order: it answered ``creationStatus: Error`` (at once or through ``by_id``), or refused the
first send outright (4xx: nothing was done). ``by_id`` not showing an id proves nothing, since a busy
iiko shows a new order only later. So an attempt whose answer was lost (no correlationId came back: a
timeout, a dropped connection, a 5xx, a worker killed during the call) and that ``by_id`` does not
show is sent again with the **same** id and the same request: if the first send arrived, iiko refuses
the second as a duplicate ("it arrived": we follow it with ``by_id``); if not, the second creates it.
Each attempt is sent at most ``IIKO_MAX_ATTEMPTS`` times per run; every answer (the duplicate refusal
too) is kept in the attempt's ``responses``.

An order that iiko has (a correlationId or a duplicate refusal came back) but does not show within our
patience (``IIKO_CREATE_WAIT``) stays in doubt: the attempt says so in its error text, the order is
deferred and followed again by recovery with backoff, and after ``CHECKOUT_ATTENTION_AFTER`` deferrals
it is ``needs_attention`` (still followed). It is never ``not_delivered`` and never re-sent under a new
id: the kitchen has it, and a second id would make a second order. Once iiko shows it, the order
completes by itself; a support engineer who sees it waiting can look the id up in iikoOffice.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import wirejson
from core.events import record_event
from core.locks import DeviceBusy, device_lock
from iiko.client import IikoClient, IikoError, IikoHTTPError, build_order, is_duplicate_refusal
from iiko.connection import IikoNotConfigured, shared_iiko_client
from nekassir import report_summary
from nekassir.iiko_messages import explain
from nekassir.models import IikoAttempt, Order
from nekassir.order_steps import GUEST_MESSAGES, defer
from nekassir.receipts import order_lines

log = logging.getLogger(__name__)
Attempt = IikoAttempt.State
IN_DOUBT = (Attempt.PENDING, Attempt.SENT, Attempt.UNKNOWN)
# What one send of ``order/create`` told us (``_send``).
ACCEPTED = "accepted"  # answered with a correlationId: iiko is creating it
FAILED = "failed"  # not an order: creationStatus Error, or the first send refused before anything was done
ARRIVED = "arrived"  # a resend refused as a duplicate: the first send did reach iiko
LOST = "lost"  # no answer (timeout, dropped connection, 5xx): it may or may not have arrived
REFUSED = "refused"  # a resend refused (or not sent) for another reason: the first send stays in doubt
ABSENT = "absent"  # by_id does not show the id: not proof that it is not in iiko
INVISIBLE = ("iiko получил заказ, но пока не показывает его: ждём и проверяем снова; под новым id "
             "не отправляем, иначе на кухне будет два заказа")


def deliver(order: Order, *, just_paid: bool = False) -> str:
    """Deliver ``order`` to iiko (or find that an earlier attempt already did). Returns the status.

    ``just_paid``: the caller moved ``order`` (read with ``kiosk__iiko``) to IIKO a moment ago, under the sale lock.
    When the order's iiko lock row is then made by this claim, nobody has ever delivered it or tried to: the order
    is as the caller left it and has no attempt, so neither is read again."""
    try:
        # A key per order, mostly taken for the first time: its row is inserted held (one statement).
        with device_lock(f"iiko:order:{order.pk}", purpose=f"iiko {order.number}", wait=0, new_key=True) as first:
            untouched = just_paid and first
            if not untouched:
                order.refresh_from_db(from_queryset=Order.objects.select_related("kiosk__iiko"))
            if order.step != Order.Step.IIKO:
                return order.status
            return _deliver(order, no_attempts=untouched)
    except DeviceBusy:
        # Another worker is delivering it right now; look again later in case that worker dies.
        return _defer(order)


def _deliver(order: Order, *, no_attempts: bool = False) -> str:
    try:
        client = shared_iiko_client(order.kiosk)
    except IikoNotConfigured as exc:
        return _not_delivered(order, str(exc))
    # An order just paid has none (``deliver``'s ``just_paid``): not even this one query.
    rounds = [] if no_attempts else list(order.iiko_attempts.values_list("round", flat=True))
    if rounds:  # nothing to follow up otherwise
        for attempt in order.iiko_attempts.filter(state__in=IN_DOUBT).order_by("id"):
            _settle(client, order, attempt, sends=0)  # iiko may still be creating it, or never got it
        if order.iiko_attempts.filter(state=Attempt.SUCCESS).exists():
            return _completed(order)
        doubt = order.iiko_attempts.filter(state__in=IN_DOUBT).order_by("-id").first()
        if doubt is not None:
            # iiko cannot tell yet whether an earlier attempt exists: a new one could make a twin.
            return _defer(order, doubt)
    # A resend from the panel starts anew. Counted here: nobody else adds attempts while the order's lock is held.
    done = rounds.count(order.iiko_round)
    while done < settings.IIKO_MAX_ATTEMPTS:
        if done:
            _pause(done)
        attempt = _new_attempt(order)
        done += 1
        outcome = _attempt(client, order, attempt)
        if outcome is True:
            return _completed(order)
        if outcome is None:
            return _defer(order, attempt)
    last = order.iiko_attempts.order_by("-id").first()
    return _not_delivered(order, last.error_message if last else "")


def _pause(done: int) -> None:
    delays = settings.IIKO_RETRY_DELAYS or [0.0]
    time.sleep(delays[min(done - 1, len(delays) - 1)])


def _new_attempt(order: Order) -> IikoAttempt:
    """A new attempt with its own id and request, saved (and marked sent) before any call."""
    kiosk = order.kiosk
    iiko_id = str(uuid.uuid4())
    # One row, saved already marked sent, before the call (one commit: each waits for the disk).
    return IikoAttempt.objects.create(
        order=order, iiko_order_id=iiko_id, as_delivery=kiosk.iiko_send_as_delivery,
        request=order_body(order, iiko_id), round=order.iiko_round, state=Attempt.SENT, sent_at=timezone.now(),
    )


def _attempt(client: IikoClient, order: Order, attempt: IikoAttempt) -> bool | None:
    """The first send of a new attempt: True delivered, False not created, None in doubt."""
    if _send(client, order, attempt, again=False) == FAILED:
        return False
    return _settle(client, order, attempt, sends=1)


def _settle(client: IikoClient, order: Order, attempt: IikoAttempt, sends: int) -> bool | None:
    """Follow an attempt until iiko says what it is; an id iiko does not show and whose answer was lost
    is sent again, same id, at most ``IIKO_MAX_ATTEMPTS`` sends in this run (``sends`` done already).

    True delivered, False confirmed not created (a new id may follow), None still in doubt.
    """
    while True:
        outcome = _follow(client, order, attempt)
        if outcome is not ABSENT:
            return cast(bool | None, outcome)  # the one string _follow returns is ABSENT
        if _arrived(attempt):  # iiko has it but does not show it yet: wait, never a new id
            _record(attempt, Attempt.UNKNOWN, error=INVISIBLE)
            return None
        if sends >= settings.IIKO_MAX_ATTEMPTS:
            return None  # every answer lost: followed again later, same id
        if sends:
            _pause(sends)
        sends += 1
        sent = _send(client, order, attempt, again=True)
        if sent == FAILED:
            return False
        if sent == REFUSED:
            return None


def _send(client: IikoClient, order: Order, attempt: IikoAttempt, *, again: bool) -> str:
    """One ``order/create`` (or ``deliveries/create``) of the attempt's saved request, its own id.

    ``again``: a resend after a lost answer, so a refusal other than "duplicate" says nothing about
    the first send and leaves the attempt in doubt.
    """
    kiosk = order.kiosk
    create = client.create_delivery if attempt.as_delivery else client.create_order
    try:
        result = create(str(kiosk.iiko_organization_id), str(kiosk.iiko_terminal_group_id), attempt.request)
    except IikoError as exc:
        return _send_failed(attempt, exc, again)
    _record(attempt, Attempt.SENT, answer=result.raw, correlation_id=result.correlation_id)
    if result.creation_status == "Error":
        _record(attempt, Attempt.ERROR, error=_error_text(result.error_info))
        return FAILED
    return ACCEPTED


def _send_failed(attempt: IikoAttempt, exc: IikoError, again: bool) -> str:
    answer = _error_answer(exc)
    if isinstance(exc, IikoHTTPError) and exc.duplicate_order:
        log.warning("iiko attempt %s: a resend was refused as a duplicate, so it arrived", attempt.iiko_order_id)
        _record(attempt, Attempt.UNKNOWN, answer=answer, error=INVISIBLE)
        return ARRIVED
    if exc.outcome_unknown:
        _record(attempt, Attempt.UNKNOWN, answer=answer, error=str(exc))
        return LOST
    if again:
        _record(attempt, Attempt.UNKNOWN, answer=answer, error=str(exc))
        return REFUSED
    _record(attempt, Attempt.ERROR, answer=answer, error=str(exc))
    return FAILED


def _error_answer(exc: IikoError) -> dict[str, Any] | None:
    """iiko's error answer as it came (``{correlationId, errorDescription, error}``), to keep it."""
    if not isinstance(exc, IikoHTTPError) or not exc.body:
        return None
    try:
        body = json.loads(exc.body)
    except ValueError:
        return {"httpStatus": exc.status, "text": exc.body[:2000]}
    return body if isinstance(body, dict) else {"httpStatus": exc.status, "text": exc.body[:2000]}


def _arrived(attempt: IikoAttempt) -> bool:
    """iiko got this id: it answered the create with a correlationId, or refused a resend as a duplicate."""
    return bool(attempt.correlation_id) or any(
        isinstance(r, dict) and is_duplicate_refusal(r.get("error"), r.get("errorDescription"))
        for r in attempt.responses
    )


def _follow(client: IikoClient, order: Order, attempt: IikoAttempt) -> bool | str | None:
    """Wait (bounded) for iiko to finish creating the order: it answers InProgress first.

    ABSENT at once for an id iiko never acknowledged (the caller sends it again); for one it did,
    ABSENT only once our patience ran out.
    """
    deadline = time.monotonic() + settings.IIKO_CREATE_WAIT
    while True:
        outcome = _check(client, order, attempt)
        if outcome is True or outcome is False:
            return outcome
        if outcome is ABSENT and not _arrived(attempt):
            return ABSENT
        if time.monotonic() >= deadline:
            return outcome
        time.sleep(settings.IIKO_POLL_INTERVAL)


def _check(client: IikoClient, order: Order, attempt: IikoAttempt) -> bool | str | None:
    """``by_id`` for one attempt: True delivered, False not created, ABSENT not shown, None still in doubt."""
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
        # Not shown: never sent, lost on the way, or not shown yet by a busy iiko. Not "not created".
        return ABSENT
    if info.creation_status == "Success":
        with transaction.atomic():  # one commit: iiko's answer and the order it completes
            _record(attempt, Attempt.SUCCESS, answer=info.raw, number=str(info.number or ""), iiko_status=info.status)
            _completed(order, attempt)
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


def _completed(order: Order, success: IikoAttempt | None = None) -> str:
    """The order delivered (by ``success``, else its last successful attempt): completed with the number iiko gave
    it, once (a later call finds it done)."""
    if order.step == Order.Step.DONE:
        return order.status
    success = success or order.iiko_attempts.filter(state=Attempt.SUCCESS).order_by("-id").first()
    values = {"step": Order.Step.DONE, "status": Order.Status.COMPLETED, "error_code": "", "error_message": "",
              "iiko_number": success.iiko_number if success else "",
              "iiko_state": success.iiko_status if success else "", "retry_at": None, "updated_at": timezone.now()}
    with transaction.atomic(savepoint=False):  # inside the answer's commit (``_check``) no savepoint of its own
        Order.objects.filter(pk=order.pk).update(**values)
        report_summary.order_settled(order)  # the report's kept figures of its day (made before this hour)
        record_event("order.completed", kiosk=order.kiosk, object_ref=f"order:{order.pk}",
                     message=f"{order.number}: передан в iiko")
    for name, value in values.items():
        setattr(order, name, value)
    return order.status


def _defer(order: Order, attempt: IikoAttempt | None = None) -> str:
    invisible = attempt is not None and attempt.error_message == INVISIBLE
    defer(order, f"iiko: {INVISIBLE if invisible else 'исход попытки ещё неизвестен'}")
    return order.status


def _not_delivered(order: Order, reason: str) -> str:
    Order.objects.filter(pk=order.pk).update(
        step=Order.Step.DONE, status=Order.Status.NOT_DELIVERED, error_code="not_delivered",
        error_message=GUEST_MESSAGES["not_delivered"], retry_at=None, updated_at=timezone.now(),
    )
    # the journal in the manager's Russian; iiko's own words kept in the event's data for support
    record_event("order.not_delivered", kiosk=order.kiosk, object_ref=f"order:{order.pk}",
                 message=f"{order.number}: не передан в iiko ({explain(reason) or 'причина неизвестна'})",
                 data={"iiko_error": reason[:2000]} if reason else None)
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
        for line in order_lines(order)  # read once per checkout: the receipt had them
    ]
    return build_order(
        iiko_id, order.number, str(order_type or ""), items, str(kiosk.iiko_payment_type_id or ""), order.total,
        phone=order.phone or None,
    )
