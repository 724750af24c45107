"""python manage.py kkt <kiosk> check|status|open|close|xreport

Runs one operation through the same workflow and device lock as the panel, waits for it, prints
the result as JSON on stdout and exits non-zero on failure.
"""

from __future__ import annotations

from typing import Any

from core.locks import DeviceBusy
from core.management.jsoncommand import JsonCommand
from fiscal import shifts
from fiscal.checks import check_register
from fiscal.models import FiscalOperation, Shift
from fiscal.register import FiscalError
from nekassir.shift_closing import close_shift


def shift_json(shift: Shift | None) -> dict[str, Any] | None:
    if shift is None:
        return None
    shift.refresh_from_db()
    document = shift.documents.filter(doc_type="closeShift").first() if not shift.is_open else None
    data = {
        "id": shift.pk,
        "number": shift.number,
        "fn_number": shift.fn_number,
        "state": shift.state,
        "opened_at": shift.opened_at,
        "closed_at": shift.closed_at,
        "expires_at": shift.expires_at,
        "receipts_count": shift.receipts_count,
    }
    if document is not None:
        data["closing_document"] = {"fd": document.fd_number, "fpd": document.fpd}
    settlement = getattr(shift, "settlements", None)
    if settlement is not None:
        data["settlements"] = [s.as_json() for s in settlement.all()]
    return data


def operation_json(op: FiscalOperation) -> dict[str, Any]:
    return {
        "uuid": str(op.uuid),
        "task": op.task_type,
        "state": op.state,
        "fd": op.fd_number,
        "fpd": op.fpd or None,
        "receipt_number": op.receipt_number,
        "shift_number": op.shift_number,
        "not_printed": op.not_printed,
    }


class Command(JsonCommand):
    help = "Операции с ККТ киоска: check, status, open, close, xreport (JSON на stdout)."

    def add_arguments(self, parser):
        parser.add_argument("kiosk", help="код киоска, например K1")
        parser.add_argument("action", choices=["check", "status", "open", "close", "xreport"])

    def handle(self, *args, kiosk: str, action: str, **options):
        target = self.get_kiosk(kiosk)
        base = {"kiosk": target.code, "action": action}
        try:
            payload = getattr(self, f"do_{action}")(target)
        except FiscalError as exc:
            op = exc.op
            self.fail({**base, "error": {"code": exc.kind, "message": str(exc)},
                       "operation": operation_json(op) if op else None})
        except DeviceBusy as exc:
            self.fail({**base, "error": {"code": "device_busy", "message": str(exc)}})
        if payload.pop("_failed", False):
            self.fail({**base, **payload})
        self.emit({"ok": True, **base, **payload})

    def do_check(self, kiosk):
        report = check_register(kiosk)
        report["_failed"] = not report.pop("ok")
        return report

    def do_status(self, kiosk):
        current = shifts.status(kiosk)
        return {"status": current.as_dict(), "shift": shift_json(current.shift)}

    def do_open(self, kiosk):
        return {"shift": shift_json(shifts.open_shift(kiosk))}

    def do_close(self, kiosk):
        shift = close_shift(kiosk, reason="command")
        return {"shift": shift_json(shift), "already_closed": shift is None}

    def do_xreport(self, kiosk):
        return {"operation": operation_json(shifts.x_report(kiosk))}
