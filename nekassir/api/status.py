"""What the kiosk sees of an order: ``order_status_json`` (schema: ``schemas.OrderStatusOut``)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from nekassir.models import Order


def _receipt(order: Order) -> dict[str, Any] | None:
    """``{fd, fpd, receipt_number, shift, date, qr}`` of the sell receipt, once the checkout has one."""
    op = order.sell_operation
    document = getattr(op, "document", None) if op is not None else None
    if document is None:
        return None
    return {
        "fd": document.fd_number,
        "fpd": document.fpd,
        "receipt_number": document.receipt_number or 0,
        "shift": document.shift_number or 0,
        "date": timezone.localtime(document.registered_at).isoformat() if document.registered_at else "",
        "qr": document.qr,
    }


def _not_printed(order: Order) -> bool:
    """The sell receipt is in the FN but its paper copy is not printed (no paper): the kiosk shows it on
    screen (its fiscal attributes and FNS QR string are in ``receipt``); ``continuePrint`` prints it later."""
    op = order.sell_operation
    document = getattr(op, "document", None) if op is not None else None
    return bool(document is not None and not document.printed)


def _card(order: Order) -> dict[str, Any] | None:
    """``{masked_pan, rrn}`` of the approved card sale, once there is one."""
    sale = order.card_sale
    if sale is None or sale.state != "approved":
        return None
    return {"masked_pan": sale.masked_pan, "rrn": sale.rrn}


def _iiko(order: Order) -> dict[str, Any] | None:
    """``{number, state}`` of the order in iiko, once it was sent."""
    if order.iiko_number or order.iiko_state:
        return {"number": order.iiko_number or None, "state": order.iiko_state or "Success"}
    if order.status == Order.Status.NOT_DELIVERED:
        return {"number": None, "state": "NotDelivered"}
    return None


def _error(order: Order) -> dict[str, str] | None:
    if not order.error_code:
        return None
    return {"code": order.error_code, "message": order.error_message}


def order_status_json(order: Order) -> dict[str, Any]:
    """The order for the kiosk, JSON-ready. The checkout fills ``receipt``, ``card``, ``iiko``:
    extend the helpers above (and ``OrderStatusOut``, which the answers are checked against)."""
    return {
        "id": str(order.pk),
        "number": order.number,
        "status": order.status,
        "total": f"{order.total:.2f}",
        "created_at": timezone.localtime(order.created_at).isoformat(),
        "receipt": _receipt(order),
        "receipt_not_printed": _not_printed(order),
        "card": _card(order),
        "iiko": _iiko(order),
        "error": _error(order),
    }
