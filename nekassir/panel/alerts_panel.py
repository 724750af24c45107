"""The venue's current problems on the venue page: the same list ``nekassir.alerts`` sends to Telegram.

Read from the database only, in a fixed number of queries however many orders there are (``find_problems``
is written so), and loaded by htmx after the page, so the venue page never waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nekassir.alerts import find_problems

ORDER_LIMIT = 20  # order problems listed; beyond that the list links to the orders needing attention
LEVELS = {"order_not_delivered": "bad", "order_needs_attention": "bad", "register_not_ready": "bad",
          "terminal_not_ready": "bad", "card_unknown": "bad",
          "card_unknown_escalated": "bad"}  # the rest (shift not reconciled, FN, OFD) are warnings


@dataclass(frozen=True)
class PanelAlert:
    level: str  # bad | warn
    text: str
    kiosk: str
    since: datetime | None
    url: str  # the order's or shift's page, or ""


def current_alerts(scope) -> tuple[list[PanelAlert], bool]:
    """(problems to show, bad ones first; whether there are more order problems than listed)."""
    problems = find_problems(order_limit=ORDER_LIMIT + 1)
    orders = [p for p in problems if p.kind.startswith("order_")]
    more = len(orders) > ORDER_LIMIT
    if more:
        problems.remove(orders[-1])
    if scope.embed:  # a kiosk's own screen sees its own kiosk only
        problems = [p for p in problems if p.kiosk_id == scope.kiosk.pk]
    rows = [PanelAlert(LEVELS.get(p.kind, "warn"), p.text, p.kiosk_code, p.since,
                       scope.url(*p.link) if p.link else "") for p in problems]
    return sorted(rows, key=lambda row: row.level != "bad"), more
