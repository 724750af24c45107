"""Issue 14, «Why»: money is written the one way the UI writes it («1 234,50 ₽», ``core.money.rub``) wherever a
manager reads it: the venue's problems (and their Telegram alerts), the reconciliation notes, a job's outcome
and the journal line of a correction, the correction form's limits, the terminal's journal line; never
«1234.50 ₽»."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from core.money import money_text, rub
from fiscal.models import Correction, Shift
from nekassir.models import Order
from nekassir.panel.reconciliation import Card, OrderFacts, RefundFacts, Totals, order_issues, total_gaps
from payments.models import CardOperation
from tests.panel_support import HX, fake_completed_order, fake_shift

D = Decimal
NBSP = "\u00a0"  # the panel's thousands separator

pytestmark = pytest.mark.django_db(transaction=True)


def test_rub_is_the_panels_format():
    assert rub(D("1234.5")) == f"1{NBSP}234,50 ₽"
    assert rub("709.00") == "709,00 ₽" and rub(D("-189")) == "-189,00 ₽" and rub(None) == "—"


def test_stored_texts_are_rewritten_the_ui_way_the_terminals_rubles_too():
    assert money_text("K1-001: возврат 1709.00 ₽") == f"K1-001: возврат 1{NBSP}709,00 ₽"
    assert money_text("Исход «Оплата» на 709.00 руб. неизвестен") == "Исход «Оплата» на 709,00 ₽ неизвестен"
    assert money_text(f"уже 1{NBSP}709,00 ₽") == f"уже 1{NBSP}709,00 ₽"  # written the UI's way already: kept


def test_reconciliation_notes_write_money_the_ui_way():
    ours = Totals(D("856.00"), D("189.00"))
    gaps = total_gaps(Totals(D("1045.50"), D("189.00")), ours, ours)
    assert gaps == [f"Приход: ККТ 1{NBSP}045,50 ₽, наши чеки 856,00 ₽"]
    gaps = total_gaps(None, Totals(D("0.00")), Totals(D("1300.00")), split=D("0"), corrections=None)
    assert gaps == ["Чеки (приход − возвраты) 0,00 ₽ ≠ операции по картам (оплаты − отмены − возвраты) "
                    f"1{NBSP}300,00 ₽, разница -1{NBSP}300,00 ₽"]
    paid = OrderFacts("completed", D("1250.00"), None, None, Card("approved", D("1200.00")),
                      (RefundFacts("done", True, D("1250.00"), Card("approved", D("1250.00"))),))
    issues = order_issues(paid)
    assert f"Оплата 1{NBSP}200,00 ₽, заказ на 1{NBSP}250,00 ₽" in issues
    assert f"Возвращено 1{NBSP}250,00 ₽ — больше, чем оплачено (1{NBSP}200,00 ₽)" in issues
    assert not any(re.search(r"\d\.\d\d ₽", issue) for issue in issues), issues


def test_the_venues_problems_write_money_the_ui_way(manager_client, venue):
    kiosk = venue.kiosks["K1"]
    order = fake_completed_order(kiosk, fake_shift(kiosk), total=D("1250.00"))
    Order.objects.filter(pk=order.pk).update(status=Order.Status.NOT_DELIVERED)
    unknown = CardOperation.objects.create(op_id=str(uuid.uuid4()), kiosk=venue.kiosks["K2"], kind="refund",
                                           state="unknown", transport="kkm", amount_kopecks=120050,
                                           sent_at=timezone.now() - timedelta(hours=2))  # escalated: names the sum
    html = manager_client.get("/alerts/", headers=HX).content.decode()
    assert f"Заказ {order.number} (1{NBSP}250,00 ₽, киоск K1) оплачен" in html
    assert f"на терминале киоска K2 (1{NBSP}200,50 ₽)" in html, unknown
    assert not re.search(r"\d\.\d\d ₽", html)


def _closed_shift_with_card_money(manager_client, venue) -> Shift:
    """A closed shift of K1 with 1 300 ₽ taken by card that no receipt of ours accounts for."""
    manager_client.post("/kiosks/K1/shift/open/")
    shift = Shift.objects.get(kiosk__code="K1", state="open")
    CardOperation.objects.create(op_id=f"gap-{uuid.uuid4().hex[:12]}", kiosk=venue.kiosks["K1"], kind="sale",
                                 state="approved", transport="kkm", amount_kopecks=130000, shift=shift,
                                 rrn="000000000042", auth_code="A1B2C3")
    manager_client.post("/kiosks/K1/shift/close/")
    shift.refresh_from_db()
    return shift


def test_a_correction_jobs_outcome_and_its_journal_line_write_money_the_ui_way(manager_client, venue):
    shift = _closed_shift_with_card_money(manager_client, venue)
    page = manager_client.get(f"/shifts/{shift.pk}/").content.decode()
    assert f"разница -1{NBSP}300,00 ₽" in page
    form = {"kind": "sellCorrection", "basis": "self", "settlement_date": shift.closed_at.date().isoformat(),
            "instruction_number": "", "reason": "Чек не пробит", "name_0": "Бургер", "price_0": "1300.00",
            "quantity_0": "1", "vat_0": "vat22"}
    html = manager_client.post(f"/shifts/{shift.pk}/correction/", form, headers=HX).content.decode()
    message = re.search(r'data-testid="job-message">([^<]*)<', html)
    assert message, html
    assert message.group(1).startswith(f"Чек коррекции прихода на 1{NBSP}300,00 ₽ пробит"), message.group(1)
    journal = manager_client.get("/journal/").content.decode()
    assert f"Чек коррекции прихода на 1{NBSP}300,00 ₽ за смену №{shift.number}" in journal
    assert not re.search(r"\d\.\d\d ₽", html + journal)
    assert str(Correction.objects.get()) == f"чек коррекции прихода 1{NBSP}300,00 ₽ (смена {shift.number})"  # admin


def test_the_correction_forms_limits_write_money_the_ui_way(manager_client, venue):
    shift = _closed_shift_with_card_money(manager_client, venue)
    form = {"kind": "sellCorrection", "basis": "self", "settlement_date": shift.closed_at.date().isoformat(),
            "reason": "Чек не пробит", "name_0": "Бургер", "price_0": "1000001", "quantity_0": "1", "vat_0": "vat22"}
    html = manager_client.post(f"/shifts/{shift.pk}/correction/", form).content.decode()
    assert f"Позиция 1: цена больше 1{NBSP}000{NBSP}000,00 ₽" in html
