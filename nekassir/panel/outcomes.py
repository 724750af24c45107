"""What a finished job made, for the manager to see at once: the closing report and the settlement
slip after a close, the register's counters after an X report, the slip after a settlement, the register's
state after a check."""

from __future__ import annotations

from typing import Any

from fiscal.models import FiscalDocument, Shift
from nekassir.panel.jobs import KIOSK_KINDS, JobState
from nekassir.panel.reconciliation import money, reconcile_shift, register_totals
from nekassir.panel.venue import kiosk_blocks, with_refunds
from payments.models import Settlement


def closing_report(shift: Shift) -> dict[str, Any]:
    """The shift-closing report (FD, FPD, receipts count, the register's totals) and its reconciliation."""
    document = FiscalDocument.objects.filter(shift=shift, doc_type=FiscalDocument.Type.CLOSE_SHIFT).first()
    return {
        "shift": shift,
        "document": document,
        "totals": register_totals(shift.register_totals),
        "reconciliation": reconcile_shift(shift),
    }


# The register's payment types (ATOL's getShiftTotals), in the manager's words, in the order shown.
PAYMENT_TYPES = {"electronically": "безналичными", "cash": "наличными", "prepaid": "предоплата (аванс)",
                 "credit": "постоплата (кредит)", "other": "иная форма оплаты"}


def x_report_figures(raw: dict[str, Any] | None, shift: Shift | None) -> dict[str, Any]:
    """The X report's figures from ``getShiftTotals`` read right after it: receipts, income, returns and net
    (``Totals``, as the closing report), and by payment type (those with anything in them)."""
    counters = (raw or {}).get("shiftTotals") or {}
    receipts = counters.get("receipts") or {}
    sells = (receipts.get("sell") or {}).get("payments") or {}
    returns = (receipts.get("sellReturn") or {}).get("payments") or {}
    payments = []
    for kind in [*PAYMENT_TYPES, *sorted((set(sells) | set(returns)) - set(PAYMENT_TYPES))]:
        sold, back = money(sells.get(kind)), money(returns.get(kind))
        if sold or back:
            payments.append({"kind": kind, "label": PAYMENT_TYPES.get(kind, kind), "sells": sold, "returns": back,
                             "net": sold - back})
    count: Any = counters.get("receiptsCount")
    return {
        "shift": shift,
        "totals": register_totals({"shift_totals": raw}),
        "receipts_count": int(count) if count not in (None, "") else None,
        "payments": payments,
    }


def outcome(state: JobState, scope) -> dict[str, Any]:
    data = state.data
    result: dict[str, Any] = {}
    # What the page shows around the job is refreshed with it (htmx out-of-band swap).
    if state.kind in KIOSK_KINDS and state.start.kiosk_id:
        blocks = kiosk_blocks(scope.kiosks().filter(pk=state.start.kiosk_id), scope)
        result["block"] = blocks[0] if blocks else None
    elif state.start.object_ref.startswith("order:"):
        result["order"] = with_refunds(scope.orders()).filter(pk=state.start.object_ref.removeprefix("order:")).first()
    shift = Shift.objects.select_related("kiosk").filter(pk=data["shift_id"]).first() if data.get(
        "shift_id") else None
    result["shift"] = shift
    if state.kind == "shift_close" and shift is not None and not shift.is_open:
        result["closing"] = closing_report(shift)
        result["settlement"] = (Settlement.objects.filter(shift=shift).select_related("operation")
                                .order_by("-id").first())
    if state.kind == "xreport" and state.ok:
        result["xreport"] = x_report_figures(data.get("totals"), shift)
    if state.kind == "settle" and data.get("settlement_id"):
        result["settlement"] = Settlement.objects.select_related("operation").filter(pk=data["settlement_id"]).first()
    if state.kind == "check":
        result["check"] = data
    if state.kind == "connection":
        result["connection"] = data.get("devices") or []
    return result
