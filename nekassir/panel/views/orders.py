"""The order page and its actions: refund (by lines), resend to iiko, copies of the receipt and the slip,
and the manual resolution of an unknown card operation («деньги списаны» / «не списаны»)."""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation

from django.db.models import F, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from core.locks import DeviceBusy, device_lock
from fiscal.models import FiscalDocument, Shift
from nekassir.card_resolution import RESOLVABLE_KINDS, ResolutionError, clean_note, resolve_charged, unknown_operation
from nekassir.models import Order, Refund
from nekassir.panel import jobs
from nekassir.panel.access import PRINT_COPY, REFUND, RESEND, Scope
from nekassir.panel.params import optional_id
from nekassir.panel.reconciliation import facts_of, order_issues, order_queryset
from nekassir.panel.templatetags import qty
from nekassir.panel.venue import with_refunds
from nekassir.panel.views.common import STOP_POLLING, job_answer, job_context, page
from nekassir.panel.views.venue import shown_job
from nekassir.refunds import MAX_QUANTITY, RefundError, refund_lock_key, refundable, refundable_marks, request_refund
from payments.models import CardOperation

IN_FLIGHT = (Refund.State.CREATED, Refund.State.IN_PROGRESS)


def _order(scope: Scope, order_id) -> Order:
    order = with_refunds(order_queryset(scope.orders())).select_related("shift").filter(pk=order_id).first()
    if order is None:
        raise Http404("no such order")
    return order


def _refundable(order: Order) -> dict[int, Decimal]:
    return refundable(order)


def _last_refund_id(order: Order) -> int:
    return order.refunds.order_by("-id").values_list("id", flat=True).first() or 0


def order_context(scope: Scope, order: Order) -> dict:
    lines = list(order.lines.prefetch_related("modifiers").order_by("position"))
    refunds = list(order.refunds.all())
    remaining = _refundable(order) if order.card_sale_id else {}
    marks = list(order.marks.select_related("refund").order_by("line__position", "unit"))
    free = refundable_marks(order) if order.card_sale_id else {}
    for line in lines:
        # the line's marked units (issue 13) that may still go back, for the refund form
        line.free_marks = free.get(line.pk, [])  # type: ignore[attr-defined]  # for the template
        line.remaining = remaining.get(line.pk, Decimal("0"))  # type: ignore[attr-defined]  # for the template
        line.step = "1" if line.unit == "piece" else "0.001"  # type: ignore[attr-defined]  # for the template
    for refund in refunds:  # the codes each refund took back (no query per refund)
        refund.returned_marks = [m for m in marks if m.refund_id == refund.pk]  # type: ignore[attr-defined]
    documents = [d for d in (getattr(order.sell_operation, "document", None),
                             getattr(order.annul_operation, "document", None)) if d is not None]
    documents += [r.return_operation.document for r in refunds
                  if r.return_operation is not None and getattr(r.return_operation, "document", None) is not None]
    card_ops = []
    if order.card_sale_id:
        card_ops = list(CardOperation.objects.filter(Q(pk=order.card_sale_id) | Q(original_id=order.card_sale_id))
                        .select_related("resolved_by").order_by("id"))
    for op in card_ops:  # an unknown money operation blocks the terminal until someone resolves it
        op.resolvable = (  # type: ignore[attr-defined]  # for the template
            op.state == CardOperation.State.UNKNOWN and op.kind in RESOLVABLE_KINDS)
    return {
        "order": order,
        "lines": lines,
        "marks": marks,
        "documents": sorted(documents, key=lambda d: d.fd_number),
        "card_ops": card_ops,
        "attempts": list(order.iiko_attempts.order_by("id")),
        "refunds": refunds,
        "refunds_active": any(r.state in IN_FLIGHT for r in refunds),
        "can_refund": scope.can(REFUND) and any(v > 0 for v in remaining.values()),
        "can_print": scope.can(PRINT_COPY),
        # Resolved by a named manager only (``resolved_by``): not from a kiosk's PIN screen.
        "can_resolve": scope.can(REFUND) and not scope.embed,
        "can_resend": scope.can(RESEND) and _resendable(order),
        "after": _last_refund_id(order),
        "issues": order_issues(facts_of(order)),
        "timeline": scope.events().filter(object_ref=f"order:{order.pk}").exclude(
            action__in=[jobs.DONE, jobs.FAILED]).select_related("user").order_by("created_at", "id"),
        "running": jobs.running_jobs(jobs.ORDER_KINDS, object_ref=f"order:{order.pk}").get(order.kiosk_id, []),
    }


@require_GET
def order(request: HttpRequest, scope: Scope, order_id) -> HttpResponse:
    current = _order(scope, order_id)
    state = shown_job(request, scope)
    return page(request, scope, "panel/order.html", {
        **order_context(scope, current), "shown": job_context(scope, state) if state else None,
    })


class HtmxHttpRequest(HttpRequest):
    """A request seen by django-htmx's middleware (its documented way to type ``request.htmx``)."""

    htmx: HtmxDetails


@require_GET
def refunds(request: HtmxHttpRequest, scope: Scope, order_id) -> HttpResponse:
    """The refunds section, polled while a refund is in flight (286 once none is)."""
    current = _order(scope, order_id)
    context = {"scope": scope, **order_context(scope, current)}
    status = 200 if context["refunds_active"] else STOP_POLLING
    return render(request, "panel/order.html#refunds", context, status=status if request.htmx else 200)


def _quantities(request: HttpRequest, order: Order) -> dict[int | str, str]:
    if request.POST.get("full"):
        return {line_id: str(q) for line_id, q in _refundable(order).items() if q > 0}
    quantities: dict[int | str, str] = {}
    for name in request.POST:
        raw = request.POST[name]  # what items() gives: the last value
        if not name.startswith("qty_") or not raw.strip():
            continue
        line_id = name.removeprefix("qty_")
        value = raw.strip().replace(",", ".")
        try:
            if Decimal(value) == 0:
                continue
        except InvalidOperation:
            pass  # the service refuses it with its own message
        quantities[line_id] = value
    return quantities


def _marks(request: HttpRequest) -> dict[str, list[str]] | None:
    """The marked units ticked per line (``mark_<line id>``: OrderMark ids); a line none are ticked for gives back
    its last units. None for the full refund: every unit goes back."""
    if request.POST.get("full"):
        return None
    return {name.removeprefix("mark_"): request.POST.getlist(name) for name in request.POST if name.startswith("mark_")}


def _above_remaining(order: Order, quantities: dict[int | str, str]) -> str:
    """The first line asked for more than may still go back, named with what may (the service would refuse the
    refund too, without naming the line); "" when none is."""
    remaining = _refundable(order)
    lines = {str(line.pk): line for line in order.lines.all()}
    for line_id, raw in quantities.items():
        line = lines.get(str(line_id))
        try:
            quantity = Decimal(str(raw))
        except InvalidOperation:
            continue  # the service refuses it with its own message
        if line is None or not quantity.is_finite() or not 0 <= quantity <= MAX_QUANTITY:
            continue  # not a quantity at all: the service says so
        left = remaining.get(line.pk, Decimal("0"))
        if quantity > left:
            unit = line.get_unit_display()
            return (f"Нельзя вернуть больше, чем оплачено и ещё не возвращено: позиция {line.position} "
                    f"«{line.receipt_name}» — можно вернуть не больше {qty(left)} {unit}, указано {qty(quantity)}.")
    return ""


@require_POST
def refund(request: HttpRequest, scope: Scope, order_id) -> HttpResponse:
    """Refund by lines (every line in full = a full refund): money to the card and/or cancel in iiko.

    The form carries the id of the last refund the manager saw; under the order's refund lock a
    form that was filled before another refund (a double click, a second manager) is refused, so a
    second click can never make a second refund. The service itself never refunds above what was paid.
    """
    scope.require(REFUND)
    current = _order(scope, order_id)
    to_card = request.POST.get("to_card") == "on"
    cancel_in_iiko = request.POST.get("cancel_in_iiko") == "on"
    error = ""
    try:
        with device_lock(refund_lock_key(current), purpose="возврат из панели", wait=10):
            if request.POST.get("after", "") != str(_last_refund_id(current)):
                error = ("Пока форма была открыта, по заказу оформлен другой возврат. "
                         "Проверьте возвраты ниже и при необходимости повторите.")
            else:
                quantities = _quantities(request, current)
                error = _above_remaining(current, quantities) if to_card else ""
                if not error:
                    request_refund(current, quantities, to_card=to_card, cancel_in_iiko=cancel_in_iiko,
                                   user=scope.audit_user, marks=_marks(request))
    except DeviceBusy:
        error = "По заказу уже оформляется возврат. Обновите страницу и проверьте."
    except RefundError as exc:
        error = str(exc)
    if not error:
        return HttpResponseRedirect(scope.url("order", current.pk) + "#refunds")
    current = _order(scope, order_id)
    context = order_context(scope, current)
    for line in context["lines"]:  # the form comes back as the manager filled it
        line.typed = request.POST.get(f"qty_{line.pk}", "").strip().replace(",", ".")[:20]
    return page(request, scope, "panel/order.html", {
        **context, "refund_error": error, "posted": request.POST,
        "posted_marks": {v for name in request.POST if name.startswith("mark_") for v in request.POST.getlist(name)},
    }, status=200)


@require_POST
def card_charged(request: HttpRequest, scope: Scope, order_id) -> HttpResponse:
    """«Деньги списаны»: the unknown operation is approved on the RRN and authorization code the manager read
    from the slip or the terminal's report (no device call: done in the request), then the order goes on."""
    scope.require(REFUND)
    current = _order(scope, order_id)
    try:
        resolve_charged(current, optional_id(request.POST, "operation"), rrn=request.POST.get("rrn", ""),
                        auth_code=request.POST.get("auth_code", ""), note=request.POST.get("note", ""),
                        user=scope.audit_user)
    except ResolutionError as exc:
        return _resolve_error(request, scope, order_id, str(exc))
    return HttpResponseRedirect(scope.url("order", current.pk) + "#card")


@require_POST
def card_not_charged(request: HttpRequest, scope: Scope, order_id) -> HttpResponse:
    """«Деньги не списаны»: needs a terminal report taken now, a device call, so a device job does it; what
    can be checked without the terminal is checked here, and nothing starts on bad input."""
    scope.require(REFUND)
    current = _order(scope, order_id)
    try:
        note = clean_note(request.POST.get("note", ""))
        op = unknown_operation(current, optional_id(request.POST, "operation"))  # malformed: 400 (params)
    except ResolutionError as exc:
        return _resolve_error(request, scope, order_id, str(exc))
    start = jobs.start_job(scope, "card_not_charged", current.kiosk, object_ref=f"order:{current.pk}",
                           data={"card_operation_id": op.pk, "note": note},
                           message=f"{current.number}: вручную — деньги не списаны; отчёт терминала. Причина: {note}")
    return job_answer(request, scope, start, back=scope.url("order", current.pk))


def _resolve_error(request: HttpRequest, scope: Scope, order_id, error: str) -> HttpResponse:
    if getattr(request, "htmx", False):  # the form's answer goes above the page's jobs
        return HttpResponse(format_html('<p class="flash error" role="alert" data-testid="resolve-error">{}</p>',
                                        error))
    return page(request, scope, "panel/order.html", {
        **order_context(scope, _order(scope, order_id)), "resolve_error": error, "posted": request.POST,
    })


# A paid order iiko never got, or one paid after the guest's window (``paid_after_guest_left``): a manager
# sends it to the kitchen (or refunds it).
RESENDABLE = Q(status=Order.Status.NOT_DELIVERED) | Q(status=Order.Status.NEEDS_ATTENTION,
                                                     error_code="paid_after_guest_left", step=Order.Step.DONE)


def _resendable(order: Order) -> bool:
    return order.status == Order.Status.NOT_DELIVERED or (
        order.status == Order.Status.NEEDS_ATTENTION and order.error_code == "paid_after_guest_left"
        and order.step == Order.Step.DONE)


@require_POST
def resend(request: HttpRequest, scope: Scope, order_id) -> HttpResponse:
    """Send a paid order that iiko never got once more (only from not_delivered: compare-and-set)."""
    scope.require(RESEND)
    current = _order(scope, order_id)
    back = scope.url("order", current.pk)
    ref = f"order:{current.pk}"
    running = jobs.already_running("resend", current.kiosk, object_ref=ref)
    if running is not None:
        return job_answer(request, scope, running, back=back)
    jobs.check_rate(scope)  # before the order is moved: a refused start must not leave it "sending"
    moved = Order.objects.filter(RESENDABLE, pk=current.pk).update(
        step=Order.Step.IIKO, status=Order.Status.SENDING_TO_IIKO, error_code="", error_message="",
        iiko_round=F("iiko_round") + 1, updated_at=timezone.now(),
    )
    if not moved:
        return page(request, scope, "panel/order.html", {
            **order_context(scope, _order(scope, order_id)),
            "action_error": "Заказ уже не ждёт передачи в iiko: повторная отправка не нужна.",
        })
    start = jobs.start_job(scope, "resend", current.kiosk, object_ref=ref,
                           message=f"{current.number}: повторная передача в iiko")
    return job_answer(request, scope, start, back=back)


@require_POST
def print_receipt(request: HttpRequest, scope: Scope, code: str, document_id: int) -> HttpResponse:
    kiosk = scope.get_kiosk(code)
    scope.require(PRINT_COPY)
    document = get_object_or_404(FiscalDocument, pk=document_id, kiosk=kiosk)
    ref, back = _concerns(request, scope, kiosk)
    start = jobs.start_job(scope, "print_receipt", kiosk, object_ref=ref, data={"document_id": document.pk},
                           message=f"Копия документа ФД {document.fd_number}")
    return job_answer(request, scope, start, back=back)


@require_POST
def print_slip(request: HttpRequest, scope: Scope, code: str, operation_id: int) -> HttpResponse:
    kiosk = scope.get_kiosk(code)
    scope.require(PRINT_COPY)
    op = get_object_or_404(CardOperation, pk=operation_id, kiosk=kiosk)
    ref, back = _concerns(request, scope, kiosk)
    start = jobs.start_job(scope, "print_slip", kiosk, object_ref=ref, data={"card_operation_id": op.pk},
                           message=f"Копия слипа: {op.get_kind_display()} {op.rrn or op.op_id}")
    return job_answer(request, scope, start, back=back)


def _concerns(request: HttpRequest, scope: Scope, kiosk) -> tuple[str, str]:
    """What a copy concerns (for the journal) and the page to come back to: its order or shift."""
    order_id = request.POST.get("order", "")
    if order_id:
        found = scope.orders().filter(pk=order_id, kiosk=kiosk).values_list("pk", flat=True).first() if _uuid(
            order_id) else None
        if found:
            return f"order:{found}", scope.url("order", found)
    shift_id = optional_id(request.POST, "shift")  # a malformed one: 400, before anything is started
    if shift_id is not None and Shift.objects.filter(pk=shift_id, kiosk=kiosk).exists():
        return f"shift:{shift_id}", scope.url("shift", shift_id)
    return f"kiosk:{kiosk.code}", scope.url("home")


def _uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
