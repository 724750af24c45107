"""The KKT block of each kiosk, from the database only (no device call while a page renders).

Everything is fetched for all kiosks at once: the number of queries does not grow with kiosks,
orders or shifts, and each query reads the few rows it looks for through an index (partial indexes
on orders in progress, documents not printed and register checks: see the models' ``Meta.indexes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import (
    Case,
    CharField,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from core.locks import sale_lock_key
from core.models import DeviceLock, Event, Kiosk
from fiscal.models import FiscalDocument, FiscalOperation, Shift
from fiscal.register import register_lock_key
from nekassir.models import Order, Refund
from nekassir.panel import jobs
from payments.models import CardOperation, Settlement
from payments.terminal import terminal_lock_key

ATTENTION = Order.ATTENTION  # not_delivered, needs_attention
LIST_LIMIT = 20
# ?refund= of the orders list (issue 14): the orders some done refund gave money back for, in part or in full.
REFUND_FILTERS = {"partial": ("partial",), "full": ("full",), "any": ("partial", "full")}
REFUND_CHOICES = (("any", "с возвратом"), ("partial", "частично возвращённые"), ("full", "возвращённые полностью"))


def with_refunds(orders: QuerySet[Order]) -> QuerySet[Order]:
    """``orders`` with what their done refunds gave back, for the refund badge (panel/_refund_badge.html):
    ``refunded`` (rubles), ``refund_state`` ("" none, "partial", "full": at least the order's total).
    Subqueries of the list's own query: no query per row."""
    done = (Refund.objects.filter(order=OuterRef("pk"), state=Refund.State.DONE).order_by()
            .values("order").annotate(kopecks=Sum("amount_kopecks")).values("kopecks"))
    money: DecimalField = DecimalField(max_digits=14, decimal_places=2)
    return orders.alias(refunded_kopecks=Coalesce(Subquery(done), 0)).annotate(
        refunded=ExpressionWrapper(Cast(F("refunded_kopecks"), money) / Value(100, output_field=money),
                                   output_field=money),
        refund_state=Case(
            When(refunded_kopecks__lte=0, then=Value("")),
            When(refunded_kopecks__gte=ExpressionWrapper(F("total") * 100, output_field=money), then=Value("full")),
            default=Value("partial"), output_field=CharField(),
        ),
    )


def refund_filter(orders: QuerySet[Order], wanted: str) -> QuerySet[Order]:
    """The orders list's ``?refund=partial|full|any`` (anything else: no filter); ``orders`` from
    ``with_refunds``. Led by the done refunds (few), not by every order's subquery."""
    states = REFUND_FILTERS.get(wanted)
    if states is None:
        return orders
    refunded = Refund.objects.filter(state=Refund.State.DONE).values("order_id")
    return orders.filter(pk__in=refunded, refund_state__in=states)


@dataclass
class Alert:
    level: str  # bad | warn
    text: str
    url: str = ""


@dataclass
class KioskBlock:
    kiosk: Kiosk
    shift: Shift | None = None
    last_shift: Shift | None = None
    closes_in: timedelta | None = None
    unprinted: int = 0
    unresolved_fiscal: int = 0
    unresolved_card: int = 0
    check: Event | None = None
    busy: list[str] = field(default_factory=list)
    in_progress: int = 0
    attention: int = 0
    orders: list[Order] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    unreconciled: list[Shift] = field(default_factory=list)
    jobs: list[Event] = field(default_factory=list)

    @property
    def has_terminal(self) -> bool:
        return bool(self.kiosk.terminal_transport)

    @property
    def register_ok(self) -> bool:
        return self.kiosk.register_ready and not self.unresolved_fiscal and not self.unprinted

    @property
    def check_data(self) -> dict[str, Any]:
        return self.check.data if self.check is not None else {}


def _count(queryset):
    """The number of the kiosk's rows in ``queryset``: a subquery of the kiosk query (one round trip for all).
    COUNT(*), not of a column: a partial index on the kiosk answers it without reading the rows."""
    rows = queryset.filter(kiosk=OuterRef("pk")).order_by().values("kiosk").annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(rows), 0)


def kiosk_blocks(kiosks, scope) -> list[KioskBlock]:
    """The KKT block of every kiosk in ``kiosks`` (a queryset), in a fixed number of queries."""
    last_check = Event.objects.filter(kiosk=OuterRef("pk"), action=jobs.CHECKED).order_by("-id").values("id")[:1]
    last_shift = Shift.objects.filter(kiosk=OuterRef("pk")).order_by("-opened_at", "-id").values("id")[:1]
    open_shift = (Shift.objects.filter(kiosk=OuterRef("pk"), state=Shift.State.OPEN)
                  .order_by("-opened_at", "-id").values("id")[:1])
    kiosk_list = list(kiosks.annotate(
        last_check_id=Subquery(last_check), last_shift_id=Subquery(last_shift), open_shift_id=Subquery(open_shift),
        n_unprinted=_count(FiscalDocument.objects.filter(printed=False)),
        n_unresolved_fiscal=_count(FiscalOperation.objects.filter(state__in=FiscalOperation.UNRESOLVED)),
        n_unresolved_card=_count(CardOperation.objects.filter(state__in=CardOperation.UNRESOLVED)),
        n_in_progress=_count(Order.objects.filter(step__in=Order.ACTIVE_STEPS)),
        n_attention=_count(Order.objects.filter(status__in=ATTENTION)),
    ).order_by("code"))
    ids = [k.pk for k in kiosk_list]
    # The latest settlement of each shift closed this week: a shift whose latest one failed is not reconciled.
    since = timezone.now() - timedelta(days=7)
    latest_settlement: dict[int, tuple[int, str]] = {}
    for shift_id, kiosk_id, state in (
        Settlement.objects.filter(kiosk_id__in=ids, shift__state=Shift.State.CLOSED, created_at__gte=since)
        .order_by("shift_id", "-id").values_list("shift_id", "kiosk_id", "state")
    ):
        latest_settlement.setdefault(shift_id, (kiosk_id, state))
    unreconciled = [(shift_id, kiosk_id) for shift_id, (kiosk_id, state) in latest_settlement.items()
                    if state != Settlement.State.OK]
    shifts = Shift.objects.order_by().in_bulk(
        [i for k in kiosk_list for i in (k.last_shift_id, k.open_shift_id) if i] + [i for i, _ in unreconciled])
    checks = Event.objects.order_by().in_bulk([k.last_check_id for k in kiosk_list if k.last_check_id])
    # The same condition as the partial index order_active_or_attention, so that it serves the list.
    listed = list(
        with_refunds(Order.objects.filter(kiosk_id__in=ids))
        .filter(Q(step__in=Order.ACTIVE_STEPS) | Q(status__in=ATTENTION))
        .defer("request_body").order_by("-created_at")[:LIST_LIMIT]
    )
    lock_keys = {}
    for kiosk in kiosk_list:
        lock_keys[register_lock_key(kiosk)] = kiosk.pk
        lock_keys[sale_lock_key(kiosk)] = kiosk.pk
        if kiosk.terminal_transport:
            lock_keys[terminal_lock_key(kiosk)] = kiosk.pk
    locks = DeviceLock.objects.filter(key__in=list(lock_keys)).exclude(holder="").values_list("key", "purpose")
    running = jobs.running_jobs(jobs.KIOSK_KINDS, kiosk_id__in=ids)

    now = timezone.now()
    margin = timedelta(seconds=settings.SHIFT_CLOSE_MARGIN)
    blocks = []
    for kiosk in kiosk_list:
        block = KioskBlock(
            kiosk=kiosk, shift=shifts.get(kiosk.open_shift_id), last_shift=shifts.get(kiosk.last_shift_id),
            unprinted=kiosk.n_unprinted, unresolved_fiscal=kiosk.n_unresolved_fiscal,
            unresolved_card=kiosk.n_unresolved_card, check=checks.get(kiosk.last_check_id),
            in_progress=kiosk.n_in_progress, attention=kiosk.n_attention,
            orders=[o for o in listed if o.kiosk_id == kiosk.pk], jobs=running.get(kiosk.pk, []),
        )
        if block.shift is not None and block.shift.expires_at is not None:
            block.closes_in = block.shift.expires_at - margin - now
        block.busy = [purpose for key, purpose in locks if lock_keys.get(key) == kiosk.pk and purpose]
        block.unreconciled = [shifts[i] for i, kiosk_id in unreconciled if kiosk_id == kiosk.pk and i in shifts]
        block.alerts = _alerts(block, scope)
        blocks.append(block)
    return blocks


def _alerts(block: KioskBlock, scope) -> list[Alert]:
    kiosk = block.kiosk
    alerts = []
    if not kiosk.register_ready:
        alerts.append(Alert("bad", f"ККТ не готова: {kiosk.register_problem or 'причина неизвестна'}"))
    if block.unresolved_fiscal:
        alerts.append(Alert("bad", f"Операций ККТ с неизвестным исходом: {block.unresolved_fiscal}. "
                                   "Новые чеки ждут их разрешения."))
    if block.unprinted:
        alerts.append(Alert("warn", f"Документов записано в ФН, но не напечатано: {block.unprinted}"))
    data = block.check_data
    if data.get("queue_blocked"):
        alerts.append(Alert("bad", "Очередь заданий ККТ заблокирована"))
    if block.has_terminal and not kiosk.terminal_ready:
        alerts.append(Alert("bad", f"Терминал не готов: {kiosk.terminal_problem or 'причина неизвестна'}"))
    if block.unresolved_card:
        alerts.append(Alert("bad", f"Операций терминала с неизвестным исходом: {block.unresolved_card}"))
    for order in block.orders:
        if order.status in ATTENTION:
            alerts.append(Alert("bad", f"Заказ {order.number}: {order.get_status_display()}",
                                scope.url("order", order.pk)))
    if block.attention > len([o for o in block.orders if o.status in ATTENTION]):
        alerts.append(Alert("warn", f"Всего заказов, требующих внимания: {block.attention}",
                            scope.url("orders") + f"?kiosk={kiosk.code}&attention=1"))
    for shift in block.unreconciled:
        alerts.append(Alert("warn", f"Смена №{shift.number}: сверка итогов не выполнена (не сверено)",
                            scope.url("shift", shift.pk)))
    if block.shift is not None and block.closes_in is not None and block.closes_in <= timedelta(0):
        alerts.append(Alert("warn", "Смена должна быть закрыта автоматически: ждём закрытия"))
    return alerts
