"""Entry points of the venue core that are not the service menu: health, and the Russian error pages (404, 403,
500) for managers and for the kiosk embed, each with a way back (``handler404`` & co. in ``nekassir.urls``)."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django_q import brokers
from django_q.models import Schedule

from nekassir.panel.access import KIOSK_REFUNDS_OFF, frame_for_kiosk
from nekassir.panel.templatetags import embed_back

log = logging.getLogger(__name__)

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


# --- error pages ----------------------------------------------------------------------------------
def _framed(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """An error page of the kiosk embed is shown inside the kiosk's frame, like the embed's own pages (its way
    back is there); a manager's error page may not be framed at all."""
    return frame_for_kiosk(response) if embed_back(request) is not None else response


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 in Russian: a wrong order id, another kiosk's shift from the embed, a mistyped address."""
    return _framed(request, render(request, "404.html", status=404))


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """403 in Russian (``templates/403.html``); a refund from the kiosk embed says that refunds are off on
    kiosks and which setting turns them on."""
    return _framed(request, render(request, "403.html", {"refunds_off": str(exception) == KIOSK_REFUNDS_OFF},
                                   status=403))


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A form refused by the CSRF check (the page was open too long, or the browser did not send its cookies,
    as a kiosk's frame may not): the Russian 403 page saying to reload, with the way back."""
    return _framed(request, render(request, "403.html", {"csrf_failed": True}, status=403))


# If even the error page cannot be drawn (the database is gone, a template breaks), this is what is sent.
PLAIN_500 = ("<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\"><title>Ошибка сервера</title></head>"
             "<body><h1>Что-то пошло не так</h1><p>Ошибка на сервере. Обновите страницу через минуту; если "
             "повторяется, сообщите в поддержку время ошибки.</p><p><a href=\"/\">На главную</a></p></body></html>")


def server_error(request: HttpRequest) -> HttpResponse:
    """500 in Russian with a way back (the kiosk embed to its service menu), drawn without the database."""
    back = embed_back(request) or {"embed": False, "url": "/"}
    try:
        response = render(request, "500.html", {"back": back}, status=500)
    except Exception:  # the page must answer whatever broke
        log.exception("the 500 page could not be rendered")
        response = HttpResponseServerError(PLAIN_500)
    return frame_for_kiosk(response) if back["embed"] else response
