"""What the kiosk sees of an order: ``order_status_json`` (schema: ``schemas.OrderStatusOut``)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from nekassir.models import Order


def _receipt(order: Order) -> dict[str, Any] | None:
    """``{fd, fpd, receipt_number, shift, date, qr}`` of the sell receipt, once the checkout has one."""
    return None


def _card(order: Order) -> dict[str, Any] | None:
    """``{masked_pan, rrn}`` of the approved card sale, once there is one."""
    return None


def _iiko(order: Order) -> dict[str, Any] | None:
    """``{number, state}`` of the order in iiko, once it was sent."""
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
        "card": _card(order),
        "iiko": _iiko(order),
        "error": _error(order),
    }
