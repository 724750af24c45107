"""The venue page (every kiosk's KKT block), its fragments, and the kiosk actions (jobs)."""

from __future__ import annotations

from django.contrib.admin.models import LogEntry
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from fiscal.models import Shift
from nekassir.models import Order
from nekassir.panel import jobs
from nekassir.panel.access import Scope
from nekassir.panel.params import optional_id
from nekassir.panel.venue import ATTENTION, REFUND_CHOICES, REFUND_FILTERS, kiosk_blocks, refund_filter, with_refunds
from nekassir.panel.views.common import EVENT_ROW, ORDER_ROW, job_answer, job_context, number_search, page

JOURNAL_ON_PAGE = 12  # the venue page's latest actions
JOURNAL_PAGE = 50  # the journal page


def manual_actions(scope: Scope, **where):
    """The audit journal: every manual action (a named user, or a kiosk's PIN-unlocked screen)."""
    return (scope.events().filter(Q(user__isnull=False) | Q(action__startswith="panel."), **where)
            .exclude(action__in=[jobs.DONE, jobs.FAILED]).select_related("user", "kiosk").only(*EVENT_ROW)
            .order_by("-id"))


def shown_job(request: HttpRequest, scope: Scope) -> jobs.JobState | None:
    """``?job=<id>``: the job a plain (non-htmx) POST started, followed on the page it came back to."""
    job_id = optional_id(request.GET, "job")
    if job_id is None:
        return None
    start = scope.events().filter(pk=job_id, action__startswith="panel.").select_related("kiosk").first()
    return jobs.job_state(start) if start is not None else None


@require_GET
def home(request: HttpRequest, scope: Scope) -> HttpResponse:
    blocks = kiosk_blocks(scope.kiosks(), scope)
    state = shown_job(request, scope)
    attention = list(with_refunds(scope.orders()).filter(status__in=ATTENTION).select_related("kiosk").only(*ORDER_ROW)
                     .order_by("-created_at")[:20])
    return page(request, scope, "panel/home.html", {
        "blocks": blocks,
        "shown": job_context(scope, state) if state else None,
        "attention": attention,
        "journal": manual_actions(scope)[:JOURNAL_ON_PAGE],
    })


@require_GET
def kiosk_states(request: HttpRequest, scope: Scope) -> HttpResponse:
    """Every kiosk block of the viewer, each to be swapped out of band: the venue page's one poller (issue 15)."""
    return render(request, "panel/_kiosk_states.html", {"scope": scope, "blocks": kiosk_blocks(scope.kiosks(), scope)})


@require_GET
def kiosk_block(request: HttpRequest, scope: Scope, code: str) -> HttpResponse:
    block = kiosk_blocks(scope.kiosks().filter(code=code), scope)
    if not block:
        scope.get_kiosk(code)  # 404
    return render(request, "panel/_kiosk.html#kiosk-state", {"scope": scope, "block": block[0]})


def _kiosk_action(request: HttpRequest, scope: Scope, code: str, kind: str, message: str) -> HttpResponse:
    kiosk = scope.get_kiosk(code)
    scope.require(jobs.KINDS[kind].permission)  # start_job checks it too: here before anything is read
    shift = Shift.current(kiosk)
    ref = f"shift:{shift.pk}" if shift is not None and kind in ("shift_close", "xreport") else f"kiosk:{kiosk.code}"
    via = " (сервисное меню киоска)" if scope.embed else ""
    start = jobs.start_job(scope, kind, kiosk, object_ref=ref, message=f"{message}{via}")
    return job_answer(request, scope, start, back=scope.url("home") + f"#kiosk-{kiosk.code}")


@require_POST
def shift_open(request: HttpRequest, scope: Scope, code: str) -> HttpResponse:
    return _kiosk_action(request, scope, code, "shift_open", "Открытие смены вручную")


@require_POST
def shift_close(request: HttpRequest, scope: Scope, code: str) -> HttpResponse:
    return _kiosk_action(request, scope, code, "shift_close", "Закрытие смены вручную")


@require_POST
def xreport(request: HttpRequest, scope: Scope, code: str) -> HttpResponse:
    return _kiosk_action(request, scope, code, "xreport", "X-отчёт")


@require_POST
def settle(request: HttpRequest, scope: Scope, code: str) -> HttpResponse:
    return _kiosk_action(request, scope, code, "settle", "Сверка итогов вручную")


@require_POST
def check(request: HttpRequest, scope: Scope, code: str) -> HttpResponse:
    return _kiosk_action(request, scope, code, "check", "Проверка ККТ")


@require_GET
def journal(request: HttpRequest, scope: Scope) -> HttpResponse:
    """Every manual action, newest first, and the admin's own change history (who changed which row).

    Paged by id (``?before=<id>``: older, ``?after=<id>``: newer), never counted: a count of the whole
    journal would grow with its years, a page read from the index costs the same at any depth.
    """
    actions = manual_actions(scope)
    before, after = optional_id(request.GET, "before"), optional_id(request.GET, "after")
    if after is not None:
        rows = list(actions.filter(id__gt=after).order_by("id")[:JOURNAL_PAGE + 1])
        events, has_newer, has_older = rows[:JOURNAL_PAGE][::-1], len(rows) > JOURNAL_PAGE, True
    else:
        rows = list((actions.filter(id__lt=before) if before is not None else actions)[:JOURNAL_PAGE + 1])
        events, has_newer, has_older = rows[:JOURNAL_PAGE], before is not None, len(rows) > JOURNAL_PAGE
    admin_changes = LogEntry.objects.select_related("user", "content_type").order_by("-action_time")[:20]
    return page(request, scope, "panel/journal.html", {
        "events": events, "admin_changes": admin_changes,
        # the links: an empty page (the journal moved on) leads back to its start
        "newer": f"?after={events[0].pk}" if events and has_newer else ("?" if has_newer else ""),
        "older": f"?before={events[-1].pk}" if events and has_older else "",
    })


@require_GET
def orders(request: HttpRequest, scope: Scope) -> HttpResponse:
    """Find an order: by number, by kiosk, or those that need attention (newest first, 100 at most)."""
    found = with_refunds(scope.orders()).select_related("kiosk").only(*ORDER_ROW).order_by("-created_at")
    query = request.GET.get("q", "").strip()
    if query:
        found = found.filter(number_search(query))  # «k1-7», «К1-007»: case, Cyrillic look-alikes, zero padding
    if request.GET.get("kiosk"):
        found = found.filter(kiosk__code=request.GET["kiosk"])
    if request.GET.get("attention"):
        found = found.filter(status__in=ATTENTION)
    found = refund_filter(found, request.GET.get("refund", ""))  # issue 14: partly / fully refunded
    return page(request, scope, "panel/orders.html", {
        "orders": found[:100], "query": query, "kiosks": scope.kiosks().order_by("code"),
        "statuses": Order.Status, "attention": bool(request.GET.get("attention")),
        "kiosk_code": request.GET.get("kiosk", ""),
        "refund": request.GET.get("refund", "") if request.GET.get("refund", "") in REFUND_FILTERS else "",
        "refund_choices": REFUND_CHOICES,
    })

