"""The floor: the least any checkout can take, the project's own wire clients called directly.

The same sequence as the checkout (sell receipt → card sale → iiko create, then waiting for iiko to
create it), the same payloads (built by the project's own builders from a real order), the same
client settings (poll intervals, timeouts) — and nothing else: no web request, no queue, no database
write, no lock, no shift check. A client is made once and reused, as a minimal script would.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction

from core.models import Kiosk


@dataclass
class FloorOrder:
    number: str
    total: Decimal
    sell_task: dict[str, Any]
    iiko_body: dict[str, Any]


def build_floor_order(kiosk: Kiosk, body: dict[str, Any]) -> FloorOrder:
    """The receipt and iiko payloads the checkout would send for ``body``: built from an order saved
    through the API's own code inside a transaction that is rolled back (nothing stays, nothing queued)."""
    from nekassir.api.idempotency import body_hash
    from nekassir.api.orders import create_order
    from nekassir.api.validation import validate_order
    from nekassir.iiko_delivery import order_body
    from nekassir.receipts import sell_task

    with transaction.atomic():
        order, _ = create_order(kiosk, validate_order(body, kiosk), body, body_hash(body))
        built = FloorOrder(order.number, order.total, sell_task(order), order_body(order, "0" * 36))
        transaction.set_rollback(True)
    return built


class Floor:
    """One kiosk's devices driven directly: ``run(order)`` is one checkout at the floor."""

    def __init__(self, kiosk: Kiosk):
        from fiscal.register import make_client
        from iiko.connection import make_iiko_client
        from payments.terminal import make_acquirer

        self.kiosk = kiosk
        self.atol = make_client(kiosk)
        self.acquirer = make_acquirer(kiosk)
        self.iiko = make_iiko_client(kiosk)
        self.org = str(kiosk.iiko_organization_id)
        self.group = str(kiosk.iiko_terminal_group_id)

    def run(self, order: FloorOrder) -> None:
        from payments.acquiring import rubles_to_kopecks

        outcome = self.atol.execute(str(uuid.uuid4()), [order.sell_task])
        outcome.raise_for_error()
        card = self.acquirer.sale(str(uuid.uuid4()), rubles_to_kopecks(order.total), order.number)
        if card.outcome.value != "approved":
            raise RuntimeError(f"floor: card not approved: {card.outcome} {card.message}")
        iiko_id = str(uuid.uuid4())
        body = {**order.iiko_body, "id": iiko_id}
        created = self.iiko.create_order(self.org, self.group, body)
        if created.creation_status == "Error":
            raise RuntimeError(f"floor: iiko refused the order: {created.error_info}")
        # As the checkout does: ask by id at once, then every IIKO_POLL_INTERVAL until created.
        deadline = time.monotonic() + settings.IIKO_CREATE_WAIT
        while True:
            found = self.iiko.orders_by_id([self.org], [iiko_id])
            status = next((o.creation_status for o in found if o.id == iiko_id), None)
            if status == "Success":
                return
            if status == "Error" or time.monotonic() >= deadline:
                raise RuntimeError(f"floor: iiko order not created ({status})")
            time.sleep(settings.IIKO_POLL_INTERVAL)

    def close(self) -> None:
        self.atol.close()
        self.iiko.close()
