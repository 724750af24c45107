"""ATOL receipt tasks for an order: the sell receipt, and the sellReturn that annuls it.

There is no "cancel receipt" on ATOL: a closed sell is annulled by a sellReturn with the same items,
taxes and payment type (PROTOCOLS.md §1). Names are the order's ``receipt_name`` (fitted to FFD 1.2);
priced modifiers are positions of their own. Every receipt carries the kiosk's requisites of an
automatic device (machine number, address and place of settlement; ``fiscal.requisites`` reads them from the
register). Money stays Decimal and goes out as exact literals.

Marked goods (issue 13, PROTOCOLS.md §4): each unit of a marked line is its own position of quantity 1 with its
code (``imcParams``: base64 of the exact scanned bytes, the register validation's five flags) and, on the sell
when the check service answered, the permissive mode's requisites (``industryInfo``); a return carries the same
codes with ``itemPieceReturn``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings

from core.gs1 import imc_base64
from fiscal import requisites
from marking.models import MarkingCheck
from nekassir.models import Order, OrderLine, OrderMark, OrderModifier, to_kopecks

_QUANTITY_PLACES = Decimal("0.000001")  # FFD 1.2 allows six decimals of quantity
SOLD = "itemPieceSold"
RETURNED = "itemPieceReturn"


def sell_task(order: Order) -> dict[str, Any]:
    return receipt_task(order, "sell", positions(order, SOLD), order.total)


def annul_task(order: Order) -> dict[str, Any]:
    """The sellReturn of exactly what the sell receipt had (marked units with ``itemPieceReturn``)."""
    return receipt_task(order, "sellReturn", positions(order, RETURNED), order.total)


def positions(order: Order, status: str = SOLD) -> list[dict[str, Any]]:
    """The order's positions; a marked line's units one by one, their codes in the planned ``status``."""
    industry = industry_info(order.marking_check) if status == SOLD else None
    items: list[dict[str, Any]] = []
    marked = has_marks(order)
    for line in order_lines(order, marks=marked):
        marks = sorted(line.marks.all(), key=lambda mark: mark.unit) if marked else []
        if marks:
            items.extend(mark_position(line, mark, status, industry) for mark in marks)
        else:
            items.append(line_position(line, line.quantity, line.amount))
        items.extend(
            modifier_position(modifier, line.quantity, modifier.amount)
            for modifier in line.modifiers.all()
            if modifier.price > 0  # a free modifier ("без сахара") is for the kitchen, not the receipt
        )
    return items


def has_marks(order: Order) -> bool:
    """Whether the order may have marked units, without a query: marks are made only from the codes of the kiosk's
    POST (``request_body``), and such an order passes the MARKS step, which sets ``marking_mode``."""
    if order.marking_mode:
        return True
    lines = (order.request_body or {}).get("lines") if isinstance(order.request_body, dict) else None
    return not isinstance(lines, list) or any(not isinstance(line, dict) or line.get("marking_codes")
                                              for line in lines)


def order_lines(order: Order, *, marks: bool = False) -> list[OrderLine]:
    """The order's lines by position with their modifiers; without marks read once per order object (a line and
    its modifiers never change after the POST: the receipt and the iiko request of one checkout read the same).
    With ``marks`` read every time: a mark's validation results change (a return validated before an annulment)."""
    if marks:
        return list(order.lines.all().prefetch_related("modifiers", "marks").order_by("position"))
    lines: list[OrderLine] | None = order.__dict__.get("_lines_with_modifiers")
    if lines is None:
        lines = list(order.lines.all().prefetch_related("modifiers").order_by("position"))
        order.__dict__["_lines_with_modifiers"] = lines
    return lines


def line_position(line: OrderLine, quantity: Decimal, amount: Decimal) -> dict[str, Any]:
    return _position(line.receipt_name, line.price, quantity, amount, line.vat, line.unit)


def mark_position(line: OrderLine, mark: OrderMark, status: str,
                  industry: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """One marked unit: quantity 1 at the line's price, its code as scanned (base64 of the exact bytes) in the
    planned ``status``, with the five flags of its validation (the return's for a return, when it was made)."""
    item = _position(line.receipt_name, line.price, Decimal(1), to_kopecks(line.price), line.vat, line.unit)
    item["paymentObject"] = "commodityWithMarking"
    imc: dict[str, Any] = {"imc": imc_base64(mark.code), "imcType": "auto", "itemEstimatedStatus": status,
                           "imcModeProcessing": 0}
    validation = (mark.return_result if status == RETURNED else None) or mark.register_result or {}
    flags = validation.get("item_info_check_result")
    if flags:
        imc["itemInfoCheckResult"] = flags
    item["imcParams"] = imc
    if industry:
        item["industryInfo"] = industry
    return item


def industry_info(check: MarkingCheck | None) -> list[dict[str, str]] | None:
    """The permissive mode's requisites (tags 1262-1265) when the check service answered the order's check."""
    attribute = check.industry_attribute if check is not None else ""
    if not attribute:
        return None
    return [{"fois": settings.MARKING_FOIS, "date": settings.MARKING_DOC_DATE, "number": settings.MARKING_DOC_NUMBER,
             "industryAttribute": attribute}]


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
