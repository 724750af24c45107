"""The automatic shift close (django-q2 schedule).

Each open shift closes, with its settlement, ``SHIFT_CLOSE_MARGIN`` before the register's own
``expiredTime`` — an expired shift blocks sales — and, if ``SHIFT_CLOSE_AT`` is set, at that quiet
hour. Time is the register's own clock (read outside the queue), since that is the clock that
expires the shift. The scan runs on the short-job cluster and queues each close on the device
cluster; a close waits for an order in progress up to ``AUTO_CLOSE_WAIT_FOR_ORDER``, then closes
anyway (``force``): a stuck order cannot keep a shift open past 24 hours.
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_q.tasks import async_task

from core.locks import DeviceBusy
from core.models import Kiosk
from fiscal.atol_errors import AtolError
from fiscal.models import Shift
from fiscal.register import FiscalError, make_client
from nekassir.shift_closing import close_shift

log = logging.getLogger(__name__)


def register_now(kiosk: Kiosk) -> datetime:
    """The register's clock (``queryDeviceStatus``, outside the queue); our own clock if it is silent."""
    try:
        with make_client(kiosk, max_wait=5) as client:
            status = client.query("queryDeviceStatus").get("deviceStatus") or {}
        parsed = parse_datetime(str(status.get("currentDateTime") or ""))
        if parsed is not None:
            return parsed
    except (AtolError, ValueError) as exc:
        log.info("kiosk=%s register clock not read (%s); using the server's", kiosk.code, exc)
    return timezone.now()


def close_reason(shift: Shift, now: datetime) -> str | None:
    """Why ``shift`` should close now, or None."""
    margin = timedelta(seconds=settings.SHIFT_CLOSE_MARGIN)
    if shift.expires_at is not None and now >= shift.expires_at - margin:
        return "перед истечением 24 часов"
    quiet = _quiet_hour_today(now)
    if quiet is not None and shift.opened_at is not None and shift.opened_at < quiet <= now:
        return f"плановое закрытие в {settings.SHIFT_CLOSE_AT}"
    return None


def _quiet_hour_today(now: datetime) -> datetime | None:
    if not settings.SHIFT_CLOSE_AT:
        return None
    hours, minutes = (int(part) for part in settings.SHIFT_CLOSE_AT.split(":"))
    local = timezone.localtime(now)
    return timezone.make_aware(datetime.combine(local.date(), time(hours, minutes)), local.tzinfo)


def scan() -> list[int]:
    """Schedule entry: queue a close for every shift that is due. Returns the shifts queued."""
    queued = []
    for shift in Shift.objects.filter(state=Shift.State.OPEN, kiosk__active=True, kiosk__has_register=True,
                                      close_requested_at__isnull=True).select_related("kiosk"):
        reason = close_reason(shift, register_now(shift.kiosk))
        if reason is None:
            continue
        # Compare-and-set: two scans at once queue the close once.
        if Shift.objects.filter(pk=shift.pk, close_requested_at__isnull=True).update(close_requested_at=timezone.now()):
            # On a thread of a device worker (nekassir.device_threads): a close may wait minutes, and at the quiet
            # hour every kiosk's is due at once; none of them may hold a worker a checkout needs.
            async_task("nekassir.device_threads.dispatch_auto_close", shift.pk, reason, cluster="devices",
                       task_name=f"auto close {shift.kiosk.code} #{shift.number}")
            queued.append(shift.pk)
    return queued


def auto_close(shift_id: int, reason: str) -> str:
    shift = Shift.objects.select_related("kiosk").get(pk=shift_id)
    try:
        if shift.is_open:
            close_shift(shift.kiosk, reason=f"автоматически: {reason}", force=True,
                        wait=settings.AUTO_CLOSE_WAIT_FOR_ORDER)
    except (FiscalError, DeviceBusy) as exc:
        log.error("kiosk=%s automatic close of shift %s failed: %s", shift.kiosk.code, shift.number, exc)
        return f"failed: {exc}"
    finally:
        # Let the next scan try again if it did not close (e.g. the register was unreachable).
        Shift.objects.filter(pk=shift.pk).update(close_requested_at=None)
    return "closed"
