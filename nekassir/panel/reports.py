"""Reports for the accountant (issue 14): a period's sales, annulments, returns and net, by day and by shift.

What counts, from our own records of what the devices did:

* **sales** (продажи): orders whose sell receipt is done, by the order's day and shift;
* **annulments** (аннулирования): of those, the orders whose sell was annulled by a sellReturn (the card was
  declined after the receipt): money never taken;
* **returns** (возвраты): a manager's refunds whose return receipt is done, by the refund's day and the shift
  of its return receipt;
* **net** = sales − annulments − returns; **card** = approved card sales of the orders − approved card
  refunds; **other** = net − card (receipts without an approved card operation: should be 0);
* **average check** = (sales − annulments) / the number of sold, not annulled orders.
* **top items**: the lines of the paid orders (completed, or paid and not delivered to iiko), by amount;
  returns are not subtracted, modifiers not counted.

Days are the venue's days (``TIME_ZONE``): the period's bounds are its local midnights and rows are grouped
with ``TruncDate`` in that zone. Everything is SQL aggregates in a fixed number of queries whatever the period:
the rows read back are one per (day, kiosk, shift) or (day, kiosk, item), never one per order. The orders'
figures of past days are kept (``nekassir.report_summary``: the settled orders of a day, filled on the first
report that needs the day, invalidated by the code that settles one of its orders); today, the unsettled orders
and the refunds are always read from the orders themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from html import escape
from typing import Any

from django.core.exceptions import BadRequest
from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format, get_format, localize
from django.utils.safestring import SafeString, mark_safe

from core.models import Kiosk
from core.money import rub
from fiscal.models import Shift
from nekassir.models import Order, Refund
from nekassir.report_summary import ANNULLED, CARD_PAID, SOLD, ItemRow, OrderRow, summarize

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
MAX_PAGE_DAYS = 366  # the page's longest period (the exports take any)
TOP_ITEMS = 10
KIOSK_CODE_MAX = 64
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

RETURNED = Q(return_operation__state="done")


class BadPeriod(BadRequest):
    """A period or kiosk the reports cannot take: answered 400 with this Russian message."""


def venue_zone() -> tzinfo:
    return timezone.get_default_timezone()


def parse_date(raw: str | None, name: str) -> date:
    """``YYYY-MM-DD`` exactly (not the other forms ``date.fromisoformat`` takes), else BadPeriod."""
    label = {"from": "начала", "to": "конца"}.get(name, name)
    if not raw or not _DATE.fullmatch(raw):
        raise BadPeriod(f"Неверная дата {label} периода ({name}): ожидается ГГГГ-ММ-ДД, получено {(raw or '')[:20]!r}")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadPeriod(f"Неверная дата {label} периода ({name}): такого дня нет ({raw})") from None


@dataclass(frozen=True)
class Period:
    """From ``start`` to ``end``, both days included, in the venue's time zone."""

    start: date
    end: date

    @classmethod
    def parse(cls, params: Mapping[str, str], *, default: Period | None = None, max_days: int | None = None) -> Period:
        if default is not None and not params.get("from") and not params.get("to"):
            return default
        period = cls(parse_date(params.get("from"), "from"), parse_date(params.get("to"), "to"))
        if period.end < period.start:
            raise BadPeriod(f"Период: начало {period.start:%d.%m.%Y} позже конца {period.end:%d.%m.%Y}")
        if max_days is not None and period.days > max_days:
            raise BadPeriod(f"Период не длиннее {max_days} дней (выбрано {period.days}); "
                            "за больший срок выгрузите данные в CSV или XLSX")
        return period

    @classmethod
    def this_month(cls) -> Period:
        today = timezone.localdate(timezone=venue_zone())
        return cls(today.replace(day=1), today)

    @classmethod
    def today(cls) -> Period:
        today = timezone.localdate(timezone=venue_zone())
        return cls(today, today)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def since(self) -> datetime:
        """The first moment: local midnight of ``start``."""
        return datetime.combine(self.start, time.min, tzinfo=venue_zone())

    @property
    def until(self) -> datetime:
        """The first moment after: local midnight after ``end``."""
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=venue_zone())

    def each_day(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range(self.days)]

    def query(self) -> str:
        return f"from={self.start.isoformat()}&to={self.end.isoformat()}"


def kiosks_named(codes: Sequence[str]) -> list[Kiosk]:
    """The kiosks of ``codes`` (every kiosk's history, active or not), or BadPeriod naming an unknown one."""
    codes = [code for code in codes if code]
    if not codes:
        return []
    for code in codes:
        if len(code) > KIOSK_CODE_MAX or not code.isprintable():  # never sent to the database (NUL, …)
            raise BadPeriod(f"Неизвестный киоск: {code[:40]!r}")
    found = {k.code: k for k in Kiosk.objects.filter(code__in=codes)}
    unknown = [code for code in codes if code not in found]
    if unknown:
        raise BadPeriod(f"Неизвестный киоск: {unknown[0][:40]}")
    return [found[code] for code in dict.fromkeys(codes)]


# --- figures ------------------------------------------------------------------------------------------
def _money(value: Any) -> Decimal:
    return ZERO if value is None else Decimal(value).quantize(CENT)


def _kopecks(value: Any) -> Decimal:
    return ZERO if not value else (Decimal(int(value)) / 100).quantize(CENT)


@dataclass
class Figures:
    sales: Decimal = ZERO
    sales_count: int = 0
    annulments: Decimal = ZERO
    annulments_count: int = 0
    returns: Decimal = ZERO
    returns_count: int = 0
    card: Decimal = ZERO

    def add(self, other: Figures) -> None:
        self.sales += other.sales
        self.sales_count += other.sales_count
        self.annulments += other.annulments
        self.annulments_count += other.annulments_count
        self.returns += other.returns
        self.returns_count += other.returns_count
        self.card += other.card

    @property
    def net(self) -> Decimal:
        return self.sales - self.annulments - self.returns

    @property
    def other(self) -> Decimal:
        """Net not matched by an approved card operation (all our sales are by card: a gap when not 0)."""
        return self.net - self.card

    @property
    def checks(self) -> int:
        return self.sales_count - self.annulments_count

    @property
    def average(self) -> Decimal | None:
        if self.checks <= 0:
            return None
        return ((self.sales - self.annulments) / self.checks).quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def empty(self) -> bool:
        return not (self.sales_count or self.returns_count)


def _orders(period: Period, kiosks: Sequence[Kiosk]) -> QuerySet[Order]:
    orders = Order.objects.filter(created_at__gte=period.since, created_at__lt=period.until)
    return orders.filter(kiosk__in=kiosks) if kiosks else orders


def _refunds(period: Period, kiosks: Sequence[Kiosk]) -> QuerySet[Refund]:
    refunds = Refund.objects.filter(RETURNED, created_at__gte=period.since, created_at__lt=period.until)
    return refunds.filter(kiosk__in=kiosks) if kiosks else refunds


def order_rows(orders: QuerySet[Order], *keys: str) -> Iterable[dict[str, Any]]:
    """One row per ``keys`` (``day`` and/or ``shift_id``), with the orders' sums and counts (one query)."""
    return (orders.annotate(day=TruncDate("created_at", tzinfo=venue_zone())).order_by().values(*keys)
            .annotate(sales=Sum("total", filter=SOLD), sales_count=Count("pk", filter=SOLD),
                      annulments=Sum("total", filter=ANNULLED), annulments_count=Count("pk", filter=ANNULLED),
                      card=Sum("card_sale__amount_kopecks", filter=SOLD & CARD_PAID & ~ANNULLED)))


def refund_rows(refunds: QuerySet[Refund], *keys: str) -> Iterable[dict[str, Any]]:
    """One row per ``keys`` (``day`` and/or ``shift_id``: the shift of the return receipt), one query."""
    return (refunds.annotate(day=TruncDate("created_at", tzinfo=venue_zone()),
                             shift_id=F("return_operation__document__shift_id"))
            .order_by().values(*keys)
            .annotate(returns=Sum("amount_kopecks"), returns_count=Count("pk"),
                      card=Sum("card_operation__amount_kopecks", filter=Q(card_operation__state="approved"))))


def figures_of(row: Mapping[str, Any]) -> Figures:
    """A row of ``order_rows`` or ``refund_rows`` as figures (the card refunds count against the card)."""
    return Figures(
        sales=_money(row.get("sales")), sales_count=row.get("sales_count") or 0,
        annulments=_money(row.get("annulments")), annulments_count=row.get("annulments_count") or 0,
        returns=_kopecks(row.get("returns")), returns_count=row.get("returns_count") or 0,
        card=_kopecks(row.get("card")) if "sales" in row else -_kopecks(row.get("card")),
    )


def _grouped(orders: QuerySet[Order], refunds: QuerySet[Refund], *keys: str) -> list[tuple[dict[str, Any], Figures]]:
    """(the row's ``keys``, its figures) of the orders and of the refunds grouped by ``keys``: two queries."""
    return [({key: row[key] for key in keys}, figures_of(row))
            for rows in (order_rows(orders, *keys), refund_rows(refunds, *keys)) for row in rows]


def _by(rows: Iterable[tuple[dict[str, Any], Figures]], key: str) -> dict[Any, Figures]:
    folded: dict[Any, Figures] = {}
    for keys, figures in rows:
        folded.setdefault(keys[key], Figures()).add(figures)
    return folded


# --- the report page ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DayRow:
    day: date
    figures: Figures


@dataclass(frozen=True)
class KioskShown:
    code: str


@dataclass(frozen=True)
class ShiftShown:
    """What the report's shift table shows of a shift, read as plain values: a month has hundreds of shifts,
    and loading them as models (with their kiosks) cost ~3 ms of the page's 50."""

    pk: int
    number: int
    opened_at: datetime | None
    kiosk: KioskShown


@dataclass(frozen=True)
class ShiftRow:
    shift: Shift | ShiftShown
    figures: Figures


@dataclass(frozen=True)
class Bar:
    """One day's bar of the chart, in the SVG's own units (drawn by the template, no script)."""

    day: date
    x: float
    y: float
    width: float
    height: float
    net: Decimal


@dataclass
class Report:
    period: Period
    kiosks: list[Kiosk]
    total: Figures
    days: list[DayRow]
    shifts: list[ShiftRow]
    top_items: list[dict[str, Any]]
    chart: dict[str, Any] = field(default_factory=dict)


CHART_WIDTH, CHART_HEIGHT, CHART_TOP = 720, 180, 12


def chart(days: Sequence[DayRow]) -> dict[str, Any]:
    """Bars of each day's net, scaled to the largest (a negative day draws no bar, its label says it)."""
    peak = max((row.figures.net for row in days), default=ZERO)
    step = CHART_WIDTH / max(len(days), 1)
    width = max(step * 0.8, 1.0)
    bars = []
    for n, row in enumerate(days):
        net = row.figures.net
        height = float(net / peak) * (CHART_HEIGHT - CHART_TOP) if peak > 0 and net > 0 else 0.0
        bars.append(Bar(row.day, round(n * step + (step - width) / 2, 2), round(CHART_HEIGHT - height, 2),
                        round(width, 2), round(height, 2), net))
    labels = [(round(b.x + b.width / 2, 2), b.day) for b in (bars[:1] + bars[len(bars) // 2:][:1] + bars[-1:])]
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "bars": bars, "peak": peak,
            "labels": list(dict.fromkeys(labels)), "label_y": CHART_HEIGHT + 16}


def _order_figures(row: OrderRow) -> Figures:
    return Figures(sales=row.sales, sales_count=row.sales_count, annulments=row.annulments,
                   annulments_count=row.annulments_count, card=_kopecks(row.card_kopecks))


def top_items(items: Iterable[ItemRow], limit: int = TOP_ITEMS) -> list[dict[str, Any]]:
    """The items by amount (then name, in the database's collation, as ``ORDER BY name`` would), summed over
    the rows: ``orders`` counts the lines, as the page always did. The rows are the lines of the paid orders
    (completed, or paid and not delivered to iiko), read from the order row alone (a join to the fiscal journal
    for every line would cost more than the whole rest of the page)."""
    by_name: dict[str, dict[str, Any]] = {}
    for row in items:
        item = by_name.setdefault(row.name, {"name": row.name, "quantity": Decimal(0), "amount": ZERO, "orders": 0})
        item["quantity"] += row.quantity
        item["amount"] += row.amount
        item["orders"] += row.lines
    ranked = sorted(by_name.values(), key=lambda item: (-item["amount"], item["name"]))
    if len(ranked) > limit:  # the last place shown, and any tie with it
        ranked = [item for item in ranked if item["amount"] >= ranked[limit - 1]["amount"]]
    amounts = [item["amount"] for item in ranked]
    tied = [item["name"] for item in ranked if amounts.count(item["amount"]) > 1]
    if tied:
        rank = {name: n for n, name in enumerate(collated(tied))}
        ranked.sort(key=lambda item: (-item["amount"], rank.get(item["name"], -1)))
    return [{**item, "quantity": item["quantity"].normalize(), "amount": _money(item["amount"])}
            for item in ranked[:limit]]


def collated(names: Sequence[str]) -> list[str]:
    """``names`` in the database's own order of text (one query; only for items of equal amounts)."""
    select = " UNION ALL ".join(["SELECT %s AS name"] * len(names))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT name FROM ({select}) AS names ORDER BY name", list(names))  # noqa: S608
        return [row[0] for row in cursor.fetchall()]


def build_report(period: Period, kiosks: Sequence[Kiosk]) -> Report:
    """The period's figures for ``kiosks`` (all when empty), in a fixed number of queries whatever the period
    (``summarize``: the kept days, the orders read now and their lines, and when a day was missing its row made
    and kept; the refunds by day and shift; the shifts named)."""
    summary = summarize(period.start, period.end, [kiosk.pk for kiosk in kiosks])
    rows = [({"day": row.day, "shift_id": row.shift_id}, _order_figures(row)) for row in summary.orders]
    rows += [({"day": row["day"], "shift_id": row["shift_id"]}, figures_of(row))
             for row in refund_rows(_refunds(period, kiosks), "day", "shift_id")]
    by_day, by_shift = _by(rows, "day"), _by(rows, "shift_id")
    shifts = shifts_shown([pk for pk in by_shift if pk is not None])
    total = Figures()
    for figures in by_day.values():
        total.add(figures)
    days = [DayRow(day, by_day.get(day, Figures())) for day in period.each_day()]
    shift_rows = sorted((ShiftRow(shifts[pk], figures) for pk, figures in by_shift.items() if pk in shifts),
                        key=lambda row: (row.shift.opened_at or period.since, row.shift.kiosk.code, row.shift.pk))
    return Report(period, list(kiosks), total, days, shift_rows, top_items(summary.items), chart(days))


def shifts_shown(ids: Sequence[int]) -> dict[int, ShiftShown]:
    """The shifts ``ids`` by id, with what the table shows of them (one query; a kiosk's code kept once)."""
    kiosks: dict[str, KioskShown] = {}
    rows = Shift.objects.filter(pk__in=ids).values_list("pk", "number", "opened_at", "kiosk__code")
    return {pk: ShiftShown(pk, number, opened_at, kiosks.setdefault(code, KioskShown(code)))
            for pk, number, opened_at, code in rows}


def table_rub() -> Callable[[Any], str]:
    """``core.money.rub`` for a table of many cells: the active language's separators read once, not per cell
    (``number_format`` looks them up each time: ~9 µs a cell); the same text, or ``rub`` itself when the
    language does not group by three."""
    point = str(get_format("DECIMAL_SEPARATOR", use_l10n=True))
    thousands = str(get_format("THOUSAND_SEPARATOR", use_l10n=True))
    if get_format("NUMBER_GROUPING", use_l10n=True) != 3:
        return rub

    def fast(value: Any) -> str:
        if value in (None, ""):
            return "—"
        text = f"{Decimal(str(value)).quantize(CENT):,.2f}"
        return f"{text.replace(',', ' ').replace('.', point).replace(' ', thousands)} ₽"
    return fast


def shift_rows_html(rows: Sequence[ShiftRow]) -> SafeString:
    """The shift table's rows, as the template wrote them: a month has hundreds of shifts, and ~2,000 money
    cells cost ~50 ms as template nodes, ~15 ms through format_html_join (conditional_escape per cell), a few
    here: the URL reversed once (a placeholder pk), every text through html.escape (the same text and
    escaping as the template's autoescape)."""
    rub = table_rub()
    url = reverse("panel:shift", args=[0]).rsplit("0", 1)
    tz = timezone.get_current_timezone()
    out = []
    for row in rows:
        shift, f = row.shift, row.figures
        opened = shift.opened_at.astimezone(tz).strftime("%d.%m.%Y %H:%M") if shift.opened_at else "—"
        money = _money_cells(rub, f)
        out.append(
            f'<tr><td>{escape(shift.kiosk.code)}</td><td><a href="{url[0]}{shift.pk}{url[1]}">№{shift.number}</a>'
            f'</td><td class="nowrap">{opened}</td><td class="num">{money[0]}</td><td class="num">{money[1]}</td>'
            f'<td class="num">{money[2]}</td><td class="num"><strong>{money[3]}</strong></td>'
            f'<td class="num">{money[4]}</td><td class="num">{money[5]}</td></tr>')
    return mark_safe("".join(out))  # noqa: S308 - every text above is escaped; the pk and number are integers


def _money_cells(rub: Callable[[Any], str], f: Figures) -> list[str]:
    """The six money cells of a shift or day row, escaped: sales, annulments, returns, net, card, average."""
    return [escape(rub(value)) for value in (f.sales, f.annulments, f.returns, f.net, f.card, f.average)]


def day_rows_html(rows: Sequence[Any]) -> SafeString:
    """The day table's rows (``report.days``), as the template wrote them, for the same reason as the shifts':
    a month is ~30 rows of seven money cells. The date through Django's own date format (the weekday in the
    active language, as the ``date`` filter writes it); ``checks`` through ``localize``, as the template would."""
    rub = table_rub()
    out = []
    for row in rows:
        f = row.figures
        money = _money_cells(rub, f)
        out.append(
            f'<tr><td class="nowrap">{escape(date_format(row.day, "d.m.Y, D"))}</td><td class="num">{money[0]}</td>'
            f'<td class="num">{money[1]}</td><td class="num">{money[2]}</td><td class="num"><strong>{money[3]}'
            f'</strong></td><td class="num">{money[4]}</td><td class="num">{escape(str(localize(f.checks)))}</td>'
            f'<td class="num">{money[5]}</td></tr>')
    return mark_safe("".join(out))  # noqa: S308 - every text above is escaped


# --- the orders list's totals ------------------------------------------------------------------------
@dataclass
class CurrentTotals:
    day: date
    today: Figures
    shifts: list[ShiftRow]


def current_totals(kiosks: Sequence[Kiosk]) -> CurrentTotals:
    """Today's figures (the venue's day) and each open shift's, for the top of the orders list: five queries."""
    today = Period.today()
    figures = Figures()
    for _, row_figures in _grouped(_orders(today, kiosks), _refunds(today, kiosks), "day"):
        figures.add(row_figures)
    open_shifts = Shift.objects.filter(state=Shift.State.OPEN).select_related("kiosk").order_by("kiosk__code", "pk")
    if kiosks:
        open_shifts = open_shifts.filter(kiosk__in=kiosks)
    shifts = list(open_shifts)
    by_shift = _by(_grouped(Order.objects.filter(shift__in=shifts),
                            Refund.objects.filter(RETURNED, return_operation__document__shift__in=shifts),
                            "shift_id"), "shift_id")
    return CurrentTotals(today.start, figures, [ShiftRow(s, by_shift.get(s.pk, Figures())) for s in shifts])
