"""The reconciliation of a shift: register totals = our receipts = card operations; each order alone."""

from __future__ import annotations

from decimal import Decimal

from nekassir.panel.reconciliation import (
    Card,
    Doc,
    OrderFacts,
    RefundFacts,
    Totals,
    card_totals,
    document_totals,
    order_issues,
    register_totals,
    total_gaps,
)

D = Decimal


def test_register_totals_are_read_from_the_counters_kept_at_closing():
    raw = {"closing_report": {}, "shift_totals": {"shiftTotals": {"receipts": {
        "sell": {"count": 3, "sum": 1045.5}, "sellReturn": {"count": 1, "sum": 189.0}}}}}
    assert register_totals(raw) == Totals(D("1045.50"), D("189.00"), 3, 1)
    assert register_totals(None) is None and register_totals({"shift_totals": None}) is None


def test_documents_and_card_operations_are_summed_exactly():
    assert document_totals([("sell", D("856.00"), 2), ("sellReturn", D("378.00"), 2)]).net == D("478.00")
    card = card_totals([("sale", 85600, 2), ("cancel", 18900, 1), ("refund", 18900, 1)])
    assert card == Totals(D("856.00"), D("378.00"), 2, 2)


def test_totals_that_agree_have_no_gap():
    same = Totals(D("856.00"), D("378.00"))
    assert total_gaps(same, same, same) == []
    assert total_gaps(None, same, same) == []  # an open shift: the register is read at closing


def test_every_disagreement_is_named():
    ours = Totals(D("856.00"), D("378.00"))
    gaps = total_gaps(Totals(D("900.00"), D("378.00")), ours, Totals(D("856.00"), D("189.00")))
    assert any("Приход: ККТ 900,00 ₽" in g for g in gaps)
    assert any("разница -189,00 ₽" in g for g in gaps)


def completed(**changes) -> OrderFacts:
    facts = {"status": "completed", "total": D("250.00"), "sell": Doc("done", D("250.00")),
             "sale": Card("approved", D("250.00"))}
    return OrderFacts(**{**facts, **changes})


def test_a_completed_order_is_one_sell_and_one_approved_sale():
    assert order_issues(completed()) == []
    assert order_issues(completed(sale=None)) == ["Чек пробит, но одобренной оплаты картой нет"]
    assert order_issues(completed(sell=Doc("failed"))) == ["Оплачен, но чека прихода нет"]
    assert "Оплата 200,00 ₽, заказ на 250,00 ₽" in order_issues(completed(sale=Card("approved", D("200.00"))))


def test_a_cancelled_order_has_no_charge_and_an_annulled_receipt():
    cancelled = OrderFacts("cancelled", D("250.00"), Doc("done", D("250.00")), Doc("done", D("250.00")),
                           Card("declined", D("250.00")))
    assert order_issues(cancelled) == []
    assert order_issues(OrderFacts("cancelled", D("250.00"))) == []  # nothing was made at all
    not_annulled = OrderFacts("cancelled", D("250.00"), Doc("done", D("250.00")), None, Card("declined"))
    assert order_issues(not_annulled) == ["Заказ не оплачен, а чек прихода не аннулирован"]
    charged = OrderFacts("failed", D("250.00"), None, None, Card("approved", D("250.00")))
    assert order_issues(charged) == ["Заказ отменён, но оплата картой одобрена"]


def test_refunded_lines_need_a_card_refund_and_a_return_receipt():
    good = RefundFacts("done", True, D("100.00"), Card("approved", D("100.00")), Doc("done", D("100.00")))
    assert order_issues(completed(refunds=(good,))) == []
    no_receipt = RefundFacts("done", True, D("100.00"), Card("approved", D("100.00")), None)
    assert order_issues(completed(refunds=(no_receipt,))) == ["Возврат 100,00 ₽ без чека возврата прихода"]
    waiting = RefundFacts("needs_attention", True, D("100.00"), Card("approved", D("100.00")))
    assert "чек возврата ещё не пробит" in order_issues(completed(refunds=(waiting,)))[0]
    failed = RefundFacts("failed", True, D("100.00"), Card("declined", D("100.00")))
    assert order_issues(completed(refunds=(failed,))) == []  # nothing moved


def test_refunds_above_what_was_paid_are_flagged():
    twice = RefundFacts("done", True, D("200.00"), Card("approved", D("200.00")), Doc("done", D("200.00")))
    assert "больше, чем оплачено" in order_issues(completed(refunds=(twice, twice)))[-1]
