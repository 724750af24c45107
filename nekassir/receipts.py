"""ATOL receipt tasks for an order: the sell receipt, and the sellReturn that annuls it.

There is no "cancel receipt" on ATOL: a closed sell is annulled by a sellReturn with the same items,
taxes and payment type (PROTOCOLS.md §1). Names are the order's ``receipt_name`` (fitted to FFD 1.2);
priced modifiers are positions of their own. Every receipt carries the kiosk's requisites of an
automatic device (machine number, address and place of settlement; ``fiscal.requisites`` reads them from the
register). Money stays Decimal and goes out as exact literals.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fiscal import requisites
from nekassir.models import Order, OrderLine, OrderModifier

_QUANTITY_PLACES = Decimal("0.000001")  # FFD 1.2 allows six decimals of quantity


def sell_task(order: Order) -> dict[str, Any]:
    return receipt_task(order, "sell", positions(order), order.total)


def annul_task(order: Order) -> dict[str, Any]:
    """The sellReturn of exactly what the sell receipt had."""
    return receipt_task(order, "sellReturn", positions(order), order.total)


def positions(order: Order) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for line in order.lines.all().prefetch_related("modifiers").order_by("position"):
        items.append(line_position(line, line.quantity, line.amount))
        items.extend(
            modifier_position(modifier, line.quantity, modifier.amount)
            for modifier in line.modifiers.all()
            if modifier.price > 0  # a free modifier ("без сахара") is for the kitchen, not the receipt
        )
    return items


def line_position(line: OrderLine, quantity: Decimal, amount: Decimal) -> dict[str, Any]:
    return _position(line.receipt_name, line.price, quantity, amount, line.vat, line.unit)


def modifier_position(modifier: OrderModifier, line_quantity: Decimal, amount: Decimal) -> dict[str, Any]:
    quantity = (modifier.quantity * line_quantity).quantize(_QUANTITY_PLACES).normalize()
    return _position(modifier.receipt_name, modifier.price, quantity, amount, modifier.vat, "piece")


def _position(name: str, price: Decimal, quantity: Decimal, amount: Decimal, vat: str, unit: str) -> dict[str, Any]:
    return {
        "type": "position",
        "name": name,
        "price": price,
        "quantity": quantity,
        "amount": amount,
        "tax": {"type": vat},
        "paymentMethod": "fullPayment",
        "paymentObject": "commodity",
        "measurementUnit": unit,
    }


def receipt_task(order: Order, kind: str, items: list[dict[str, Any]], total: Decimal) -> dict[str, Any]:
    """The one place a receipt task is built (sell, annulment, refund): taxation, requisites of an automatic
    device, positions, payment."""
    kiosk = order.kiosk
    task: dict[str, Any] = {
        "type": kind,
        "taxationType": kiosk.taxation_type,
        **requisites.receipt_fields(kiosk),
        "items": items,
        "payments": [{"type": "electronically", "sum": total}],
        "total": total,
    }
    if kiosk.atol_operator:
        task["operator"] = kiosk.atol_operator
    if order.email_or_phone:
        task["clientInfo"] = {"emailOrPhone": order.email_or_phone}
    return task
