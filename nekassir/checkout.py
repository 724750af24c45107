"""The kiosk card checkout as a resumable state machine (issue 4). Being written."""

from __future__ import annotations

from django_q.tasks import async_task


def start_checkout(order_id) -> None:
    """Queue the checkout of a new order on the device cluster (call it in transaction.on_commit)."""
    async_task("nekassir.checkout.run_checkout", str(order_id), cluster="devices", task_name=f"checkout {order_id}")


def run_checkout(order_id: str) -> None:
    """Placeholder until the state machine lands: leaves the order in ``received``."""
