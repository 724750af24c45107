"""Entry points of the venue core that are not the service menu: health."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from django_q import brokers
from django_q.models import Schedule

# The default cluster queues "nekassir.recovery" every minute: a schedule this late means no task cluster.
SCHEDULER_LATE_AFTER = 180


def _database() -> dict:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # the monitor gets the kind of failure, never a traceback or a password
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


def _broker() -> dict:
    try:
        default = brokers.get_broker()
        default.ping()
        queued = {"default": default.queue_size(), "devices": brokers.get_broker("devices").queue_size()}
    except Exception as exc:
        return {"ok": False, "kind": settings.Q_BROKER, "error": type(exc).__name__}
    return {"ok": True, "kind": settings.Q_BROKER, "queued": queued}


def _scheduler() -> dict:
    try:
        due = Schedule.objects.filter(name="nekassir.recovery").values_list("next_run", flat=True).first()
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    if due is None:
        return {"ok": False, "error": "no schedule (run migrate)"}
    late = max(0, round((timezone.now() - due).total_seconds()))
    return {"ok": late < SCHEDULER_LATE_AFTER, "late_seconds": late}


@require_GET
def health(request):
    """For monitoring: 200 {"status": "ok", …} when the database, the broker and the schedules are alive,
    503 {"status": "fail", …} otherwise, with what failed."""
    checks = {"database": _database(), "broker": _broker(), "scheduler": _scheduler()}
    ok = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ok" if ok else "fail", **checks}, status=200 if ok else 503)
