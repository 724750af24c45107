"""A kiosk's shifts, one page each, paged previous / next: times, the latest X report, receipts, reconciliation,
orders, and the correction receipts that fix its gaps (made from here, ``correction``).

A shift has hundreds of receipts and orders: both lists are paged (``ON_PAGE`` rows), while the totals and
the reconciliation cover the whole shift (SQL aggregates and one plain row per order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.paginator import Paginator
from django.db.models import F, Func, OuterRef, QuerySet, Subquery, UUIDField
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from core.models import Event
from core.money import rub
from fiscal import vat as vat_rules
from fiscal.corrections import MAX_LINES, VAT_LABELS, CorrectionInvalid, parse_correction
from fiscal.models import Correction, FiscalDocument, Shift
from nekassir.models import Order, OrderMark, Refund
from nekassir.panel import jobs
from nekassir.panel.access import MANAGE_SHIFT, Scope
from nekassir.panel.outcomes import x_report_figures
from nekassir.panel.params import page_number
from nekassir.panel.reconciliation import reconcile_shift
from nekassir.panel.venue import with_refunds
from nekassir.panel.views.common import ORDER_ROW, job_answer, job_context, page
from nekassir.panel.views.venue import manual_actions, shown_job
from payments.models import Settlement

RECEIPT_TYPES = ("sell", "sellReturn", "sellCorrection", "sellReturnCorrection")
ON_PAGE = 25  # receipts (?receipts=N) and orders (?page=N) shown at once; the gap orders are listed above
RECEIPT_COLUMNS = ("fd_number", "doc_type", "fpd", "receipt_number", "registered_at", "total", "printed")
DOC_LABELS = dict(FiscalDocument.Type.choices)


@require_GET
def shifts(request: HttpRequest, scope: Scope, code: str) -> HttpResponse:
    """The kiosk's latest shift (the start of previous / next paging)."""
    kiosk = scope.get_kiosk(code)
    latest = Shift.objects.filter(kiosk=kiosk).order_by("-id").first()
    if latest is not None:
        return HttpResponseRedirect(scope.url("shift", latest.pk))
    return page(request, scope, "panel/shift.html", {"kiosk": kiosk, "shift": None})


def _shift(scope: Scope, shift_id: int) -> Shift:
    return get_object_or_404(Shift.objects.select_related("kiosk").filter(kiosk__in=scope.kiosks()), pk=shift_id)


@require_GET
def shift(request: HttpRequest, scope: Scope, shift_id: int) -> HttpResponse:
    return page(request, scope, "panel/shift.html", shift_context(request, scope, _shift(scope, shift_id)))


def shift_context(request: HttpRequest, scope: Scope, current: Shift, posted=None) -> dict:
    facts = shift_facts(current)
    documents = FiscalDocument.objects.filter(shift=current).order_by("fd_number")
    receipts = Paginator(receipt_rows(current), ON_PAGE).get_page(page_number(request.GET, "receipts"))
    for row in receipts:
        row["doc_label"] = DOC_LABELS.get(row["doc_type"], row["doc_type"])
    reconciliation = reconcile_shift(current)
    orders = Paginator(with_refunds(Order.objects.filter(shift=current)).select_related("kiosk").only(*ORDER_ROW)
                       .order_by("created_at", "pk"), ON_PAGE).get_page(page_number(request.GET, "page"))
    issues = reconciliation.issues
    for order in orders:
        order.issues = issues.get(order.pk, [])  # type: ignore[attr-defined]  # for the template
    settlements = list(Settlement.objects.filter(shift=current).select_related("operation").order_by("id"))
    state = shown_job(request, scope)
    return {
        "shown": job_context(scope, state) if state else None,
        "kiosk": current.kiosk,
        "shift": current,
        "previous": facts["previous"],
        "following": facts["following"],
        "receipts": receipts,
        "reports": list(documents.exclude(doc_type__in=RECEIPT_TYPES)),
        "rec": reconciliation,
        "orders": orders,
        "settlements": settlements,
        "marks": facts["marks"],
        "xreport": facts["xreport"],
        "journal": manual_actions(scope, object_ref=f"shift:{current.pk}")[:50],
        "corrections": list(Correction.objects.filter(shift=current).select_related(
            "operation__document__shift", "created_by").order_by("id")),
        "can_correct": not scope.embed and scope.can(MANAGE_SHIFT),
        "correction_form": correction_form(posted or {}),
    }


def receipt_rows(current: Shift) -> QuerySet:
    """The shift's receipts as rows for the table, with what each belongs to: an order (sold, annulled or
    refunded by it) or the shift a correction receipt fixes. Scalar subqueries on the operation's unique
    indexes, evaluated for the page's rows only: the same through select_related was a join of eight tables,
    which PostgreSQL took 7.8 ms to plan and 4.1 ms to run on the bench data (1,000,000 orders)."""
    op = OuterRef("operation_id")
    sold, annulled = Order.objects.filter(sell_operation=op), Order.objects.filter(annul_operation=op)
    refunded, corrected = Refund.objects.filter(return_operation=op), Correction.objects.filter(operation=op)
    return (FiscalDocument.objects.filter(shift=current, doc_type__in=RECEIPT_TYPES).order_by("fd_number")
            .values(*RECEIPT_COLUMNS).annotate(
                order_pk=Coalesce(_first(sold, "pk"), _first(annulled, "pk"), _first(refunded, "order_id"),
                                  output_field=UUIDField()),
                order_number=Coalesce(_first(sold, "number"), _first(annulled, "number"),
                                      _first(refunded, "order__number")),
                corrects_pk=_first(corrected, "shift_id"), corrects_number=_first(corrected, "shift__number")))


# fiscal.shifts.print_x_report's journal line (from the panel, the kiosk's menu or the kkt command), tied to the shift
# it was printed in, with the register's counters read right after the paper.
XREPORT_PRINTED = "fiscal.shift.xreport"


@dataclass(frozen=True)
class Neighbour:
    """The previous or the following shift of the kiosk, for the paging links."""

    pk: int
    number: int


def _first(queryset: QuerySet, field: str) -> Subquery:
    return Subquery(queryset.values(field)[:1])


def shift_facts(current: Shift) -> dict[str, Any]:
    """The page's small facts about the shift in ONE statement (each a scalar subquery on an index): the kiosk's
    previous and following shift, the marked units (``marks``, issue 13) and the latest X report (``xreport``).
    Five separate queries cost the page ~6 ms of SQL compiling and round trips; the page's budget is 50 ms.

    Marked units counted: those whose sell receipt is in this shift and still stand (sold, or returned later by
    a refund; an annulled sale is not counted), and those a refund's return receipt in this shift took back.
    The X report: fiscal.shifts.print_x_report's journal line tied to this shift (the latest one)."""
    siblings = Shift.objects.filter(kiosk=current.kiosk_id)
    before = siblings.filter(id__lt=current.pk).order_by("-id")
    after = siblings.filter(id__gt=current.pk).order_by("id")
    sold = OrderMark.objects.filter(order__sell_operation__document__shift=current.pk,
                                    state__in=[OrderMark.State.SOLD, OrderMark.State.RETURNED])
    returned = OrderMark.objects.filter(refund__return_operation__document__shift=current.pk,
                                        state=OrderMark.State.RETURNED)
    printed = Event.objects.filter(object_ref=f"shift:{current.pk}", action=XREPORT_PRINTED).order_by("-id")
    count = Func(F("pk"), function="COUNT")  # no GROUP BY: one count over the filtered rows (no default order)
    row = Shift.objects.filter(pk=current.pk).values(
        previous_pk=_first(before, "id"), previous_number=_first(before, "number"),
        following_pk=_first(after, "id"), following_number=_first(after, "number"),
        marks_sold=Subquery(sold.order_by().annotate(n=count).values("n")[:1]),
        marks_returned=Subquery(returned.order_by().annotate(n=count).values("n")[:1]),
        xreport_at=_first(printed, "created_at"), xreport_data=_first(printed, "data"),
    ).get()
    return {
        "previous": Neighbour(row["previous_pk"], row["previous_number"]) if row["previous_pk"] else None,
        "following": Neighbour(row["following_pk"], row["following_number"]) if row["following_pk"] else None,
        "marks": {"sold": row["marks_sold"] or 0, "returned": row["marks_returned"] or 0},
        "xreport": x_report_shown(row["xreport_data"], row["xreport_at"]),
    }


def x_report_shown(data: Any, at) -> dict[str, Any] | None:
    """The latest X report as the page shows it: its figures as the job's result shows them, and when (shown
    in the venue's TIME_ZONE); None when none was printed in the shift."""
    if at is None:
        return None
    return {**x_report_figures((data or {}).get("totals"), None), "at": at}


def correction_form(posted) -> dict:
    """What the correction form shows: what was posted (after a refusal), else the defaults."""
    rows = [{"index": i, "name": posted.get(f"name_{i}", ""), "price": posted.get(f"price_{i}", ""),
             "quantity": posted.get(f"quantity_{i}", "1"), "vat": posted.get(f"vat_{i}", "")} for i in range(MAX_LINES)]
    return {
        "rows": rows,
        "vat": {code: label for code, label in VAT_LABELS.items() if code not in vat_rules.CALCULATED},
        "kind": posted.get("kind", Correction.Kind.SELL),
        "basis": posted.get("basis", Correction.Basis.SELF),
        "settlement_date": posted.get("settlement_date", timezone.localdate().isoformat()),
        "instruction_number": posted.get("instruction_number", ""),
        "reason": posted.get("reason", ""),
        "kinds": Correction.Kind.choices,
        "bases": Correction.Basis.choices,
    }


@require_POST
def correction(request: HttpRequest, scope: Scope, shift_id: int) -> HttpResponse:
    """A correction receipt for this shift's gap, as a device job; a form that cannot become one is answered
    with the page and every problem in it (422), and nothing is saved or sent."""
    if scope.embed:
        raise Http404("corrections are made by a named manager")
    scope.require(MANAGE_SHIFT)
    current = _shift(scope, shift_id)
    try:
        wanted = parse_correction(request.POST, current.kiosk)
    except CorrectionInvalid as exc:
        context = {**shift_context(request, scope, current, request.POST), "correction_errors": exc.errors}
        return page(request, scope, "panel/shift.html", context, status=422)
    basis = Correction.Basis(wanted.basis).label
    if wanted.instruction_number:
        basis += f" № {wanted.instruction_number}"
    start = jobs.start_job(scope, "correction", current.kiosk, object_ref=f"shift:{current.pk}",
                           message=(f"{wanted.label.capitalize()} на {rub(wanted.total)} за смену №{current.number} "
                                    f"({basis}, расчёт {wanted.settlement_date:%d.%m.%Y}): {wanted.reason}"),
                           data={"shift_id": current.pk, "correction": wanted.as_data()})
    return job_answer(request, scope, start, back=scope.url("shift", current.pk) + "#shift-corrections")
