"""Reconciliation of a shift (DESIGN.md, "Invariants"), shown on the shift and order pages.

For every shift: the register's own totals (its counters read at closing) = our fiscal documents of
the shift (sells − returns) = the card operations made during the shift (approved sales − cancels −
refunds). A gap found after the fact is fixed with a correction receipt (``fiscal.corrections``): it counts
on the fiscal side of the shift it fixes (a sellCorrection like a sell, a sellReturnCorrection like a
return), whichever shift the register was in when it was made. Each order in a final state must also be
consistent on its own. The functions on plain
values are pure; ``reconcile_shift`` is the one query helper (a fixed number of queries): totals are
SQL aggregates, and each order is checked from one plain row (``shift_order_facts``), not loaded whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Count, Prefetch, Sum

from core.money import rub
from fiscal.models import FiscalDocument
from nekassir.models import Order, Refund
from payments.models import CardOperation

ZERO = Decimal("0.00")
CENT = Decimal("0.01")


def money(value: Any) -> Decimal:
    """A sum from the register (a JSON number) or the database, as exact kopecks."""
    if value in (None, ""):
        return ZERO
    return Decimal(str(value)).quantize(CENT)


@dataclass(frozen=True)
class Totals:
    sells: Decimal = ZERO
    returns: Decimal = ZERO
    sells_count: int = 0
    returns_count: int = 0

    @property
    def net(self) -> Decimal:
        return self.sells - self.returns


# --- pure: totals -------------------------------------------------------------------------------
def register_totals(raw: dict[str, Any] | None) -> Totals | None:
    """The register's counters kept at closing (``Shift.register_totals``), or None when not known."""
    counters = ((raw or {}).get("shift_totals") or {}).get("shiftTotals")
    if not counters:
        return None
    receipts = counters.get("receipts") or {}
    sell, back = receipts.get("sell") or {}, receipts.get("sellReturn") or {}
    return Totals(money(sell.get("sum")), money(back.get("sum")), int(sell.get("count") or 0),
                  int(back.get("count") or 0))


def document_totals(rows: Iterable[tuple[str, Any, int]]) -> Totals:
    """From (doc_type, sum of totals, count) rows of the shift's fiscal documents."""
    sums = {doc_type: (money(total), count) for doc_type, total, count in rows}
    sells, sells_count = sums.get("sell", (ZERO, 0))
    returns, returns_count = sums.get("sellReturn", (ZERO, 0))
    return Totals(sells, returns, sells_count, returns_count)


def correction_totals(rows: Iterable[tuple[str, Any, int]]) -> Totals:
    """From (doc_type, sum of totals, count) rows of correction receipts: corrections of sells, of returns."""
    sums = {doc_type: (money(total), count) for doc_type, total, count in rows}
    sells, sells_count = sums.get("sellCorrection", (ZERO, 0))
    returns, returns_count = sums.get("sellReturnCorrection", (ZERO, 0))
    return Totals(sells, returns, sells_count, returns_count)


def register_corrections(raw: dict[str, Any] | None) -> Totals | None:
    """The register's own counters of the correction receipts it made in the shift, when it reports them."""
    counters = ((raw or {}).get("shift_totals") or {}).get("shiftTotals") or {}
    corrections = counters.get("corrections")
    if not corrections:
        return None
    return correction_totals((kind, (corrections.get(kind) or {}).get("sum"),
                              int((corrections.get(kind) or {}).get("count") or 0))
                             for kind in ("sellCorrection", "sellReturnCorrection"))


def card_totals(rows: Iterable[tuple[str, int, int]]) -> Totals:
    """From (kind, sum of kopecks, count) rows of the shift's approved card operations."""
    kopecks = {kind: (int(total or 0), count) for kind, total, count in rows}
    sales, sales_count = kopecks.get("sale", (0, 0))
    cancels, cancels_count = kopecks.get("cancel", (0, 0))
    refunds, refunds_count = kopecks.get("refund", (0, 0))
    return Totals((Decimal(sales) / 100).quantize(CENT), (Decimal(cancels + refunds) / 100).quantize(CENT),
                  sales_count, cancels_count + refunds_count)


def total_gaps(register: Totals | None, documents: Totals, card: Totals, split: Decimal = ZERO,
               corrections: Totals | None = None) -> list[str]:
    """``split``: the net of this shift's documents whose annulment pair lies across two shifts (see
    ``split_annulments``): documents without money here that the other shift's document cancels.
    ``corrections``: the correction receipts made for this shift (``correction_totals``), fiscal money too."""
    gaps = []
    if register is not None:
        if register.sells != documents.sells:
            gaps.append(f"Приход: ККТ {rub(register.sells)}, наши чеки {rub(documents.sells)}")
        if register.returns != documents.returns:
            gaps.append(f"Возвраты прихода: ККТ {rub(register.returns)}, наши чеки {rub(documents.returns)}")
    corrected = corrections.net if corrections is not None else ZERO
    fiscal = documents.net - split + corrected
    if fiscal != card.net:
        explained = f" (из них аннулирование в другой смене: {rub(split)})" if split else ""
        with_corrections = f", с чеками коррекции {rub(documents.net + corrected)}" if corrected else ""
        gaps.append(f"Чеки (приход − возвраты) {rub(documents.net)}{with_corrections} ≠ операции по картам "
                    f"(оплаты − отмены − возвраты) {rub(card.net)}, разница {rub(fiscal - card.net)}"
                    f"{explained}")
    return gaps


def correction_gaps(register: Totals | None, made_here: Totals) -> list[str]:
    """The register's counters of correction receipts against ours made in the shift (whatever they fix)."""
    if register is None or register == made_here:
        return []
    return [f"Чеки коррекции: ККТ {rub(register.sells)} прихода, {rub(register.returns)} возврата; наши "
            f"{rub(made_here.sells)} и {rub(made_here.returns)}"]


# --- pure: one order ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Doc:
    state: str  # FiscalOperation.state
    total: Decimal | None = None


@dataclass(frozen=True)
class Card:
    state: str  # CardOperation.state
    amount: Decimal = ZERO


@dataclass(frozen=True)
class RefundFacts:
    state: str
    to_card: bool
    amount: Decimal
    card: Card | None = None
    receipt: Doc | None = None


@dataclass(frozen=True)
class OrderFacts:
    status: str
    total: Decimal
    sell: Doc | None = None
    annul: Doc | None = None
    sale: Card | None = None
    refunds: tuple[RefundFacts, ...] = field(default_factory=tuple)


PAID_FINAL = {"completed", "not_delivered"}
UNPAID_FINAL = {"cancelled", "failed"}


def order_issues(order: OrderFacts) -> list[str]:
    """What is inconsistent about one order (empty when it is consistent or not final yet)."""
    issues: list[str] = []
    sold = order.sell is not None and order.sell.state == "done"
    annulled = order.annul is not None and order.annul.state == "done"
    charged = order.sale is not None and order.sale.state == "approved"
    if order.status == "needs_attention":
        issues.append("Заказ требует внимания")
    if order.status in PAID_FINAL:
        if not sold:
            issues.append("Оплачен, но чека прихода нет")
        elif order.sell is not None and order.sell.total is not None and order.sell.total != order.total:
            issues.append(f"Чек прихода на {rub(order.sell.total)}, заказ на {rub(order.total)}")
        if not charged:
            issues.append("Чек пробит, но одобренной оплаты картой нет")
        elif order.sale is not None and order.sale.amount != order.total:
            issues.append(f"Оплата {rub(order.sale.amount)}, заказ на {rub(order.total)}")
        if annulled:
            issues.append("Оплата одобрена, а чек прихода аннулирован")
    if order.status in UNPAID_FINAL:
        if charged:
            issues.append("Заказ отменён, но оплата картой одобрена")
        if sold and not annulled:
            issues.append("Заказ не оплачен, а чек прихода не аннулирован")
    refunded = ZERO
    for refund in order.refunds:
        if not refund.to_card or refund.state == "failed":
            continue
        refunded += refund.amount
        if refund.state == "needs_attention":
            issues.append(f"Возврат {rub(refund.amount)}: деньги возвращены, чек возврата ещё не пробит")
        if refund.state != "done":
            continue
        if refund.card is None or refund.card.state != "approved":
            issues.append(f"Возврат {rub(refund.amount)} выполнен без одобренной операции по карте")
        elif refund.card.amount != refund.amount:
            issues.append(f"Возврат {rub(refund.amount)}, а по карте возвращено {rub(refund.card.amount)}")
        if refund.receipt is None or refund.receipt.state != "done":
            issues.append(f"Возврат {rub(refund.amount)} без чека возврата прихода")
        elif refund.receipt.total is not None and refund.receipt.total != refund.amount:
            issues.append(f"Чек возврата на {rub(refund.receipt.total)}, а возврат на {rub(refund.amount)}")
    paid = order.sale.amount if charged and order.sale is not None else ZERO
    if refunded > paid:
        issues.append(f"Возвращено {rub(refunded)} — больше, чем оплачено ({rub(paid)})")
    return issues


# --- the query helper ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderGap:
    pk: Any
    number: str
    issues: list[str]


@dataclass
class Reconciliation:
    register: Totals | None
    documents: Totals
    card: Totals
    gaps: list[str]
    gap_orders: list[OrderGap]  # the shift's inconsistent orders, oldest first
    shift_open: bool
    split: list[tuple[str, Decimal]] = field(default_factory=list)  # (order number, signed amount)
    corrections: Totals = field(default_factory=Totals)  # correction receipts made for this shift

    @property
    def order_gaps(self) -> int:
        return len(self.gap_orders)

    @property
    def issues(self) -> dict[Any, list[str]]:
        """Order id → its issues, for the inconsistent orders only."""
        return {gap.pk: gap.issues for gap in self.gap_orders}

    @property
    def ok(self) -> bool:
        return not self.gaps and not self.order_gaps

    @property
    def status(self) -> str:
        if not self.ok:
            return "gap"
        return "pending" if self.shift_open or self.register is None else "ok"


def _doc(op) -> Doc | None:
    if op is None:
        return None
    document = getattr(op, "document", None)
    return Doc(op.state, document.total if document is not None else None)


def _card(op) -> Card | None:
    return Card(op.state, op.amount) if op is not None else None


def facts_of(order) -> OrderFacts:
    """An order loaded with ``order_queryset`` as plain facts."""
    refunds = tuple(
        RefundFacts(r.state, r.to_card, r.amount, _card(r.card_operation), _doc(r.return_operation))
        for r in order.refunds.all()
    )
    return OrderFacts(order.status, order.total, _doc(order.sell_operation), _doc(order.annul_operation),
                      _card(order.card_sale), refunds)


def _doc_row(state: str | None, total: Any) -> Doc | None:
    return Doc(state, total) if state is not None else None


def _card_row(state: str | None, kopecks: int | None) -> Card | None:
    if state is None or kopecks is None:  # no card operation: the join's NULLs (its amount is never NULL)
        return None
    return Card(state, (Decimal(kopecks) / 100).quantize(CENT))


def shift_order_facts(shift) -> list[tuple[Any, str, OrderFacts]]:
    """(id, number, facts) of every order of the shift, oldest first: the same facts as ``facts_of``,
    read as plain rows in two queries (the orders with their operations, then the shift's refunds)."""
    refunds: dict[Any, list[RefundFacts]] = {}
    rows = (Refund.objects.filter(order__shift=shift).order_by("-id")  # as ``order.refunds.all()``
            .values_list("order_id", "state", "to_card", "amount_kopecks", "card_operation__state",
                         "card_operation__amount_kopecks", "return_operation__state",
                         "return_operation__document__total"))
    for order_id, state, to_card, kopecks, card_state, card_kopecks, return_state, return_total in rows:
        refunds.setdefault(order_id, []).append(RefundFacts(
            state, to_card, (Decimal(kopecks) / 100).quantize(CENT), _card_row(card_state, card_kopecks),
            _doc_row(return_state, return_total)))
    orders = (Order.objects.filter(shift=shift).order_by("created_at", "pk")
              .values_list("pk", "number", "status", "total", "sell_operation__state",
                           "sell_operation__document__total", "annul_operation__state",
                           "annul_operation__document__total", "card_sale__state", "card_sale__amount_kopecks"))
    return [(pk, number, OrderFacts(status, total, _doc_row(sell, sell_total), _doc_row(annul, annul_total),
                                    _card_row(sale, sale_kopecks), tuple(refunds.get(pk, ()))))
            for pk, number, status, total, sell, sell_total, annul, annul_total, sale, sale_kopecks in orders]


def order_queryset(queryset):
    """Orders with everything ``facts_of`` reads, in a fixed number of queries."""
    refunds = Refund.objects.select_related("card_operation", "return_operation__document", "created_by")
    return queryset.select_related(
        "kiosk", "sell_operation__document", "annul_operation__document", "card_sale",
    ).prefetch_related(Prefetch("refunds", queryset=refunds))


CORRECTION_TYPES = ("sellCorrection", "sellReturnCorrection")


def corrections_by_shift(shift_ids: Iterable[int]) -> dict[int, Totals]:
    """Per shift, the correction receipts made for it (``Correction.shift``), wherever they lie: one query."""
    rows: dict[int, list] = {}
    for shift_id, *row in (FiscalDocument.objects.filter(operation__correction__shift_id__in=list(shift_ids))
                           .values("operation__correction__shift_id", "doc_type")
                           .annotate(s=Sum("total"), n=Count("id"))
                           .values_list("operation__correction__shift_id", "doc_type", "s", "n")):
        rows.setdefault(shift_id, []).append(row)
    return {shift_id: correction_totals(found) for shift_id, found in rows.items()}


def reconcile_shift(shift) -> Reconciliation:
    # The shift's own receipts and the corrections made in it, by kind, in one query.
    rows = list(FiscalDocument.objects.filter(shift=shift, doc_type__in=["sell", "sellReturn", *CORRECTION_TYPES])
                .values("doc_type").annotate(s=Sum("total"), n=Count("id")).values_list("doc_type", "s", "n"))
    documents = document_totals(rows)
    made_here = correction_totals(rows)
    corrections = corrections_by_shift([shift.pk]).get(shift.pk, Totals())
    card = card_totals(
        CardOperation.objects.filter(shift=shift, state="approved", kind__in=["sale", "cancel", "refund"])
        .values("kind").annotate(s=Sum("amount_kopecks"), n=Count("id")).values_list("kind", "s", "n")
    )
    register = register_totals(shift.register_totals)
    gap_orders = [OrderGap(pk, number, issues) for pk, number, facts in shift_order_facts(shift)
                  if (issues := order_issues(facts))]
    split = split_annulments([shift.pk]).get(shift.pk, [])
    gaps = [] if shift.is_open else [
        *total_gaps(register, documents, card, net_of(split), corrections),
        *correction_gaps(register_corrections(shift.register_totals), made_here)]
    if not shift.is_open and register is None:
        gaps.append("Счётчики ККТ при закрытии не прочитаны: сверка с ККТ невозможна")
    return Reconciliation(register, documents, card, gaps, gap_orders, shift.is_open, split, corrections)


def net_of(split: list[tuple[str, Decimal]]) -> Decimal:
    """The signed sum of ``split_annulments`` rows of one shift."""
    return sum((amount for _, amount in split), ZERO)


def split_annulments(shift_ids: Iterable[int]) -> dict[int, list[tuple[str, Decimal]]]:
    """Per shift, (order number, signed amount) of its documents whose partner lies in another shift: a
    sell receipt whose annulment had to go into the next shift (this one expired, or was closed by force,
    between the decline and the annulment) counts +, that annulment in the next shift counts −. Each is a
    document without money in its own shift, explained by the other. Two queries, from the shifts'
    documents (indexed by shift), whatever the size of the history."""
    ids = list(shift_ids)
    # An order's shift is that of its sell receipt. Short joins and the partner's shift compared here: a
    # NOT over the joins, or a walk from the documents, cost PostgreSQL more to plan than to run.
    sold = (Order.objects.filter(shift_id__in=ids, annul_operation__document__isnull=False).order_by()
            .values_list("shift_id", "number", "total", "annul_operation__document__shift_id"))
    annulled = (Order.objects.filter(annul_operation__document__shift_id__in=ids).order_by()
                .values_list("annul_operation__document__shift_id", "number", "annul_operation__document__total",
                             "shift_id"))
    split: dict[int, list[tuple[str, Decimal]]] = {}
    for sign, rows in ((1, sold), (-1, annulled)):
        for shift_id, number, total, partner_shift_id in rows:
            if partner_shift_id != shift_id:
                split.setdefault(shift_id, []).append((number, sign * money(total)))
    return split
