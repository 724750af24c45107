"""Settlement (сверка итогов): on its own, and before every fiscal shift close.

A failed settlement is retried, then flagged ("not reconciled"); it never stops the fiscal shift
from closing on time. It is never run while an operation on the terminal is unresolved, since it
would close the batch and remove the emergency-reversal option (PROTOCOLS.md §2.3).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings

from core.events import record_event
from core.locks import DeviceBusy
from core.models import Kiosk
from fiscal.models import Shift
from fiscal.register import FiscalError, register_session
from payments.models import CardOperation, Settlement
from payments.terminal import TerminalNotConfigured, TerminalUnresolved, terminal_session

log = logging.getLogger(__name__)


def settle(kiosk: Kiosk, shift: Shift | None = None, *, user=None, wait: float | None = None) -> Settlement | None:
    """Run the settlement with retries and keep its slip. None when the kiosk has no terminal."""
    wait = settings.CLOSE_WAIT_FOR_TERMINAL if wait is None else wait
    try:
        with terminal_session(kiosk, purpose=f"{kiosk.code}: сверка итогов", wait=wait) as session:
            settlement = _attempts(session, kiosk, shift)
    except TerminalNotConfigured:
        return None
    except TerminalUnresolved as exc:
        settlement = _skipped(kiosk, shift, f"Сверка не выполнена: есть неразрешённая операция ({exc})")
    except DeviceBusy as exc:
        settlement = _skipped(kiosk, shift, f"Сверка не выполнена: терминал занят ({exc})")
    if settlement.state == Settlement.State.OK and kiosk.print_slips and settlement.slip:
        _print_slip(kiosk, settlement)
    _journal(kiosk, settlement, user)
    return settlement


def _attempts(session, kiosk: Kiosk, shift: Shift | None) -> Settlement:
    op = None
    attempts = 0
    for attempts in range(1, settings.SETTLEMENT_ATTEMPTS + 1):
        op = session.settlement()
        if op.state == CardOperation.State.APPROVED:
            break
        log.warning("kiosk=%s settlement attempt %s failed: %s", kiosk.code, attempts, op.message)
        if attempts < settings.SETTLEMENT_ATTEMPTS:
            time.sleep(settings.SETTLEMENT_RETRY_DELAY)
    ok = op is not None and op.state == CardOperation.State.APPROVED
    return Settlement.objects.create(
        kiosk=kiosk, shift=shift, operation=op, attempts=attempts,
        state=Settlement.State.OK if ok else Settlement.State.FAILED,
        slip=op.slip if op else "",
        message="" if ok else f"Сверка итогов не выполнена: {op.message if op else ''}".strip(),
    )


def _skipped(kiosk: Kiosk, shift: Shift | None, message: str) -> Settlement:
    log.warning("kiosk=%s %s", kiosk.code, message)
    return Settlement.objects.create(kiosk=kiosk, shift=shift, state=Settlement.State.SKIPPED, message=message)


def _print_slip(kiosk: Kiosk, settlement: Settlement) -> None:
    """The bank slip printed as-is on the register, as a non-fiscal document."""
    if not kiosk.has_register or not kiosk.atol_url:
        return
    task = {"type": "nonFiscal", "items": slip_items(settlement.slip)}
    try:
        with register_session(kiosk, purpose=f"{kiosk.code}: печать слипа") as session:
            session.run(task, reference=f"settlement:{settlement.pk}")
    except (FiscalError, DeviceBusy) as exc:
        log.warning("kiosk=%s settlement slip not printed: %s", kiosk.code, exc)
        return
    Settlement.objects.filter(pk=settlement.pk).update(slip_printed=True)
    settlement.slip_printed = True


def slip_items(slip: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": line, "alignment": "left"} for line in slip.splitlines() or [""]]


def _journal(kiosk: Kiosk, settlement: Settlement, user) -> None:
    action = "payments.settlement.ok" if settlement.state == Settlement.State.OK else "payments.settlement.failed"
    record_event(action, kiosk=kiosk, user=user, object_ref=f"settlement:{settlement.pk}",
                 message=settlement.message or "Сверка итогов выполнена",
                 data={"shift_id": settlement.shift_id, "attempts": settlement.attempts})


def settle_before_close(kiosk: Kiosk, shift: Shift | None) -> dict[str, Any]:
    """The `before_close` the top floor hands down to every register close (``nekassir.shift_closing``,
    ``fiscal.shifts.ensure_open``): settle first, never stop the close."""
    settlement = settle(kiosk, shift)
    if settlement is None:
        return {}
    return {"settlement": settlement.state, "settlement_id": settlement.pk}
