"""Saving a validated kiosk order in one transaction and queueing its checkout on commit."""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction

from core.models import Kiosk
from nekassir import checkout
from nekassir.api.idempotency import replayed_order
from nekassir.api.marking import has_marks, save_marks
from nekassir.api.schemas import LineIn, OrderIn
from nekassir.models import Order, OrderLine, OrderModifier
from nekassir.numbers import next_pickup_number
from nekassir.receipt_names import receipt_name

log = logging.getLogger(__name__)


def _lines(order: Order, lines: list[LineIn]) -> list[OrderLine]:
    return [
        OrderLine(
            order=order, position=position, product_id=line.product_id, size_id=line.size_id,
            name=line.name, receipt_name=receipt_name(line.name), price=line.price,
            quantity=line.quantity, unit=line.unit, vat=line.vat, amount=line.amount,
        )
        for position, line in enumerate(lines, start=1)
    ]


def _modifiers(rows: list[OrderLine], lines: list[LineIn]) -> list[OrderModifier]:
    return [
        OrderModifier(
            line=row, position=position, product_id=modifier.product_id, group_id=modifier.group_id,
            name=modifier.name, receipt_name=receipt_name(modifier.name), price=modifier.price,
            quantity=modifier.quantity, vat=modifier.vat or line.vat, amount=modifier.amount(line.quantity),
        )
        for row, line in zip(rows, lines, strict=True)
        for position, modifier in enumerate(line.modifiers, start=1)
    ]


def _insert(kiosk: Kiosk, data: OrderIn, body: dict[str, Any], digest: str) -> Order:
    business_date, seq, number = next_pickup_number(kiosk)
    # An order with marked goods starts with the check of its codes (issue 13); any other at the receipt.
    step = Order.Step.MARKS if has_marks(data.lines) else Order.Step.SELL
    order = Order.objects.create(
        id=data.id, kiosk=kiosk, number=number, business_date=business_date, seq=seq,
        order_type=data.order_type, payment=data.payment, phone=data.phone or "",
        email_or_phone=data.email_or_phone or "", total=data.total, request_body=body, body_hash=digest,
        step=step,
    )
    rows = OrderLine.objects.bulk_create(_lines(order, data.lines))
    OrderModifier.objects.bulk_create(_modifiers(rows, data.lines))
    save_marks(order, rows, data.lines)  # 422 marking_code_in_use when another order took a code meanwhile
    return order


def _queue_checkout(order_id) -> None:
    checkout.start_checkout(order_id)


def create_order(kiosk: Kiosk, data: OrderIn, body: dict[str, Any], digest: str) -> tuple[Order, bool]:
    """``(order, created)``. A concurrent POST of the same id that won the race is replayed (or 409)."""
    try:
        with transaction.atomic():
            order = _insert(kiosk, data, body, digest)
            # robust: the order is saved whatever the queue says; recovery picks up a `received`
            # order whose job never started, and the kiosk gets its 201 either way.
            transaction.on_commit(lambda: _queue_checkout(order.pk), robust=True)
    except IntegrityError:
        existing = replayed_order(kiosk, body, digest)
        if existing is None:
            raise
        return existing, False
    log.info("order %s (%s) received from kiosk %s", order.number, order.pk, kiosk.code)
    return order, True
