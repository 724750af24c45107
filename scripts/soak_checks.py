"""The soak's invariants (DESIGN.md, "Invariants"), checked against the emulators' journals and our database.

The emulators' journals are the outside world's truth: what the registers printed into their FN, what
the terminals charged and gave back, what iiko created. Each check names what it looked at (``checked``)
and lists every violation found, with enough detail to find the order, shift or operation.

Marked goods (issue 13): the codes a receipt carried are read from the register's journal (each position's
``imcParams.imc``, base64 of the code exactly as scanned), replayed in the order the register made the
receipts, and held against our ``OrderMark`` units (``marked_goods_checks`` takes plain data, so a hand-made
bad history shows each of its invariants failing).
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
FINAL = {"completed", "cancelled", "failed", "not_delivered", "needs_attention"}
PAID_FINAL = {"completed", "not_delivered", "needs_attention"}
# The only needs_attention an order may end in: paid after the guest's window, waiting for a manager.
WAITS_FOR_MANAGER = "paid_after_guest_left"
REQUISITES = ("machineNumber", "paymentsAddress", "paymentsPlace")  # tags 1036, 1009, 1187
UNPAID_FINAL = {"cancelled", "failed"}
# Marked goods (issue 13): the planned status of a unit in a sell receipt and in a return (annulment or refund).
SOLD_STATUS, RETURN_STATUS = "itemPieceSold", "itemPieceReturn"
MARKING_REFUSALS = ("marking_rejected", "marking_unavailable")


def money(value: Any) -> Decimal:
    if value in (None, ""):
        return ZERO
    return Decimal(str(value)).quantize(CENT)


@dataclass
class Check:
    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.violations.append(text)


@dataclass
class Report:
    checks: list[Check]
    final_counts: dict[str, Any]
    notes: list[str]


@dataclass
class OrderMoney:
    """One order as the outside world saw it."""

    sales: list[dict] = field(default_factory=list)  # approved sale journal entries not reversed
    reversed_sales: int = 0
    returned: Decimal = ZERO  # approved cancels + refunds on the terminal
    returns: list[dict] = field(default_factory=list)
    sells: list[dict] = field(default_factory=list)  # ATOL journal sell documents of the order
    annuls: list[dict] = field(default_factory=list)  # ATOL sellReturn documents that annul it
    refund_receipts: list[dict] = field(default_factory=list)  # ATOL sellReturn documents of its refunds
    iiko_success: list[dict] = field(default_factory=list)

    @property
    def charged(self) -> Decimal:
        return sum((money(e["amount"]) for e in self.sales), ZERO)

    @property
    def sold(self) -> Decimal:
        return sum((money(d["total"]) for d in self.sells), ZERO)

    @property
    def back(self) -> Decimal:
        return sum((money(d["total"]) for d in self.annuls + self.refund_receipts), ZERO)


def _terminal_entries(emulators: Any, ops_by_id: dict[str, Any]) -> list[tuple[dict, Any]]:
    """Every terminal journal entry with our CardOperation (None when we have no such operation)."""
    from payments.dualconnector_client import ecr_transaction_id

    dc_ids = {ecr_transaction_id(op_id): op for op_id, op in ops_by_id.items() if op.transport == "dualconnector"}
    entries = []
    for entry in emulators.kkm.journal():
        op = ops_by_id.get(entry["id"])
        entries.append(({**entry, "terminal": f"kkm#{entry['device']}"}, op))
    for entry in emulators.dc.journal():
        entries.append(({**entry, "terminal": "dc"}, dc_ids.get(entry["id"])))
    return entries


def check_everything(emulators: Any, placed: dict[str, str], pending: dict[str, int],
                     closing_problems: list[str], refused: set[str] | frozenset[str] = frozenset(),
                     marked: dict[str, dict[str, Any]] | None = None) -> Report:
    from fiscal.models import FiscalDocument, FiscalOperation, Shift
    from nekassir.models import IikoAttempt, Order, Refund
    from nekassir.panel.reconciliation import facts_of, order_issues, order_queryset, reconcile_shift
    from payments.models import CardOperation

    notes: list[str] = []
    orders = {str(o.pk): o for o in Order.objects.select_related("kiosk", "sell_operation", "annul_operation",
                                                                    "card_sale")}
    ops_by_id = {op.op_id: op for op in CardOperation.objects.select_related("original", "kiosk")}
    fiscal_ops = {op.pk: op for op in FiscalOperation.objects.all()}
    documents = {(d.fn_number, d.fd_number): d for d in FiscalDocument.objects.select_related("operation", "kiosk")}
    refunds = {r.pk: r for r in Refund.objects.select_related("card_operation", "return_operation")}
    atol = emulators.atol.journal()
    atol_docs = {(e["fnNumber"], e["fiscalDocumentNumber"]): e for e in atol if "fiscalDocumentNumber" in e}

    def order_of_reference(reference: str) -> str | None:
        if reference.startswith("order:"):
            return reference.split(":")[1]
        if reference.startswith("refund:"):
            refund = refunds.get(int(reference.split(":")[1]))
            return str(refund.order_id) if refund else None
        return None

    per_order: dict[str, OrderMoney] = defaultdict(OrderMoney)
    checks: list[Check] = []

    # --- 1. every order in a final state ----------------------------------------------------------------
    final = Check("every order in a final state (completed/cancelled/failed/not_delivered, or paid after the "
                  "guest's window and waiting for a manager)")
    checks.append(final)
    lost = [order_id for order_id in placed if order_id not in orders]
    for order_id, order in orders.items():
        final.checked += 1
        if order.step != "done" or order.status not in FINAL or (
                order.status == "needs_attention" and order.error_code != WAITS_FOR_MANAGER):
            final.fail(f"{order.number} {order_id}: status {order.status}, step {order.step}, "
                       f"error {order.error_code} {order.error_message[:80]!r}, attempts {order.checkout_attempts}")
    if lost:
        notes.append(f"{len(lost)} orders the kiosks tried never reached the database "
                     f"({len(set(lost) & set(refused))} of them refused 503 card_unavailable; else see run errors)")

    unsaved = Check("an order refused 503 card_unavailable saved nothing")
    checks.append(unsaved)
    for order_id in refused:
        unsaved.checked += 1
        if order_id in orders:
            unsaved.fail(f"order {order_id} was refused 503 card_unavailable, yet saved as {orders[order_id].number}")

    # --- 2. fiscal documents: database == register's FN journal ------------------------------------------
    docs = Check("fiscal documents in the DB == documents in the ATOL journal (by FN + FD)")
    checks.append(docs)
    for key, entry in atol_docs.items():
        docs.checked += 1
        document = documents.get(key)
        if document is None:
            docs.fail(f"register made {entry['type']} FN {key[0]} FD {key[1]} ({entry['device']}, "
                      f"{entry['total']} ₽) that our database does not have")
        elif document.doc_type != entry["type"] or (
                document.total is not None and money(document.total) != money(entry["total"])):
            docs.fail(f"FN {key[0]} FD {key[1]}: register {entry['type']} {entry['total']}, "
                      f"ours {document.doc_type} {document.total}")
    for key, document in documents.items():
        if key not in atol_docs:
            docs.checked += 1
            docs.fail(f"our {document.doc_type} FN {key[0]} FD {key[1]} is not in the register's journal")

    # --- the outside world per order ----------------------------------------------------------------------
    orphans = Check("every receipt on the register belongs to an order or a refund")
    checks.append(orphans)
    for key, entry in atol_docs.items():
        if entry["type"] not in ("sell", "sellReturn"):
            continue
        orphans.checked += 1
        document = documents.get(key)
        reference = document.operation.reference if document and document.operation else ""
        order_id = order_of_reference(reference)
        if order_id is None:
            orphans.fail(f"{entry['type']} FD {key[1]} on {entry['device']} ({entry['total']} ₽): "
                         f"reference {reference!r}, no order")
            continue
        money_of = per_order[order_id]
        if entry["type"] == "sell":
            money_of.sells.append(entry)
        elif reference.endswith(":annul"):
            money_of.annuls.append(entry)
        else:
            money_of.refund_receipts.append(entry)

    ghosts = Check("every terminal operation is one of ours (journal id = saved op id)")
    checks.append(ghosts)
    entries = _terminal_entries(emulators, ops_by_id)
    reversed_rrns = {(e["terminal"], e["rrn"]) for e, _ in entries
                     if e["operation"] == "reversal" and e["state"] == "approved" and e["rrn"]}
    for entry, op in entries:
        ghosts.checked += 1
        if op is None:
            if entry["state"] == "approved" and entry["operation"] in ("sale", "cancel", "refund", "reversal"):
                ghosts.fail(f"{entry['terminal']}: approved {entry['operation']} {entry['amount']} id {entry['id']} "
                            f"that we have no record of")
            continue
        if entry["state"] != "approved" or entry["operation"] not in ("sale", "cancel", "refund"):
            continue
        sale = op if entry["operation"] == "sale" else op.original
        order_id = order_of_reference(sale.reference if sale else op.reference)
        if order_id is None:
            ghosts.fail(f"{entry['terminal']}: approved {entry['operation']} {entry['amount']} of op {op.op_id} "
                        f"(reference {op.reference!r}) belongs to no order")
            continue
        money_of = per_order[order_id]
        if entry["operation"] == "sale":
            if (entry["terminal"], entry["rrn"]) in reversed_rrns:
                money_of.reversed_sales += 1
            else:
                money_of.sales.append(entry)
        elif (entry["terminal"], entry["rrn"]) not in reversed_rrns:  # a reversed return gave nothing back
            money_of.returned += money(entry["amount"])
            money_of.returns.append(entry)

    attempts = {a.iiko_order_id: str(a.order_id) for a in IikoAttempt.objects.all()}
    iiko_ghosts = []
    for entry in emulators.iiko.journal():
        if entry["creationStatus"] != "Success":
            continue
        order_id = attempts.get(entry["id"])
        if order_id is None:
            iiko_ghosts.append(entry)
        else:
            per_order[order_id].iiko_success.append(entry)

    # --- 3. no double charge -----------------------------------------------------------------------------
    double = Check("no double charge (≤ 1 approved, unreversed sale per order on the terminal)")
    checks.append(double)
    for order_id, order in orders.items():
        double.checked += 1
        sales = per_order[order_id].sales
        if len(sales) > 1:
            double.fail(f"{order.number} {order_id}: {len(sales)} approved sales "
                        f"{[(s['id'], s['amount']) for s in sales]}")

    # --- 4/5. charge ⇔ receipt -----------------------------------------------------------------------------
    charge = Check("no charge without a receipt (card net = receipts net, per charged order)")
    receipt = Check("no receipt without payment left unannulled (receipts net = card net, per receipted order)")
    twice = Check("at most one sell receipt and one annulment per order")
    checks += [charge, receipt, twice]
    for order_id, order in orders.items():
        facts = per_order[order_id]
        card_net = facts.charged - facts.returned
        fiscal_net = facts.sold - facts.back
        twice.checked += 1
        if len(facts.sells) > 1 or len(facts.annuls) > 1:
            twice.fail(f"{order.number} {order_id}: {len(facts.sells)} sell receipts, {len(facts.annuls)} annulments")
        if card_net != ZERO:
            charge.checked += 1
            if card_net != fiscal_net:
                charge.fail(f"{order.number} {order_id} ({order.status}): card net {card_net} ₽ "
                            f"(charged {facts.charged}, returned {facts.returned}), receipts net {fiscal_net} ₽ "
                            f"(sell {facts.sold}, returns {facts.back})")
        if fiscal_net != ZERO:
            receipt.checked += 1
            if card_net != fiscal_net:
                receipt.fail(f"{order.number} {order_id} ({order.status}): receipts net {fiscal_net} ₽ "
                             f"(sell {facts.sold}, returns {facts.back}), card net {card_net} ₽")

    # --- 6. each final order consistent on its own ----------------------------------------------------------
    alone = Check("each final order consistent on its own (DESIGN: completed / cancelled / failed)")
    checks.append(alone)
    for order_id, order in orders.items():
        if order.status not in FINAL:
            continue
        alone.checked += 1
        facts = per_order[order_id]
        total = money(order.total)
        problems = []
        if order.status in PAID_FINAL:
            if len(facts.sales) != 1 or facts.charged != total:
                problems.append(f"charged {facts.charged} in {len(facts.sales)} sales for {total}")
            if len(facts.sells) != 1 or facts.sold != total:
                problems.append(f"sold {facts.sold} in {len(facts.sells)} receipts for {total}")
            if facts.annuls:
                problems.append("paid, yet its receipt was annulled")
        else:
            if facts.charged != ZERO:
                problems.append(f"{order.status}, yet {facts.charged} ₽ charged")
            if facts.sells and sum((money(a["total"]) for a in facts.annuls), ZERO) != facts.sold:
                problems.append(f"{order.status}: sell {facts.sold} ₽ not annulled "
                                f"({len(facts.annuls)} annulments)")
        if order.status == "completed" and len(facts.iiko_success) != 1:
            problems.append(f"completed, {len(facts.iiko_success)} orders in iiko")
        if problems:
            alone.fail(f"{order.number} {order_id} ({order.status}): " + "; ".join(problems))

    # --- 7. refunds never above what was paid ---------------------------------------------------------------
    refund_check = Check("no refund above what was paid; each refund = one card return + one sellReturn")
    checks.append(refund_check)
    by_order: dict[str, list[Any]] = defaultdict(list)
    for refund in refunds.values():
        by_order[str(refund.order_id)].append(refund)
    card_returns_per_refund: dict[int, int] = defaultdict(int)
    for op in ops_by_id.values():
        if op.kind in ("cancel", "refund") and op.state == "approved" and op.reference.startswith("refund:"):
            card_returns_per_refund[int(op.reference.split(":")[1])] += 1
    receipts_per_refund: dict[int, int] = defaultdict(int)
    for key, entry in atol_docs.items():
        document = documents.get(key)
        reference = document.operation.reference if document and document.operation else ""
        if entry["type"] == "sellReturn" and reference.startswith("refund:"):
            receipts_per_refund[int(reference.split(":")[1])] += 1
    for order_id, items in by_order.items():
        order = orders.get(order_id)
        facts = per_order[order_id]
        paid = facts.charged
        asked = sum((Decimal(r.amount_kopecks) / 100 for r in items if r.to_card and r.state != "failed"), ZERO)
        refund_check.checked += 1
        number = order.number if order else order_id
        if asked > paid:
            refund_check.fail(f"{number}: refunds of {asked} ₽ for {paid} ₽ paid")
        if facts.returned > paid:
            refund_check.fail(f"{number}: the terminal gave back {facts.returned} ₽ of {paid} ₽ paid")
        for refund in items:
            if not refund.to_card:
                continue
            amount = (Decimal(refund.amount_kopecks) / 100).quantize(CENT)
            if card_returns_per_refund[refund.pk] > 1:
                refund_check.fail(f"{number}: refund {refund.pk} ({amount} ₽) went back to the card "
                                  f"{card_returns_per_refund[refund.pk]} times")
            if receipts_per_refund[refund.pk] > 1:
                refund_check.fail(f"{number}: refund {refund.pk} ({amount} ₽) has {receipts_per_refund[refund.pk]} "
                                  f"sellReturn receipts on the register")
            op = refund.card_operation
            if refund.state == "done":
                if op is None or op.state != "approved" or op.amount != amount:
                    refund_check.fail(f"{number}: refund {refund.pk} done without an approved card return of "
                                      f"{amount} ₽ ({op and (op.kind, op.state, op.amount)})")
                ret = refund.return_operation
                doc = getattr(ret, "document", None) if ret else None
                if doc is None or money(doc.total) != amount:
                    refund_check.fail(f"{number}: refund {refund.pk} done without a sellReturn of {amount} ₽")
            elif refund.state == "failed":
                if op is not None and op.state == "approved":
                    refund_check.fail(f"{number}: refund {refund.pk} failed, yet its card return was approved")
            else:
                refund_check.fail(f"{number}: refund {refund.pk} still {refund.state}: {refund.message[:120]}")

    def _split_annulments(shift) -> Decimal:
        """Net of this shift's documents whose sell/annulment partner landed in another shift."""
        def where(doc) -> tuple[str, int | None]:
            return (doc.fn_number, doc.shift_number)

        here, net = (shift.fn_number, shift.number), ZERO
        for order in Order.objects.filter(kiosk=shift.kiosk, annul_operation__document__isnull=False).select_related(
                "sell_operation__document", "annul_operation__document"):
            sell, annul = order.sell_operation.document, order.annul_operation.document
            if where(sell) == here != where(annul):
                net += money(sell.total)
            elif where(annul) == here != where(sell):
                net -= money(annul.total)
        return net

    # --- 8. reconciliation of every closed shift --------------------------------------------------------------
    recon = Check("reconciliation of every closed shift: register totals = our documents = card operations")
    checks.append(recon)
    journal_totals: dict[tuple[str, str, int], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for entry in atol:
        if entry["type"] in ("sell", "sellReturn"):
            journal_totals[(entry["device"], entry["fnNumber"], entry["shiftNumber"])][entry["type"]] += money(
                entry["total"])
    for shift in Shift.objects.select_related("kiosk").order_by("kiosk__code", "number"):
        if shift.is_open:
            notes.append(f"{shift.kiosk.code} shift {shift.number} still open: not reconciled")
            continue
        recon.checked += 1
        label = f"{shift.kiosk.code} shift {shift.number}"
        register = journal_totals[(shift.kiosk.atol_device_id, shift.fn_number, shift.number)]
        ours = FiscalDocument.objects.filter(kiosk=shift.kiosk, fn_number=shift.fn_number, shift_number=shift.number)
        ours_sell = sum((money(d.total) for d in ours if d.doc_type == "sell"), ZERO)
        ours_back = sum((money(d.total) for d in ours if d.doc_type == "sellReturn"), ZERO)
        card = CardOperation.objects.filter(shift=shift, state="approved", kind__in=["sale", "cancel", "refund"])
        card_net = sum((op.amount if op.kind == "sale" else -op.amount for op in card), ZERO)
        counters = (((shift.register_totals or {}).get("shift_totals") or {}).get("shiftTotals") or {}).get(
            "receipts") or {}
        problems = []
        if counters:
            counted_sell = money((counters.get("sell") or {}).get("sum"))
            counted_back = money((counters.get("sellReturn") or {}).get("sum"))
            if (counted_sell, counted_back) != (money(register["sell"]), money(register["sellReturn"])):
                problems.append(f"register counters read at closing {counted_sell}/{counted_back} ≠ its journal "
                                f"{register['sell']}/{register['sellReturn']}")
        else:
            problems.append("register counters were not read at closing")
        if (ours_sell, ours_back) != (money(register["sell"]), money(register["sellReturn"])):
            problems.append(f"register sells/returns {register['sell']}/{register['sellReturn']} ≠ "
                            f"our documents {ours_sell}/{ours_back}")
        # A receipt whose annulment had to go into the next shift (this one expired in between) is a
        # document without money here and its annulment one without money there: legal, and explained.
        carried = _split_annulments(shift)
        if carried:
            notes.append(f"{label}: annulment pair split across shifts, net {carried} ₽ explained")
        if ours_sell - ours_back - carried != card_net:
            problems.append(f"documents net {ours_sell - ours_back} ≠ card operations net {card_net} "
                            f"(difference {ours_sell - ours_back - carried - card_net}"
                            f"{f', split annulments {carried} explained' if carried else ''})")
        if problems:
            recon.fail(f"{label}: " + "; ".join(problems))
    outside = CardOperation.objects.filter(shift__isnull=True, state="approved", kind__in=["sale", "cancel", "refund"])
    for op in outside:
        recon.checked += 1
        recon.fail(f"approved {op.kind} {op.amount} ₽ ({op.kiosk.code}, {op.reference}) belongs to no shift: "
                   f"in no shift's reconciliation")

    # --- 9. the panel's own reconciliation agrees ----------------------------------------------------------------
    panel = Check("the panel's reconciliation shows no gap (reconcile_shift, order_issues)")
    checks.append(panel)
    for shift in Shift.objects.filter(state="closed").select_related("kiosk"):
        panel.checked += 1
        result = reconcile_shift(shift)
        if result.gaps:
            panel.fail(f"{shift.kiosk.code} shift {shift.number}: {result.gaps}")
    for order in order_queryset(Order.objects.all()):
        panel.checked += 1
        issues = order_issues(facts_of(order))
        if issues:
            panel.fail(f"{order.number} {order.pk} ({order.status}): {issues}")

    # --- 10. iiko ----------------------------------------------------------------------------------------------
    iiko = Check("iiko: no order created twice; every created order is one of ours")
    checks.append(iiko)
    for order_id, order in orders.items():
        iiko.checked += 1
        if len(per_order[order_id].iiko_success) > 1:
            iiko.fail(f"{order.number} {order_id}: created {len(per_order[order_id].iiko_success)} times in iiko")
    for entry in iiko_ghosts:
        iiko.fail(f"iiko order {entry['id']} ({entry['externalNumber']}) has no attempt of ours")

    # --- 11. nothing left unresolved ------------------------------------------------------------------------------
    resolved = Check("every device call resolved after recovery; every shift closed at the end")
    checks.append(resolved)
    for name, count in pending.items():
        resolved.checked += 1
        if count and name != "device jobs queued":
            resolved.fail(f"{name}: {count}")
    for problem in closing_problems:
        resolved.fail(f"closing at the end: {problem}")
    for op in FiscalOperation.objects.filter(state__in=FiscalOperation.UNRESOLVED):
        resolved.fail(f"register op {op.task_type} {op.uuid} ({op.kiosk_id}) {op.state}")
    for op in CardOperation.objects.filter(state__in=CardOperation.UNRESOLVED):
        resolved.fail(f"terminal op {op.kind} {op.op_id} ({op.kiosk.code}) {op.state}: {op.reason}")

    checks += _checks_of_real_devices(emulators, orders, per_order, ops_by_id, atol)
    marked_checks, marked_counts = _checks_of_marked_goods(atol, documents, orders, refunds, per_order, marked or {})
    checks += marked_checks

    statuses = Order.objects.values_list("status", flat=True)
    counts: dict[str, Any] = {f"orders {s}": n for s, n in sorted(_count(statuses).items())}
    counts["orders in the database"] = len(orders)
    counts["register documents (ATOL journal)"] = len(atol_docs)
    counts["  sell / sellReturn"] = (f"{sum(1 for e in atol_docs.values() if e['type'] == 'sell')} / "
                                     f"{sum(1 for e in atol_docs.values() if e['type'] == 'sellReturn')}")
    counts["shifts closed / open"] = (f"{Shift.objects.filter(state='closed').count()} / "
                                      f"{Shift.objects.filter(state='open').count()}")
    counts["terminal operations (journals)"] = len(entries)
    counts["  sales approved / reversed"] = (f"{sum(len(p.sales) for p in per_order.values())} / "
                                             f"{sum(p.reversed_sales for p in per_order.values())}")
    counts["refunds " + ", ".join(f"{s} {n}" for s, n in sorted(_count(r.state for r in refunds.values()).items()))
           ] = len(refunds)
    counts["iiko orders created (Success)"] = sum(len(p.iiko_success) for p in per_order.values())
    counts["register ops / terminal ops (ours)"] = f"{len(fiscal_ops)} / {len(ops_by_id)}"
    counts.update(marked_counts)
    return Report(checks, counts, notes)


def _checks_of_real_devices(emulators: Any, orders: dict[str, Any], per_order: dict[str, OrderMoney],
                            ops_by_id: dict[str, Any], atol: list[dict]) -> list[Check]:
    """Issue 11's invariants: what a real terminal, register and iiko would hold us to."""
    from django.conf import settings

    receipted = Check("every approved, unreversed card sale has exactly one sell receipt of its amount, "
                      "not annulled (or a correction receipt)")
    from fiscal.models import FiscalOperation

    # A manager's correction receipt for a charge without a receipt names the order it corrects.
    corrected = set(FiscalOperation.objects.filter(task_type="sellCorrection", state="done")
                    .values_list("reference", flat=True))
    for order_id, facts in per_order.items():
        for sale in facts.sales:
            receipted.checked += 1
            order = orders.get(order_id)
            number = order.number if order else order_id
            sells = [d for d in facts.sells if money(d["total"]) == money(sale["amount"])]
            if len(sells) != 1 and not any(order_id in (reference or "") for reference in corrected):
                receipted.fail(f"{number}: approved sale {sale['amount']} ₽ (id {sale['id']}) has "
                               f"{len(sells)} sell receipts of that amount")
            elif facts.annuls and not facts.returned:
                receipted.fail(f"{number}: approved sale {sale['amount']} ₽ kept, yet its receipt was annulled")

    window = Check("no card sale started more than the guest window after its order's POST")
    slack = 2.0  # the window is checked just before the sale row is written and sent
    for op in ops_by_id.values():
        if op.kind != "sale" or not op.reference.startswith("order:") or op.sent_at is None:
            continue
        order = orders.get(op.reference.split(":")[1])
        if order is None:
            continue
        window.checked += 1
        late = (op.sent_at - order.created_at).total_seconds()
        if late > settings.CHECKOUT_GUEST_WINDOW + slack:
            window.fail(f"{order.number}: card sale {op.op_id} sent {late:.0f} s after the order's POST "
                        f"(window {settings.CHECKOUT_GUEST_WINDOW:.0f} s)")

    twins = Check("no order reached iiko as two orders (by the kiosk number iiko shows the kitchen)")
    created: dict[str, list[str]] = defaultdict(list)
    for entry in emulators.iiko.journal():
        if entry["creationStatus"] == "Success":
            created[entry["externalNumber"]].append(entry["id"])
    for number, ids in created.items():
        twins.checked += 1
        if len(ids) > 1:
            twins.fail(f"{number}: {len(ids)} orders in iiko ({', '.join(ids)})")

    requisites = Check("every receipt of an automatic-mode register carries machineNumber, paymentsAddress, "
                       "paymentsPlace")
    for entry in atol:
        if entry["type"] not in ("sell", "sellReturn", "sellCorrection", "sellReturnCorrection"):
            continue
        requisites.checked += 1
        missing = [name for name in REQUISITES if not str(entry.get(name) or "").strip()]
        if missing:
            requisites.fail(f"{entry['device']} {entry['type']} FD {entry.get('fiscalDocumentNumber')}: "
                            f"no {', '.join(missing)}")
    return [receipted, window, twins, requisites]


def _count(values) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for value in values:
        out[value] += 1
    return dict(out)


# --- marked goods (issue 13) ------------------------------------------------------------------------------
@dataclass
class MarkedReceipt:
    """One sell or sellReturn on the register with its marked positions, as its journal holds them."""

    kind: str  # sell / annul / refund
    fd: str  # "<device> FD <n>" for the messages
    order_id: str | None
    refund_id: int | None
    codes: list[str]  # each position's imcParams.imc decoded: the code exactly as scanned
    problems: list[str]  # positions that are not one unit of the planned status, or an imc that does not decode


def marked_receipts(atol: list[dict], reference_of: dict[tuple[str, int], str],
                    refund_orders: dict[int, str]) -> list[MarkedReceipt]:
    """Every sell/sellReturn in the register's journal (in the order the register made them) with its codes.
    ``reference_of``: (FN, FD) -> our FiscalOperation's reference; ``refund_orders``: Refund id -> order id."""
    receipts = []
    for entry in atol:
        if entry.get("type") not in ("sell", "sellReturn") or "fiscalDocumentNumber" not in entry:
            continue
        reference = reference_of.get((entry["fnNumber"], entry["fiscalDocumentNumber"]), "")
        parts = reference.split(":")
        order_id, refund_id = None, None
        if reference.startswith("order:"):
            order_id = parts[1]
        elif reference.startswith("refund:") and parts[1].isdigit():
            refund_id = int(parts[1])
            order_id = refund_orders.get(refund_id)
        kind = "sell" if entry["type"] == "sell" else "annul" if reference.endswith(":annul") else "refund"
        planned = SOLD_STATUS if kind == "sell" else RETURN_STATUS
        codes, problems = [], []
        for index, item in enumerate(entry.get("items") or []):
            params = item.get("imcParams") if isinstance(item, dict) else None
            if not params:
                continue
            try:
                codes.append(base64.b64decode(params["imc"], validate=True).decode("utf-8"))
            except (KeyError, TypeError, ValueError, binascii.Error, UnicodeDecodeError):
                problems.append(f"position {index}: imc {params.get('imc')!r} does not decode to a code")
                continue
            if params.get("itemEstimatedStatus") != planned:
                problems.append(f"position {index}: {params.get('itemEstimatedStatus')}, not {planned}")
            if money(item.get("quantity")) != Decimal("1.00"):
                problems.append(f"position {index}: quantity {item.get('quantity')}, not one unit")
        receipts.append(MarkedReceipt(kind, f"{entry['device']} FD {entry['fiscalDocumentNumber']}", order_id,
                                      refund_id, codes, problems))
    return receipts


def marked_goods_checks(receipts: list[MarkedReceipt], marks: list[dict[str, Any]], orders: dict[str, dict[str, Any]],
                        refund_receipts: dict[int, list[str]]) -> list[Check]:
    """The four invariants of issue 13 (plain data in, so that a hand-made bad case shows each one failing):

    ``marks``: every OrderMark as {"order_id", "code", "state", "refund_id"}; ``orders``: per order id
    {"number", "status", "error_code", "sold_code" (the soak put a code the operator says is sold in it),
    "receipt_ops" (its sell/sellReturn register operations), "card_ops" (its card operations), "sales"
    (approved terminal sales)}; ``refund_receipts``: Refund id -> the codes its done sellReturn carried."""
    once = Check("marked goods: every sold unit's code is in exactly one sell receipt of its order, not annulled "
                 "nor returned since (and every code in such a receipt is a sold unit of that order)")
    between = Check("marked goods: a code is in two sell receipts only with a return of it in between")
    returned = Check("marked goods: every returned code was sold (by the order it goes back from; each returned "
                     "unit in its refund's sellReturn)")
    rejected = Check("marked goods: an order refused for its codes (marking_rejected / marking_unavailable, or "
                     "carrying a code the operator says is sold) made no receipt and no card operation")

    def number(order_id: str | None) -> str:
        return str((orders.get(order_id or "") or {}).get("number") or order_id)

    # Replay the register's journal, code by code: who holds each code (a sell not yet annulled or returned).
    holders: dict[str, list[tuple[str | None, str]]] = defaultdict(list)  # code -> [(order id, sell FD)]
    for receipt in receipts:
        for problem in receipt.problems:
            (between if receipt.kind == "sell" else returned).fail(f"{number(receipt.order_id)} {receipt.kind} "
                                                                   f"{receipt.fd}: {problem}")
        for code in receipt.codes:
            held = holders[code]
            if receipt.kind == "sell":
                between.checked += 1
                if held:
                    between.fail(f"{code[:31]!r} sold in {receipt.fd} ({number(receipt.order_id)}) while still sold "
                                 f"in {', '.join(f'{fd} ({number(o)})' for o, fd in held)}: no return in between")
                held.append((receipt.order_id, receipt.fd))
                continue
            returned.checked += 1
            mine = [h for h in held if h[0] == receipt.order_id and receipt.order_id is not None]
            if not mine:
                returned.fail(f"{code[:31]!r} returned by {receipt.kind} {receipt.fd} ({number(receipt.order_id)}) "
                              f"was not sold by that order (held by {held or 'nobody'})")
            else:
                held.remove(mine[0])

    live = {(order_id, code) for code, held in holders.items() for order_id, _ in held}
    for mark in marks:
        key = (mark["order_id"], mark["code"])
        label = f"{number(mark['order_id'])} unit {mark['code'][:31]!r} ({mark['state']})"
        if mark["state"] == "sold":
            once.checked += 1
            count = sum(1 for order_id, _ in holders.get(mark["code"], []) if order_id == mark["order_id"])
            if count != 1:
                once.fail(f"{label}: in {count} sell receipts of its order that are not annulled nor returned")
            others = [(o, fd) for o, fd in holders.get(mark["code"], []) if o != mark["order_id"]]
            if others:
                once.fail(f"{label}: also in the live sell receipts {others}")
        elif mark["state"] == "reserved":
            once.checked += 1
            status = (orders.get(mark["order_id"]) or {}).get("status")
            once.fail(f"{label}: still reserved after recovery (order {status})")
        elif key in live:
            once.checked += 1
            once.fail(f"{label}: our unit is {mark['state']}, yet its order's sell receipt holds it (not annulled, "
                      f"not returned)")
        if mark["state"] == "returned":
            returned.checked += 1
            if mark["refund_id"] is None:
                returned.fail(f"{label}: returned, by no refund")
            elif mark["code"] not in refund_receipts.get(mark["refund_id"], []):
                returned.fail(f"{label}: not in the sellReturn of its refund {mark['refund_id']}")
    sold_units = {(m["order_id"], m["code"]) for m in marks if m["state"] == "sold"}
    for order_id, code in sorted(live - sold_units, key=str):
        once.checked += 1
        once.fail(f"{number(order_id)}: {code[:31]!r} is in its live sell receipt, yet not a sold unit of ours")

    for order_id, order in orders.items():
        if order["error_code"] not in MARKING_REFUSALS and not order.get("sold_code"):
            continue
        rejected.checked += 1
        problems = []
        if order["status"] not in UNPAID_FINAL:
            problems.append(f"ended {order['status']}")
        if order["receipt_ops"]:
            problems.append(f"register receipts {order['receipt_ops']}")
        if order["card_ops"] or order["sales"]:
            problems.append(f"card operations {order['card_ops']} (approved sales on the terminal "
                            f"{order['sales']})")
        if problems:
            rejected.fail(f"{number(order_id)} {order_id} ({order['status']} {order['error_code']}"
                          f"{', a code sold elsewhere' if order.get('sold_code') else ''}): " + "; ".join(problems))
    return [once, between, returned, rejected]


def _checks_of_marked_goods(atol: list[dict], documents: dict[tuple[str, int], Any], orders: dict[str, Any],
                            refunds: dict[int, Any], per_order: dict[str, OrderMoney],
                            marked: dict[str, dict[str, Any]]) -> tuple[list[Check], dict[str, Any]]:
    """Issue 13's invariants, from the register's journal (each position's imcParams.imc) and our database."""
    from fiscal.models import FiscalOperation
    from nekassir.models import OrderMark
    from payments.models import CardOperation

    reference_of = {key: (d.operation.reference if d.operation else "") for key, d in documents.items()}
    receipts = marked_receipts(atol, reference_of, {pk: str(r.order_id) for pk, r in refunds.items()})
    refund_receipts: dict[int, list[str]] = defaultdict(list)
    receipts_of: dict[str, list[str]] = defaultdict(list)
    for receipt in receipts:
        if receipt.kind == "refund" and receipt.refund_id is not None:
            refund_receipts[receipt.refund_id] += receipt.codes
        receipts_of[str(receipt.order_id)].append(f"{receipt.kind} {receipt.fd}")
    marks = [{"order_id": str(order_id), "code": code, "state": state, "refund_id": refund_id}
             for order_id, code, state, refund_id in OrderMark.objects.values_list("order_id", "code", "state",
                                                                                   "refund_id")]
    watched = {order_id for order_id, o in orders.items() if o.error_code in MARKING_REFUSALS}
    watched |= {order_id for order_id, info in marked.items() if info.get("sold_code") and order_id in orders}
    receipt_ops: dict[str, list[str]] = defaultdict(list)
    for op in FiscalOperation.objects.filter(task_type__in=["sell", "sellReturn"], reference__startswith="order:"):
        order_id = op.reference.split(":")[1]
        if order_id in watched:
            receipt_ops[order_id].append(f"{op.task_type} {op.state}")
    card_ops: dict[str, list[str]] = defaultdict(list)
    for op in CardOperation.objects.filter(reference__startswith="order:"):
        order_id = op.reference.split(":")[1]
        if order_id in watched:
            card_ops[order_id].append(f"{op.kind} {op.state}")
    facts = {order_id: {
        "number": orders[order_id].number, "status": orders[order_id].status,
        "error_code": orders[order_id].error_code, "sold_code": bool(marked.get(order_id, {}).get("sold_code")),
        "receipt_ops": receipt_ops[order_id] + receipts_of[order_id] if order_id in watched else [],
        "card_ops": card_ops[order_id], "sales": len(per_order[order_id].sales),
    } for order_id in orders}
    checks = marked_goods_checks(receipts, marks, facts, refund_receipts)

    counts: dict[str, Any] = {}
    with_marks = {m["order_id"] for m in marks}
    counts["orders with marked goods (placed / in the database)"] = f"{len(marked)} / {len(with_marks)}"
    counts["  of them " + ", ".join(f"{s} {n}" for s, n in sorted(_count(
        orders[o].status for o in with_marks if o in orders).items()))] = len(with_marks)
    failed = _count(orders[o].error_code or "?" for o in with_marks if o in orders and orders[o].status == "failed")
    for code in MARKING_REFUSALS:
        counts[f"  failed {code}"] = failed.pop(code, 0)
    counts["  failed otherwise " + ", ".join(f"{c} {n}" for c, n in sorted(failed.items()))] = sum(failed.values())
    counts["  with a code the operator says is sold (all refused)"] = sum(
        1 for info in marked.values() if info.get("sold_code"))
    counts["marked units " + ", ".join(f"{s} {n}" for s, n in sorted(_count(m["state"] for m in marks).items()))
           ] = len(marks)
    counts["marked units in register receipts: sold / annulled / refunded"] = " / ".join(
        str(sum(len(r.codes) for r in receipts if r.kind == kind)) for kind in ("sell", "annul", "refund"))
    return checks, counts
