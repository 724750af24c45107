"""The kiosk's own service screen (``/kiosk/<code>/service/``): its PIN page, then that kiosk only.

Opened by the kiosk's browser (5 taps + PIN on the kiosk), possibly inside a frame of the kiosk's
own page: only the configured kiosk origins may frame it. The unlock lives in the session, for
``KIOSK_UNLOCK_SECONDS``. Wrong PINs are journaled; after ``KIOSK_PIN_ATTEMPTS`` of them within
``KIOSK_PIN_WINDOW`` seconds the kiosk's PIN page refuses until the window passes (counted in the
database, so every web process sees the same count).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_http_methods, require_POST

from nekassir.events import record_event
from nekassir.models import Event, Kiosk
from nekassir.panel import access
from nekassir.panel.access import Scope
from nekassir.panel.venue import kiosk_blocks
from nekassir.panel.views.common import ORDER_ROW, job_context, page
from nekassir.panel.views.venue import manual_actions, shown_job

PIN_FAILED = "panel.embed.pin_failed"


def _throttled(kiosk: Kiosk) -> bool:
    since = timezone.now() - timedelta(seconds=settings.KIOSK_PIN_WINDOW)
    return Event.objects.filter(kiosk=kiosk, action=PIN_FAILED, created_at__gte=since).count() >= (
        settings.KIOSK_PIN_ATTEMPTS)


@xframe_options_exempt
@require_http_methods(["GET", "POST"])
def home(request: HttpRequest, code: str) -> HttpResponse:
    kiosk = get_object_or_404(Kiosk, code=code, active=True, has_register=True)
    scope = Scope(kiosk=kiosk)
    if request.method == "POST":
        return access.frame_for_kiosk(_unlock(request, kiosk, scope))
    if not access.kiosk_unlocked(request, kiosk):
        return access.frame_for_kiosk(page(request, scope, "panel/embed_pin.html", {"kiosk": kiosk}))
    state = shown_job(request, scope)
    recent = list(scope.orders().select_related("kiosk").only(*ORDER_ROW).order_by("-created_at")[:20])
    return access.frame_for_kiosk(page(request, scope, "panel/embed_home.html", {
        "kiosk": kiosk,
        "blocks": kiosk_blocks(scope.kiosks(), scope),
        "orders": recent,
        "shown": job_context(scope, state) if state else None,
        "journal": manual_actions(scope)[:8],
    }))


def _unlock(request: HttpRequest, kiosk: Kiosk, scope: Scope) -> HttpResponse:
    if _throttled(kiosk):
        return page(request, scope, "panel/embed_pin.html", {
            "kiosk": kiosk, "error": "Слишком много неверных попыток. Подождите несколько минут.",
        }, status=429)
    if not kiosk.service_pin_hash:
        return page(request, scope, "panel/embed_pin.html", {
            "kiosk": kiosk, "error": "PIN сервисного меню не задан. Задайте его в администрировании киоска.",
        }, status=403)
    if not kiosk.check_service_pin(request.POST.get("pin", "")):
        record_event(PIN_FAILED, kiosk=kiosk, object_ref=f"kiosk:{kiosk.code}",
                     message="Неверный PIN сервисного меню", data={"via": "kiosk_pin"})
        return page(request, scope, "panel/embed_pin.html", {"kiosk": kiosk, "error": "Неверный PIN"}, status=403)
    access.unlock(request, kiosk)
    record_event("panel.embed.unlocked", kiosk=kiosk, object_ref=f"kiosk:{kiosk.code}",
                 message="Сервисное меню киоска открыто по PIN", data={"via": "kiosk_pin"})
    return HttpResponseRedirect(scope.url("home"))


@xframe_options_exempt
@require_POST
def lock(request: HttpRequest, code: str) -> HttpResponse:
    kiosk = get_object_or_404(Kiosk, code=code)
    access.lock(request)
    return access.frame_for_kiosk(HttpResponseRedirect(Scope(kiosk=kiosk).url("home")))
