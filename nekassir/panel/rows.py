"""Table rows written in Python: the orders table (panel/_orders_table.html) of the orders list, the venue page,
the shift page and the kiosk embed.

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


def order_rows_html(orders: Iterable[Any], scope: Any, with_issues: bool = False) -> SafeString:
    """The ``<tr>`` of each order (``with_refunds`` orders with their kiosk; ``issues`` when ``with_issues``)."""
    rub = table_rub()
    url = scope.url("order", _PLACEHOLDER).split(str(_PLACEHOLDER))
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
