"""«Проверить связь» from a kiosk's admin page: start the check as a job and follow it on the job page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_POST

from core.models import Kiosk
from nekassir.panel import jobs
from nekassir.panel.access import CHANGE_KIOSK, Scope


@require_POST
def connection(request: HttpRequest, scope: Scope, code: str) -> HttpResponse:
    scope.require(CHANGE_KIOSK)  # before the lookup: no hint to others which kiosks exist
    # Any kiosk the admin lists (inactive, or without a register, too): it is the settings being checked.
    kiosk = get_object_or_404(Kiosk, code=code)
    start = jobs.start_job(scope, "connection", kiosk, object_ref=f"kiosk:{kiosk.code}",
                           message="Проверка связи (администрирование)")
    return HttpResponseRedirect(scope.url("job", start.pk))
