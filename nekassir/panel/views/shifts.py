"""A kiosk's shifts, one page each, paged previous / next: times, receipts, reconciliation, orders.

A shift has hundreds of receipts and orders: both lists are paged (``ON_PAGE`` rows), while the totals and
the reconciliation cover the whole shift (SQL aggregates and one plain row per order).
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from fiscal.models import FiscalDocument, Shift
from nekassir.models import Order
from nekassir.panel.access import Scope
from nekassir.panel.reconciliation import reconcile_shift
from nekassir.panel.views.common import ORDER_ROW, job_context, page
from nekassir.panel.views.venue import manual_actions, shown_job
from payments.models import Settlement

RECEIPT_TYPES = ("sell", "sellReturn", "sellCorrection", "sellReturnCorrection")
ON_PAGE = 25  # receipts (?receipts=N) and orders (?page=N) shown at once; the gap orders are listed above
RECEIPT_COLUMNS = ("fd_number", "doc_type", "fpd", "receipt_number", "registered_at", "total", "operation__id",
                   "operation__sold_order__number", "operation__annulled_order__number",
                   "operation__refund__order__number")


@require_GET
def shifts(request: HttpRequest, scope: Scope, code: str) -> HttpResponse:
    """The kiosk's latest shift (the start of previous / next paging)."""
    kiosk = scope.get_kiosk(code)
    latest = Shift.objects.filter(kiosk=kiosk).order_by("-id").first()
    if latest is not None:
        return HttpResponseRedirect(scope.url("shift", latest.pk))
    return page(request, scope, "panel/shift.html", {"kiosk": kiosk, "shift": None})


@require_GET
def shift(request: HttpRequest, scope: Scope, shift_id: int) -> HttpResponse:
    current = get_object_or_404(Shift.objects.select_related("kiosk").filter(kiosk__in=scope.kiosks()), pk=shift_id)
    siblings = Shift.objects.filter(kiosk=current.kiosk)
    previous = siblings.filter(id__lt=current.pk).order_by("-id").only("id", "number").first()
    following = siblings.filter(id__gt=current.pk).order_by("id").only("id", "number").first()
    documents = FiscalDocument.objects.filter(shift=current).order_by("fd_number")
    # Only what the table shows: the operations' and orders' JSON bodies are not read.
    receipts = Paginator(documents.filter(doc_type__in=RECEIPT_TYPES).select_related(
        "operation__sold_order", "operation__annulled_order", "operation__refund__order",
    ).only(*RECEIPT_COLUMNS), ON_PAGE).get_page(request.GET.get("receipts"))
    for document in receipts:
        op = document.operation
        document.order = None
        if op is not None:
            for attr in ("sold_order", "annulled_order"):
                document.order = document.order or getattr(op, attr, None)
            refund = getattr(op, "refund", None)
            document.order = document.order or (refund.order if refund is not None else None)
    reconciliation = reconcile_shift(current)
    orders = Paginator(Order.objects.filter(shift=current).select_related("kiosk").only(*ORDER_ROW)
                       .order_by("created_at", "pk"), ON_PAGE).get_page(request.GET.get("page"))
    issues = reconciliation.issues
    for order in orders:
        order.issues = issues.get(order.pk, [])
    settlements = list(Settlement.objects.filter(shift=current).select_related("operation").order_by("id"))
    state = shown_job(request, scope)
    return page(request, scope, "panel/shift.html", {
        "shown": job_context(scope, state) if state else None,
        "kiosk": current.kiosk,
        "shift": current,
        "previous": previous,
        "following": following,
        "receipts": receipts,
        "reports": list(documents.exclude(doc_type__in=RECEIPT_TYPES)),
        "rec": reconciliation,
        "orders": orders,
        "settlements": settlements,
        "journal": manual_actions(scope, object_ref=f"shift:{current.pk}")[:50],
    })
