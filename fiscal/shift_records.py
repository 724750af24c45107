"""What a closed shift leaves in our books: the Shift row marked closed with the closing report and the
register's counters. Shared by the close workflow (``fiscal.shifts``) and the register session, which finishes
a closeShift whose sender died (``fiscal.register.RegisterSession.resolve_unresolved``)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from core.events import record_event
from core.models import Kiosk
from fiscal.models import FiscalOperation, Shift


def mark_closed(kiosk: Kiosk, op: FiscalOperation, totals: dict[str, Any] | None) -> Shift:
    result = op.result or {}
    params = result.get("fiscalParams") or {}
    with transaction.atomic():
        shift, _ = Shift.objects.get_or_create(
            kiosk=kiosk, fn_number=op.fn_number, number=op.shift_number, defaults={"state": Shift.State.OPEN}
        )
        document = getattr(op, "document", None)
        shift.state = Shift.State.CLOSED
        shift.closed_at = (document.registered_at if document else None) or op.finished_at
        count: Any = params.get("receiptsCount")
        shift.receipts_count = int(count) if count not in (None, "") else None
        shift.register_totals = {"closing_report": params, "shift_totals": totals}
        shift.save()
    return shift


def after_resumed(kiosk: Kiosk, op: FiscalOperation) -> None:
    """A closeShift sent by a process that died (kill -9) and finished by a later session: the shift is
    closed on the register, so mark it closed here too (else our row stays open beside the next one)."""
    if op.task_type == "closeShift" and op.state == FiscalOperation.State.DONE and op.shift_number:
        mark_closed_late(kiosk, op)


def mark_closed_late(kiosk: Kiosk, op: FiscalOperation) -> Shift:
    """Record a closeShift the register did but whose workflow died before ``_mark_closed``."""
    # The register's counters were read just before that closeShift (``_close``); after it they are gone.
    totals = (FiscalOperation.objects.filter(kiosk=kiosk, task_type="getShiftTotals", id__lt=op.pk,
                                             state=FiscalOperation.State.DONE).order_by("-id").first())
    shift = mark_closed(kiosk, op, totals.result if totals else None)
    record_event("fiscal.shift.closed", kiosk=kiosk, object_ref=f"shift:{shift.pk}",
                 message=f"Смена №{shift.number} закрыта (завершено после перезапуска)", data={"fd": op.fd_number})
    return shift
