"""The accountant's report's figures of past days, kept so that a month's report reads 30 rows, not 100,000 orders
(issue 14: ``/reports/`` for a month in ≤ 50 ms on 1,000,000 orders).

What is kept, per venue day (``ReportDay``, the day in ``TIME_ZONE``): the figures of the day's **settled**
orders created before the row's ``until`` (the next midnight for a past day; for today the last full hour at
least ``MARGIN`` ago), by kiosk and shift (sales, annulments, their counts, approved card sales), and their
lines' sums by kiosk and item name (the top items). An order is settled when its checkout is over (``step``
done) and it waits for nobody (not ``not_delivered``, not ``needs_attention``): nothing the report reads of it
changes any more (its receipts and card sale are final, its lines fixed; a refund is a row of its own).

What is never kept, always read from the orders themselves:

* the **unsettled** orders of every day (in the checkout, not delivered to iiko, waiting for a manager): few,
  found through the partial index ``order_active_or_attention`` whose condition is exactly theirs;
* the orders created after a day's ``until`` (today's last hour or so), and of any day not filled (yet);
* the **refunds** (a small table, and a refund's receipt may come days later).

So a day's kept figures change only when one of its orders created before ``until`` becomes settled after they
were read: that code (the checkout's final step ``nekassir.checkout._finish`` and the delivery to iiko's
``_completed``) calls ``order_settled`` in the same transaction, which bumps the day's ``generation`` when the
order was created before the current hour (an order settled within the hour it was made, nearly all of them,
writes nothing more). A kept row counts only while ``filled_generation == generation``; a reader fills (or
extends to a later ``until``) with a compare-and-set on the generation it saw before reading the orders, so a
change that commits while it reads is never kept as if it were not there:

1. the day's row exists (inserted, or upserted by a writer) before the orders are read;
2. a writer's bump is in the writer's own transaction (an upsert: it waits for, or is waited on by, a reader's
   insert of the same day), so a change committed after the reader's read has bumped the generation;
3. the reader stores ``WHERE generation = <seen>`` (and, extending, ``AND until = <seen>``): a bump in between
   makes it store nothing;
4. a reader keeps orders created before ``until`` ≤ the hour that began at least ``MARGIN`` before it read, and
   a writer bumps any order created before the current hour: a settling order a reader may have read unsettled
   is always bumped, unless the writer's transaction lasted longer than ``MARGIN``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Case, Count, DateTimeField, F, Q, QuerySet, Sum, TextField, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from nekassir.models import ACTIVE_STEPS, ATTENTION_STATUSES, Order, OrderLine, ReportDay

MARGIN = timedelta(minutes=10)
UNSETTLED = Q(step__in=ACTIVE_STEPS) | Q(status__in=ATTENTION_STATUSES)  # = the partial index's condition
SOLD = Q(sell_operation__state="done")
ANNULLED = SOLD & Q(annul_operation__state="done")
CARD_PAID = Q(card_sale__state="approved")
PAID = (Order.Status.COMPLETED, Order.Status.NOT_DELIVERED)


def venue_day(moment: datetime) -> date:
    return timezone.localdate(moment, timezone=timezone.get_default_timezone())


def venue_today() -> date:
    return venue_day(timezone.now())


# --- writers ------------------------------------------------------------------------------------------
def order_settled(order: Order) -> None:
    """Call in the transaction that moves ``order`` to its final step: when the order was made before the
    current hour, its day's kept figures may hold it unsettled and no longer count. No query otherwise."""
    if order.created_at < hour_start(timezone.now()):
        bump(venue_day(order.created_at))


def hour_start(moment: datetime) -> datetime:
    """The start of ``moment``'s hour on the venue's clock."""
    return timezone.localtime(moment, timezone.get_default_timezone()).replace(minute=0, second=0, microsecond=0)


def bump(day: date) -> None:
    """The day's kept figures no longer count (an upsert: the row is made if no reader has made it yet)."""
    table = connection.ops.quote_name(ReportDay._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (day, generation, filled_generation, figures) VALUES (%s, 1, NULL, '')"  # noqa: S608
            f" ON CONFLICT (day) DO UPDATE SET generation = {table}.generation + 1", [day])


# --- rows -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderRow:
    """Sums of some orders of one (day, kiosk, shift): money as Decimal rubles, the card as kopecks."""

    day: date
    kiosk_id: int
    shift_id: int | None
    sales: Decimal
    sales_count: int
    annulments: Decimal
    annulments_count: int
    card_kopecks: int


@dataclass(frozen=True)
class ItemRow:
    day: date
    kiosk_id: int
    name: str
    quantity: Decimal
    amount: Decimal
    lines: int


@dataclass
class DayFigures:
    """A day's kept figures (its settled orders)."""

    orders: list[OrderRow] = field(default_factory=list)
    items: list[ItemRow] = field(default_factory=list)

    def compact(self) -> DayFigures:
        """One row per (kiosk, shift) and per (kiosk, name): the sums of this day's rows."""
        orders: dict[tuple[int, int | None], OrderRow] = {}
        for r in self.orders:
            o = orders.get((r.kiosk_id, r.shift_id))
            orders[r.kiosk_id, r.shift_id] = r if o is None else OrderRow(
                r.day, r.kiosk_id, r.shift_id, o.sales + r.sales, o.sales_count + r.sales_count,
                o.annulments + r.annulments, o.annulments_count + r.annulments_count, o.card_kopecks + r.card_kopecks)
        items: dict[tuple[int, str], ItemRow] = {}
        for i in self.items:
            o2 = items.get((i.kiosk_id, i.name))
            items[i.kiosk_id, i.name] = i if o2 is None else ItemRow(
                i.day, i.kiosk_id, i.name, o2.quantity + i.quantity, o2.amount + i.amount, o2.lines + i.lines)
        return DayFigures(list(orders.values()), list(items.values()))

    def dumps(self) -> str:
        return json.dumps({
            "orders": [[r.kiosk_id, r.shift_id, str(r.sales), r.sales_count, str(r.annulments), r.annulments_count,
                        r.card_kopecks] for r in self.orders],
            "items": [[r.kiosk_id, r.name, str(r.quantity), str(r.amount), r.lines] for r in self.items],
        }, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def loads(cls, day: date, text: str) -> DayFigures:
        data = json.loads(text)
        return cls([OrderRow(day, k, s, Decimal(a), n, Decimal(b), m, c) for k, s, a, n, b, m, c in data["orders"]],
                   [ItemRow(day, k, name, Decimal(q), Decimal(a), n) for k, name, q, a, n in data["items"]])


def _money(value: Any) -> Decimal:
    return Decimal("0.00") if value is None else Decimal(value).quantize(Decimal("0.01"))


def _flags(prefix: str, horizon: datetime) -> tuple[Case, Case]:
    """(settled: the order is settled, early: it was made before ``horizon``, so it may be kept)."""
    unsettled = Q(**{f"{prefix}step__in": ACTIVE_STEPS}) | Q(**{f"{prefix}status__in": ATTENTION_STATUSES})
    return (Case(When(unsettled, then=Value(False)), default=Value(True), output_field=BooleanField()),
            Case(When(**{f"{prefix}created_at__lt": horizon}, then=Value(True)), default=Value(False),
                 output_field=BooleanField()))


def order_rows(orders: QuerySet[Order], horizon: datetime) -> Iterable[tuple[bool, OrderRow]]:
    """(keepable?, sums) per (day, kiosk, shift, settled?, made before ``horizon``?) of ``orders``: one query."""
    settled, early = _flags("", horizon)
    rows = (orders.annotate(day=TruncDate("created_at", tzinfo=timezone.get_default_timezone()),
                            settled=settled, early=early)
            .order_by().values("day", "kiosk_id", "shift_id", "settled", "early")
            .annotate(sales=Sum("total", filter=SOLD), sales_count=Count("pk", filter=SOLD),
                      annulments=Sum("total", filter=ANNULLED), annulments_count=Count("pk", filter=ANNULLED),
                      card=Sum("card_sale__amount_kopecks", filter=SOLD & CARD_PAID & ~ANNULLED)))
    for row in rows:
        yield bool(row["settled"] and row["early"]), OrderRow(
            row["day"], row["kiosk_id"], row["shift_id"], _money(row["sales"]), row["sales_count"] or 0,
            _money(row["annulments"]), row["annulments_count"] or 0, int(row["card"] or 0))


def _on_order(q: Q) -> Q:
    """``q`` (on orders) for their lines: every field through ``order__``."""
    children = [_on_order(c) if isinstance(c, Q) else (f"order__{c[0]}", c[1])  # type: ignore[index]
                for c in q.children]
    return Q(*children, _connector=q.connector, _negated=q.negated)


def item_rows(orders: Q, horizon: datetime) -> Iterable[tuple[bool, ItemRow]]:
    """(keepable?, sums) of the lines of the paid ones of the orders ``orders`` selects, per (day, kiosk, name,
    settled?, made before ``horizon``?): one query (the lines joined to their orders once)."""
    settled, early = _flags("order__", horizon)
    lines = (OrderLine.objects.filter(_on_order(orders & Q(status__in=PAID)))
             .annotate(day=TruncDate("order__created_at", tzinfo=timezone.get_default_timezone()),
                       kiosk_id=F("order__kiosk_id"), settled=settled, early=early)
             .order_by().values("day", "kiosk_id", "name", "settled", "early")
             .annotate(quantity=Sum("quantity"), amount=Sum("amount"), lines=Count("order_id")))
    for row in lines:
        yield bool(row["settled"] and row["early"]), ItemRow(
            row["day"], row["kiosk_id"], row["name"], Decimal(row["quantity"]), _money(row["amount"]), row["lines"])


# --- readers ------------------------------------------------------------------------------------------
def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_default_timezone())


@dataclass
class Summary:
    """The orders' figures of a period: kept ones of past days, and the rest read now from the orders."""

    orders: list[OrderRow]
    items: list[ItemRow]
    kept_days: int = 0  # days read from ReportDay
    filled_days: int = 0  # days read from the orders and kept now


def summarize(start: date, end: date, kiosk_ids: Sequence[int] = ()) -> Summary:
    """The figures of the orders created from ``start`` to ``end`` (venue days, both included) of ``kiosk_ids``
    (all when empty): one query for the kept days, one for the orders and one for the lines read now, and when a
    day is to be filled or extended one to make missing rows and one to keep (a compare-and-set)."""
    horizon = hour_start(timezone.now() - MARGIN)
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    # Each day may be kept up to ``until``: its next midnight, or the horizon for today.
    target = {day: min(_midnight(day + timedelta(days=1)), horizon) for day in days if _midnight(day) < horizon}
    rows: dict[date, ReportDay] = {r.day: r for r in ReportDay.objects.filter(day__gte=start, day__lte=end)
                                   .only("day", "generation", "filled_generation", "until", "figures")}
    missing = [day for day in target if day not in rows]
    if missing:
        ReportDay.objects.bulk_create([ReportDay(day=day) for day in missing], ignore_conflicts=True)
    valid = {day: r for day, r in rows.items()
             if day in target and r.filled_generation == r.generation and r.until is not None
             and r.until <= target[day]}
    # What each day's kept figures cover already (``valid``), and the generation each day to keep was at before
    # the orders are read (a row made now: 0; a bump since makes the compare-and-set below keep nothing).
    covered = {day: r.until for day, r in valid.items() if r.until is not None}
    to_keep = {day: (rows[day].generation if day in rows else 0) for day in target
               if covered.get(day) != target[day]}

    period = Q(created_at__gte=_midnight(start), created_at__lt=_midnight(end + timedelta(days=1)))
    read_now = Q()
    for first, last in _runs([(covered.get(day) or _midnight(day), _midnight(day + timedelta(days=1)))
                              for day in days]):
        read_now |= Q(created_at__gte=first, created_at__lt=last)
    orders = period & (read_now | UNSETTLED) if read_now else period & UNSETTLED
    # Days to keep are read for every kiosk (a day is kept once for all); else only the chosen kiosks are read.
    if kiosk_ids and not to_keep:
        orders &= Q(kiosk_id__in=kiosk_ids)

    summary = Summary([], [])
    fill: dict[date, DayFigures] = {day: DayFigures() for day in to_keep}
    # The kept figures count only the settled orders made before their ``until``: every other order is read now.
    for keepable, row in order_rows(Order.objects.filter(orders), horizon):
        if keepable and row.day in fill:
            fill[row.day].orders.append(row)
        summary.orders.append(row)
    for keepable, item in item_rows(orders, horizon):
        if keepable and item.day in fill:
            fill[item.day].items.append(item)
        summary.items.append(item)
    for day, kept in valid.items():
        figures = DayFigures.loads(day, kept.figures)
        summary.orders.extend(figures.orders)
        summary.items.extend(figures.items)
        if day in fill:  # extended: what was kept and what was read now
            fill[day].orders.extend(figures.orders)
            fill[day].items.extend(figures.items)
    if fill:
        _keep({day: figures.compact() for day, figures in fill.items()}, to_keep, covered, target)
    if kiosk_ids:
        chosen = set(kiosk_ids)
        summary.orders = [r for r in summary.orders if r.kiosk_id in chosen]
        summary.items = [r for r in summary.items if r.kiosk_id in chosen]
    summary.kept_days, summary.filled_days = len(valid), len(fill)
    return summary


def _runs(ranges: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The non-empty ranges, the ones that touch joined."""
    runs: list[tuple[datetime, datetime]] = []
    for first, last in ranges:
        if first >= last:
            continue
        if runs and runs[-1][1] == first:
            runs[-1] = (runs[-1][0], last)
        else:
            runs.append((first, last))
    return runs


def _keep(fill: dict[date, DayFigures], seen: dict[date, int], covered: dict[date, datetime],
          until: dict[date, datetime]) -> int:
    """Keeps each day's figures up to ``until`` unless its generation (or, extended, its ``until``) moved since
    they were read (one UPDATE): the days kept."""
    cas = Q()
    for day, generation in seen.items():
        cas |= Q(day=day, generation=generation) & (Q(until=covered[day]) if day in covered else Q())
    return ReportDay.objects.filter(cas).update(
        filled_generation=F("generation"),
        figures=Case(*(When(day=day, then=Value(figures.dumps())) for day, figures in fill.items()),
                     default=Value(""), output_field=TextField()),
        until=Case(*(When(day=day, then=Value(until[day])) for day in fill), output_field=DateTimeField()),
        filled_at=timezone.now(),
    )
