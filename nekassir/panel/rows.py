"""Table rows written in Python: the orders table (panel/_orders_table.html) of the orders list, the venue page,
the shift page and the kiosk embed; the shift page's receipts table (panel/shift.html).

A row of template nodes (``{% url %}``, filters, an ``{% include %}`` for the refund badge) cost ~0.5 ms; a page
shows 25 to 50 rows, and the issue's page budget is 50 ms (issue 14). Here one URL is reversed per table
(a placeholder id replaced per row), money goes through the report's fast formatter (the same text as the
``rub`` filter) and every text is escaped with ``html.escape``, as the template's autoescape does. The markup is
the template's, byte for byte in its elements and attributes (tests read ``data-testid``s and classes).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from html import escape
from typing import Any

from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

from nekassir.panel.reports import table_rub

_PLACEHOLDER = uuid.UUID(int=0)
_SHIFT_PLACEHOLDER = 987654321  # a shift id no venue reaches, replaced per row
RETURN_TYPES = ("sellReturn", "sellReturnCorrection")  # written in red (class "neg")


def _url_around(scope: Any, name: str, placeholder: Any) -> tuple[str, str]:
    """The viewer's URL of page ``name`` split around its id: one reverse per table, the id put in per row."""
    before, after = scope.url(name, placeholder).split(str(placeholder))
    return before, after


def order_rows_html(orders: Iterable[Any], scope: Any, with_issues: bool = False) -> SafeString:
    """The ``<tr>`` of each order (``with_refunds`` orders with their kiosk; ``issues`` when ``with_issues``)."""
    rub = table_rub()
    url = _url_around(scope, "order", _PLACEHOLDER)
    tz = timezone.get_current_timezone()
    full, partial = gettext("возвращён"), gettext("частично возвращён")
    out = []
    for order in orders:
        created = order.created_at.astimezone(tz).strftime("%d.%m %H:%M") if order.created_at else ""
        state = getattr(order, "refund_state", "")
        badge = ""
        if state:
            badge = (f' <span data-testid="refund-badge" data-order="{order.pk}" class="refund {escape(state)}">'
                     f'{full if state == "full" else partial} · {escape(rub(order.refunded))}</span>')
        issues = ""
        if with_issues:
            found = getattr(order, "issues", None)
            issues = (f'<td><span class="bad-text">{escape("; ".join(str(i) for i in found))}</span></td>' if found
                      else '<td><span class="ok-text">✓</span></td>')
        out.append(
            f'<tr data-testid="order-row"><td><a href="{url[0]}{order.pk}{url[1]}">{escape(order.number)}</a></td>'
            f'<td class="nowrap">{created}</td><td>{escape(order.kiosk.code)}</td>'
            f'<td><span class="status s-{escape(order.status)}">{escape(str(order.get_status_display()))}</span>'
            f'{badge}</td><td class="num">{escape(rub(order.total))}</td>{issues}</tr>')
    return mark_safe("".join(out))  # noqa: S308 - every text above is escaped; the pk is a UUID


def receipt_rows_html(receipts: Iterable[dict[str, Any]], scope: Any) -> SafeString:
    """The ``<tr>`` of each receipt row of ``shifts.receipt_rows`` (with its ``doc_label``): its number, kind
    (and «не напечатан»), FD, FPD, time, the order or the corrected shift it belongs to, and its sum."""
    rub = table_rub()
    order_url = _url_around(scope, "order", _PLACEHOLDER)
    shift_url = _url_around(scope, "shift", _SHIFT_PLACEHOLDER)
    tz = timezone.get_current_timezone()
    not_printed = f' <span class="warn-text" data-testid="not-printed">{escape(gettext("не напечатан"))}</span>'
    correction = escape(gettext("коррекция смены"))
    out = []
    for d in receipts:
        at = d["registered_at"].astimezone(tz).strftime("%H:%M:%S") if d["registered_at"] else ""
        if d["order_pk"]:
            belongs = f'<a href="{order_url[0]}{d["order_pk"]}{order_url[1]}">{escape(str(d["order_number"]))}</a>'
        elif d["corrects_pk"]:
            belongs = (f'<a href="{shift_url[0]}{int(d["corrects_pk"])}{shift_url[1]}#shift-corrections">'
                       f'{correction} №{escape(str(d["corrects_number"]))}</a>')
        else:
            belongs = "—"
        out.append(
            f'<tr data-testid="receipt-row"><td data-testid="receipt-number">{d["receipt_number"] or "—"}</td>'
            f'<td>{escape(str(d["doc_label"]))}{"" if d["printed"] else not_printed}</td>'
            f'<td>{escape(str(d["fd_number"]))}</td><td>{escape(str(d["fpd"]))}</td>'
            f'<td class="nowrap">{at}</td><td>{belongs}</td>'
            f'<td class="num {"neg" if d["doc_type"] in RETURN_TYPES else ""}">{escape(rub(d["total"]))}</td></tr>')
    return mark_safe("".join(out))  # noqa: S308 - every text above is escaped; the ids are a UUID and an int
