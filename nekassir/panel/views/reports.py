"""«Отчёты» (issue 14): the accountant's page, the exports, and the day and shift totals of the orders list.

Managers only (``manager_view``: a login and ``nekassir.view_order``); a kiosk's embed has no reports. A bad
period, kind or kiosk answers 400 with a Russian message: the page shows it above its form, an export answers
it as plain text (a tool reading the export gets the reason).
"""

from __future__ import annotations

from typing import cast

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.models import Kiosk
from nekassir.panel import exports
from nekassir.panel.access import Scope
from nekassir.panel.reports import (
    MAX_PAGE_DAYS,
    BadPeriod,
    Period,
    build_report,
    current_totals,
    day_rows_html,
    kiosks_named,
    shift_rows_html,
)
from nekassir.panel.views.common import page

KINDS = (("orders", "Заказы"), ("receipts", "Чеки (ФД, ФПД, НДС по ставкам)"),
         ("card", "Операции по картам (RRN, карта)"))


@require_GET
def reports(request: HttpRequest, scope: Scope) -> HttpResponse:
    kiosks = list(Kiosk.objects.order_by("code").only("code", "name"))
    context = {"nav": "reports", "kiosks": kiosks, "kinds": KINDS, "max_days": MAX_PAGE_DAYS,
               "chosen": request.GET.getlist("kiosk"), "raw_from": request.GET.get("from", ""),
               "raw_to": request.GET.get("to", "")}
    try:
        period = Period.parse(request.GET, default=Period.this_month(), max_days=MAX_PAGE_DAYS)
        chosen = kiosks_named(request.GET.getlist("kiosk"))
    except BadPeriod as exc:
        return page(request, scope, "panel/reports.html", {**context, "error": str(exc)}, status=400)
    report = build_report(period, chosen)
    one = chosen[0].code if len(chosen) == 1 else ""
    query = period.query() + (f"&kiosk={one}" if one else "")
    return page(request, scope, "panel/reports.html", {
        **context, "period": period, "report": report, "chosen": [k.code for k in chosen],
        "raw_from": period.start.isoformat(), "raw_to": period.end.isoformat(), "export_query": query,
        "export_kiosk": one, "shift_rows": shift_rows_html(report.shifts),
        "day_rows": day_rows_html(report.days),
    })


def _export(request: HttpRequest, extension: str) -> HttpResponse:
    try:
        export, period, kiosk = exports.export_of(request.GET)
    except BadPeriod as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    name = exports.filename(export, period, kiosk, extension)
    # Streamed answers (not HttpResponse subclasses), through the panel's decorators typed for HttpResponse.
    if extension == "csv":
        return cast(HttpResponse, exports.csv_response(export, name))
    return cast(HttpResponse, exports.xlsx_response(export, name))


@require_GET
def export_csv(request: HttpRequest, scope: Scope) -> HttpResponse:
    return _export(request, "csv")


@require_GET
def export_xlsx(request: HttpRequest, scope: Scope) -> HttpResponse:
    return _export(request, "xlsx")


@require_GET
def totals(request: HttpRequest, scope: Scope) -> HttpResponse:
    """The orders list's top block (loaded by htmx): today's figures and each open shift's."""
    try:
        kiosks = kiosks_named([request.GET.get("kiosk", "")])
    except BadPeriod as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    return render(request, "panel/reports.html#current-totals", {"scope": scope, "totals": current_totals(kiosks)})
