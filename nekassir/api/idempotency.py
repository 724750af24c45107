"""Idempotency of ``POST /orders`` by the kiosk's order id.

The same id with the same body (as a JSON value: key order and whitespace do not matter) replays
the order; the same id with any other body, or from another kiosk, is a 409, decided before the
body is validated at all, so a kiosk never gets "fixed" data confused with its first order.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from decimal import Decimal
from typing import Any

from core.models import Kiosk
from nekassir.api.errors import ApiError
from nekassir.models import Order

CONFLICT_MESSAGE = "Заказ с этим id уже принят с другим содержимым."


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, ASCII escapes; a JSON number keeps the digits it was sent with."""
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{json.dumps(key)}:{canonical_json(item)}" for key, item in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(item) for item in value) + "]"
    if isinstance(value, Decimal):
        return str(value)  # a number, distinct from the string "189.00"
    return json.dumps(value)  # str, int, bool, None


def body_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


def order_id_of(body: dict[str, Any]) -> uuid.UUID | None:
    """The body's ``id`` if it reads as a UUID (validation says what is wrong otherwise)."""
    value = body.get("id")
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def replayed_order(kiosk: Kiosk, body: dict[str, Any], digest: str) -> Order | None:
    """The order this body repeats, None when the id is new, ApiError 409 when it conflicts."""
    order_id = order_id_of(body)
    if order_id is None:
        return None
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        return None
    if order.kiosk_id != kiosk.pk or order.body_hash != digest:
        raise ApiError(409, "idempotency_conflict", CONFLICT_MESSAGE)
    return order
