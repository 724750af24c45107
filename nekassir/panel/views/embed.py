"""The kiosk's own service screen (``/kiosk/<code>/service/``): its PIN page, then that kiosk only.

Opened by the kiosk's browser (5 taps + PIN on the kiosk), possibly inside a frame of the kiosk's
own page: only the configured kiosk origins may frame it. The unlock lives in the session, for
``KIOSK_UNLOCK_SECONDS``. Wrong PINs are journaled and throttled by ``nekassir.panel.pin``: each try is
counted before its PIN is checked, per client address (``KIOSK_PIN_ATTEMPTS`` within ``KIOSK_PIN_WINDOW``)
and, past ``KIOSK_PIN_KIOSK_ATTEMPTS`` from all addresses, for the whole kiosk (counted in the database, so
every web process sees the same count).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_http_methods, require_POST

from core.events import record_event
from core.models import Kiosk
from nekassir.panel import access, pin
from nekassir.panel.access import Scope
from nekassir.panel.venue import kiosk_blocks, with_refunds
from nekassir.panel.views.common import ORDER_ROW, job_context, page
from nekassir.panel.views.venue import manual_actions, shown_job

PIN_FAILED = pin.PIN_FAILED
REFUSALS = {
    pin.Refused.ADDRESS: "Слишком много неверных попыток. Подождите несколько минут.",
    pin.Refused.KIOSK: ("Слишком много неверных попыток PIN на этом киоске с разных устройств. Сервисное меню "
                        "закрыто на несколько минут; менеджер увидит это в журнале."),
}


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
    recent = list(with_refunds(scope.orders()).select_related("kiosk").only(*ORDER_ROW).order_by("-created_at")[:20])
    return access.frame_for_kiosk(page(request, scope, "panel/embed_home.html", {
        "kiosk": kiosk,
        "blocks": kiosk_blocks(scope.kiosks(), scope),
        "orders": recent,
        "shown": job_context(scope, state) if state else None,
        "journal": manual_actions(scope)[:8],
    }))


def _unlock(request: HttpRequest, kiosk: Kiosk, scope: Scope) -> HttpResponse:
    if not kiosk.service_pin_hash:
        return page(request, scope, "panel/embed_pin.html", {
            "kiosk": kiosk, "error": "PIN сервисного меню не задан. Задайте его в администрировании киоска.",
        }, status=403)
    attempt = pin.claim(kiosk, pin.client_address(request))  # counted before the (slow) check, in one step
    if isinstance(attempt, pin.Refused):
        return page(request, scope, "panel/embed_pin.html", {"kiosk": kiosk, "error": REFUSALS[attempt]},
                    status=429)
    right = kiosk.check_service_pin(request.POST.get("pin", ""))
    pin.settle(attempt, right)
    if not right:
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
