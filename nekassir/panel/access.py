"""Who may see and do what in the service menu: a ``Scope`` per request, and the lookups that use it.

A page is served either to a logged-in manager (every kiosk, Django permissions) or to a kiosk's own
browser unlocked with that kiosk's PIN (the embed: that kiosk only, no named user). Views receive the
scope and fetch objects only through the helpers below, so no view forgets the kiosk restriction.

Reading is a right of its own: a login alone shows nothing (an account made for something else, or left
without groups, must not read guests' orders, card data and shift totals). Every manager page needs
``READ``; support staff who only hold ``CHANGE_KIOSK`` (and ``CHECK_DEVICE``, which the job needs) may open
«Проверить связь» and follow those checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from core.models import Event, Kiosk
from nekassir.models import Order

REFUND = "nekassir.refund_order"
MANAGE_SHIFT = "fiscal.manage_shift"
XREPORT = "fiscal.print_xreport"
PRINT_COPY = "fiscal.print_copy"
RESEND = "nekassir.change_order"
CHANGE_KIOSK = "core.change_kiosk"  # support staff: the kiosk's settings and «Проверить связь»
CHECK_DEVICE = "fiscal.check_device"  # «Проверить ККТ», «Проверить связь»: device calls, not for every login
READ = "nekassir.view_order"  # every manager page: orders, shifts, the journal, the venue
# Manager pages (URL names) that support staff (CHANGE_KIOSK without READ) may open: the admin's
# «Проверить связь» and the page following it (``Scope.events`` then holds those checks only).
SUPPORT_PAGES = frozenset({"connection", "job"})
CONNECTION_CHECK = "panel.connection"  # the action of a «Проверить связь» job (nekassir.panel.jobs)

SESSION_KEY = "kiosk_unlocked"
# What a refused refund from the kiosk embed raises (PermissionDenied): its 403 page names KIOSK_SERVICE_REFUNDS.
KIOSK_REFUNDS_OFF = "kiosk_service_refunds_off"

# Pages of one kiosk: their manager URL has the kiosk code, their embed URL has it as its prefix.
KIOSK_URLS = frozenset({"kiosk_block", "shift_open", "shift_close", "xreport", "settle", "check", "shifts",
                        "print_receipt", "print_slip"})


@dataclass(frozen=True)
class Scope:
    """The viewer: a manager (``user``) or a kiosk's service screen (``kiosk``, unlocked by PIN)."""

    user: Any = None
    kiosk: Kiosk | None = None

    @property
    def embed(self) -> bool:
        return self.kiosk is not None

    @property
    def base_template(self) -> str:
        return "panel/embed_base.html" if self.embed else "panel/base.html"

    def can(self, permission: str) -> bool:
        if self.embed:
            if permission == REFUND:
                return settings.KIOSK_SERVICE_REFUNDS
            return permission in {MANAGE_SHIFT, XREPORT, PRINT_COPY, RESEND, CHECK_DEVICE}
        return bool(self.user and self.user.has_perm(permission))

    @cached_property
    def reads(self) -> bool:
        """Whether this viewer reads orders, shifts and the journal (else only its connection checks)."""
        return self.embed or self.can(READ)

    @cached_property
    def perms(self) -> dict[str, bool]:
        """For templates: which actions to offer (each view checks again with ``require``)."""
        return {"manage_shift": self.can(MANAGE_SHIFT), "xreport": self.can(XREPORT),
                "print_copy": self.can(PRINT_COPY), "refund": self.can(REFUND), "resend": self.can(RESEND),
                "check_device": self.can(CHECK_DEVICE)}

    def require(self, permission: str) -> None:
        if not self.can(permission):
            # the kiosk embed's refusal of a refund says why on its 403 page (nekassir.views.permission_denied)
            raise PermissionDenied(KIOSK_REFUNDS_OFF if self.embed and permission == REFUND else permission)

    def url(self, name: str, *args: Any) -> str:
        """The URL of a panel page for this viewer (the embed has its own, under /kiosk/<code>/service/)."""
        if self.embed:
            if name in KIOSK_URLS and args:
                args = args[1:]  # the code is already the embed's prefix (and can only be this kiosk's)
            assert self.kiosk is not None  # what embed means
            return reverse(f"panel:embed_{name}", args=[self.kiosk.code, *args])
        return reverse(f"panel:{name}", args=args)

    @property
    def audit_user(self):
        return self.user if self.user is not None and self.user.is_authenticated else None

    @property
    def audit_data(self) -> dict[str, str]:
        return {"via": "kiosk_pin"} if self.embed else {}

    # --- lookups restricted to what this viewer may see -------------------------------------------
    def kiosks(self):
        kiosks = Kiosk.objects.filter(active=True, has_register=True)
        return kiosks.filter(pk=self.kiosk.pk) if self.embed else kiosks

    def get_kiosk(self, code: str) -> Kiosk:
        return get_object_or_404(self.kiosks(), code=code)

    def orders(self):
        orders = Order.objects.all() if self.reads else Order.objects.none()
        return orders.filter(kiosk=self.kiosk) if self.embed else orders

    def get_order(self, order_id) -> Order:
        return get_object_or_404(self.orders().select_related("kiosk"), pk=order_id)

    def events(self):
        events = Event.objects.all() if self.reads else Event.objects.filter(action=CONNECTION_CHECK)
        return events.filter(kiosk=self.kiosk) if self.embed else events


class TooManyJobs(Exception):
    """This viewer started ``PANEL_JOB_RATE`` device jobs within the last minute (``nekassir.panel.jobs``):
    answered 429 by the view decorators below, whichever view tried to start one."""

    def __init__(self, rate: int, retry_after: int):
        super().__init__(f"Слишком много заданий: не больше {rate} в минуту. Повторите через {retry_after} с.")
        self.rate = rate
        self.retry_after = retry_after


def too_many_jobs(request: HttpRequest, scope: Scope, exc: TooManyJobs) -> HttpResponse:
    """429 in Russian: the fragment for htmx (panel.js swaps it in), else a page with a way back."""
    context = {"scope": scope, "message": str(exc), "back": scope.url("home")}
    template = "panel/_too_many_jobs.html" if getattr(request, "htmx", False) else "panel/too_many_jobs.html"
    response = render(request, template, context, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


# --- decorators ----------------------------------------------------------------------------------
def may_open(request: HttpRequest) -> bool:
    """May this logged-in account open this manager page? Reading rights, or support staff's own pages."""
    user = request.user
    if user.has_perm(READ):
        return True
    match = request.resolver_match
    return match is not None and match.url_name in SUPPORT_PAGES and user.has_perm(CHANGE_KIOSK)


def manager_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A page for logged-in managers with the reading right; anonymous visitors go to the login form, an
    account without the right gets the 403 page (``templates/403.html``) before the view runs."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            if getattr(request, "htmx", False):
                # An expired session inside a fragment: send the whole page to the login form.
                response = HttpResponse(status=204)
                response["HX-Redirect"] = f"{reverse('login')}?next={request.get_full_path()}"
                return response
            return redirect_to_login(request.get_full_path())
        if not may_open(request):
            raise PermissionDenied(READ)
        scope = Scope(user=request.user)
        try:
            return view(request, scope, *args, **kwargs)
        except TooManyJobs as exc:
            return too_many_jobs(request, scope, exc)

    wrapper.panel_access = "manager"  # type: ignore[attr-defined]  # a marker on the view function
    return wrapper


def frame_for_kiosk(response: HttpResponse) -> HttpResponse:
    """Only the panel itself and the configured kiosk origins may frame this answer of the embed: django-csp's
    middleware writes the whole policy (``CONTENT_SECURITY_POLICY``) with frame-ancestors replaced, as
    ``csp.decorators.csp_replace`` does (here per answer: ``KIOSK_FRAME_ORIGINS`` is read when it is sent), and
    Django's X-Frame-Options: DENY is left off it (frame-ancestors says who may frame it)."""
    response._csp_replace = {"frame-ancestors": ["'self'", *settings.KIOSK_FRAME_ORIGINS]}  # type: ignore[attr-defined]
    response.xframe_options_exempt = True  # what @xframe_options_exempt sets
    return response


def kiosk_unlocked(request: HttpRequest, kiosk: Kiosk) -> bool:
    unlocked = request.session.get(SESSION_KEY) or {}
    return unlocked.get("code") == kiosk.code and float(unlocked.get("until", 0)) > time.time()


def unlock(request: HttpRequest, kiosk: Kiosk) -> None:
    request.session.cycle_key()
    request.session[SESSION_KEY] = {"code": kiosk.code, "until": time.time() + settings.KIOSK_UNLOCK_SECONDS}


def lock(request: HttpRequest) -> None:
    request.session.pop(SESSION_KEY, None)


def embed_view(view: Callable[..., HttpResponse], *, kiosk_scoped: bool = False) -> Callable[..., HttpResponse]:
    """A page of the kiosk's own service screen: that kiosk only, after its PIN; frameable by the kiosk.

    ``kiosk_scoped`` views (``view(request, scope, code, ...)``) get the code of the embed's prefix."""

    @wraps(view)
    def wrapper(request: HttpRequest, code: str, *args: Any, **kwargs: Any) -> HttpResponse:
        kiosk = get_object_or_404(Kiosk, code=code, active=True, has_register=True)
        if not kiosk_unlocked(request, kiosk):
            home = reverse("panel:embed_home", args=[kiosk.code])
            if getattr(request, "htmx", False):
                response = HttpResponse(status=204)
                response["HX-Redirect"] = home
            else:
                response = HttpResponseRedirect(home)
            return frame_for_kiosk(response)
        if kiosk_scoped:
            kwargs["code"] = kiosk.code
        scope = Scope(kiosk=kiosk)
        try:
            response = view(request, scope, *args, **kwargs)
        except TooManyJobs as exc:
            response = too_many_jobs(request, scope, exc)
        return frame_for_kiosk(response)

    wrapper.panel_access = "embed"  # type: ignore[attr-defined]  # a marker on the view function
    return wrapper
