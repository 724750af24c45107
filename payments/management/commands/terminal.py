"""python manage.py terminal <kiosk> check|settle|status (JSON on stdout, non-zero exit on failure)."""

from __future__ import annotations

from typing import Any

from core.locks import DeviceBusy
from core.management.jsoncommand import JsonCommand
from payments.models import CardOperation, Settlement
from payments.settlement import settle
from payments.terminal import TerminalError, check_terminal, current_shift


def card_operation_json(op: CardOperation | None) -> dict[str, Any] | None:
    if op is None:
        return None
    return {
        "op_id": op.op_id, "kind": op.kind, "state": op.state, "amount": op.amount, "rrn": op.rrn or None,
        "masked_pan": op.masked_pan or None, "message": op.message, "resolution": op.resolution or None,
        "created_at": op.created_at,
    }


class Command(JsonCommand):
    help = "Банковский терминал киоска: check, settle, status (JSON на stdout)."

    def add_arguments(self, parser):
        parser.add_argument("kiosk")
        parser.add_argument("action", choices=["check", "settle", "status"])

    def handle(self, *args, kiosk: str, action: str, **options):
        target = self.get_kiosk(kiosk)
        base = {"kiosk": target.code, "action": action, "transport": target.terminal_transport}
        try:
            payload = getattr(self, f"do_{action}")(target)
        except (TerminalError, DeviceBusy) as exc:
            code = getattr(exc, "code", "device_busy")
            self.fail({**base, "error": {"code": code, "message": str(exc)}})
        if not payload.pop("_ok", True):
            self.fail({**base, **payload})
        self.emit({"ok": True, **base, **payload})

    def do_check(self, kiosk):
        op = check_terminal(kiosk)
        ok = op.state == CardOperation.State.APPROVED
        message = "Терминал на связи" if ok else f"Терминал недоступен или не готов: {op.message or op.reason}"
        return {"_ok": ok, "check": card_operation_json(op), "message": message}

    def do_settle(self, kiosk):
        settlement = settle(kiosk, current_shift(kiosk))
        if settlement is None:
            return {"_ok": False, "error": {"code": "terminal_not_configured", "message": "Терминал не настроен"}}
        return {"_ok": settlement.state == Settlement.State.OK, "settlement": settlement.as_json()}

    def do_status(self, kiosk):
        ops = CardOperation.objects.filter(kiosk=kiosk)
        last_settlement = Settlement.objects.filter(kiosk=kiosk).first()
        money = ops.filter(kind__in=CardOperation.MONEY_KINDS)
        since = last_settlement.created_at if last_settlement and last_settlement.state == "ok" else None
        batch = money.filter(created_at__gt=since) if since else money
        return {
            "last_operation": card_operation_json(ops.first()),
            "unresolved": [card_operation_json(op) for op in ops.filter(state__in=CardOperation.UNRESOLVED)],
            "last_settlement": last_settlement.as_json() if last_settlement else None,
            "batch_since_settlement": _batch_totals(batch),
        }


def _batch_totals(ops) -> dict[str, Any]:
    """Our own count of the batch since the last successful settlement (neither transport reports it)."""
    totals: dict[str, Any] = {}
    for kind in (CardOperation.Kind.SALE, CardOperation.Kind.CANCEL, CardOperation.Kind.REFUND):
        rows = ops.filter(kind=kind, state=CardOperation.State.APPROVED)
        kopecks = sum(rows.values_list("amount_kopecks", flat=True))
        totals[kind] = {"count": rows.count(), "amount": f"{kopecks // 100}.{kopecks % 100:02d}"}
    return totals
