"""Recovery: resume everything a crash, kill -9 or power loss left between states.

Runs at device-cluster start and every minute (django-q2 schedule). It only *queues* work; each job
takes the device's lock and resumes from the saved ids (ATOL task uuid, our card op id, iiko order
id), so nothing is charged, printed or sent twice, however often it runs.
"""

from __future__ import annotations

import logging

from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from core.events import record_event
from core.locks import DeviceBusy, prune_free_locks
from core.models import Kiosk
from fiscal.models import FiscalDocument, FiscalOperation
from fiscal.register import FiscalError, register_session
from nekassir.checkout import resume_due_orders
from nekassir.models import Order
from nekassir.panel.jobs import resume_due_jobs
from nekassir.refunds import resume_refunds
from payments.models import CardOperation
from payments.terminal import TerminalError, terminal_session

log = logging.getLogger(__name__)


def recover(*, at_start: bool = False) -> dict[str, int]:
    """Queue the resumption of everything unfinished. ``at_start``: the device cluster is starting, so
    whatever it was running was cut off: every unfinished order is resumed, however recent."""
    counts = {"registers": 0, "terminals": 0, "readiness": 0}
    for kiosk in Kiosk.objects.filter(active=True):
        if FiscalOperation.objects.filter(kiosk=kiosk, state__in=FiscalOperation.UNRESOLVED).exists():
            async_task("nekassir.recovery.resolve_register", kiosk.pk, cluster="devices")
            counts["registers"] += 1
        if _terminal_due(kiosk):
            async_task("nekassir.recovery.resolve_terminal", kiosk.pk, cluster="devices")
            counts["terminals"] += 1
        if kiosk.has_register and (not kiosk.register_ready or _unprinted(kiosk).exists()):
            async_task("nekassir.recovery.check_register_ready", kiosk.pk, cluster="devices")
            counts["readiness"] += 1
    counts["orders"] = resume_due_orders(everything=at_start)
    counts["panel_jobs"] = _resume_panel_jobs()
    counts["refunds"] = resume_refunds()
    counts["locks_pruned"] = prune_free_locks()
    return counts


def _resume_panel_jobs() -> int:
    """Panel jobs that gave their worker back because their kiosk was busy, whose retry time has come."""
    return resume_due_jobs()


def resolve_register(kiosk_id: int) -> str:
    kiosk = Kiosk.objects.get(pk=kiosk_id)
    try:
        with register_session(kiosk, purpose=f"{kiosk.code}: восстановление", wait=5):
            return "resolved"
    except (FiscalError, DeviceBusy) as exc:
        return f"not yet: {exc}"


def _terminal_due(kiosk: Kiosk) -> bool:
    """An operation left unresolved on the terminal whose next attempt has come: one never tried (a dead
    worker's), or an unknown one whose backoff (``next_resolve_at``, set by payments.terminal) is over.
    Each attempt asks the terminal first (GetRezult where the protocol has it), then reverses."""
    due = Q(next_resolve_at__isnull=True) | Q(next_resolve_at__lte=timezone.now())
    return CardOperation.objects.filter(due, kiosk=kiosk, state__in=CardOperation.UNRESOLVED).exists()


def resolve_terminal(kiosk_id: int) -> str:
    kiosk = Kiosk.objects.get(pk=kiosk_id)
    try:
        with terminal_session(kiosk, purpose=f"{kiosk.code}: восстановление", wait=5):
            return "resolved"
    except (TerminalError, DeviceBusy) as exc:
        return f"not yet: {exc}"


def _unprinted(kiosk: Kiosk):
    return FiscalDocument.objects.filter(kiosk=kiosk, printed=False)


def check_register_ready(kiosk_id: int) -> str:
    """Is the register printing again (paper back, cover closed)? Then print what is pending
    (``continuePrint`` for documents written without paper) and wake the orders that wait for it."""
    kiosk = Kiosk.objects.get(pk=kiosk_id)
    try:
        with register_session(kiosk, purpose=f"{kiosk.code}: проверка готовности", wait=5) as session:
            device = (session.run({"type": "getDeviceStatus"}).result or {}).get("deviceStatus") or {}
            if device.get("paperPresent") is False or device.get("coverOpened"):
                return "still not ready"
            unprinted = list(_unprinted(kiosk).values_list("fd_number", flat=True))
            if unprinted:
                session.run({"type": "continuePrint"}, reference="continuePrint")
                _unprinted(kiosk).update(printed=True)
                record_event("fiscal.continue_print", kiosk=kiosk, message="Бумага заменена: допечатаны документы ФД "
                             + ", ".join(str(n) for n in unprinted), data={"fd": unprinted})
            Kiosk.objects.filter(pk=kiosk.pk).update(register_ready=True, register_problem="")
    except (FiscalError, DeviceBusy) as exc:
        return f"not yet: {exc}"
    # Orders whose annulment waited for the register: their turn now.
    Order.objects.filter(kiosk=kiosk, step=Order.Step.ANNUL).update(retry_at=timezone.now())
    resume_due_orders()
    return "ready"
