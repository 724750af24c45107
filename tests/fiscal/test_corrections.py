"""Correction receipts (issue 11 item 10): a reconciliation gap is fixed from the shift page with a
sellCorrection / sellReturnCorrection, through the journaled register workflow, and the gap closes."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import pytest
from django.utils import timezone

from core.models import Event
from fiscal.models import Correction, FiscalDocument, FiscalOperation, Shift
from nekassir.panel import jobs
from nekassir.panel.reconciliation import Totals, reconcile_shift, total_gaps
from payments.models import CardOperation
from tests.panel_support import HX, PIN

D = Decimal

pytestmark = pytest.mark.django_db(transaction=True)

REASON = "Оплата картой прошла, чек не пробит: ККТ была без связи"


def money_taken_without_receipt(manager_client, venue, kind: str = "sale", kopecks: int = 30000) -> Shift:
    """A closed shift of K1 whose card operations hold money that no receipt of ours accounts for: the card
    operation is written as data (as a lost answer resolved by hand would leave it), the shift is real."""
    manager_client.post("/kiosks/K1/shift/open/")
    shift = Shift.objects.get(kiosk__code="K1", state="open")
    CardOperation.objects.create(op_id=f"gap-{uuid.uuid4().hex[:12]}", kiosk=venue.kiosks["K1"], kind=kind,
                                 state="approved", transport="kkm", amount_kopecks=kopecks, shift=shift,
                                 rrn="000000000042", auth_code="A1B2C3")
    manager_client.post("/kiosks/K1/shift/close/")
    shift.refresh_from_db()
    assert shift.state == "closed"
    return shift


def correction_form(**changes) -> dict:
    form = {"kind": "sellCorrection", "basis": "self", "settlement_date": timezone.localdate().isoformat(),
            "instruction_number": "", "reason": REASON,
            "name_0": "Бургер классический", "price_0": "300.00", "quantity_0": "1", "vat_0": "vat22"}
    return {**form, **changes}


def job_of(answer) -> Event:
    return Event.objects.get(pk=int(re.search(r"job=(\d+)", answer["Location"]).group(1)))


def saved_rows() -> tuple[int, int, int]:
    return Event.objects.count(), FiscalOperation.objects.count(), Correction.objects.count()


# --- the gap, and the correction that closes it -----------------------------------------------------------
def test_money_taken_without_a_receipt_is_a_gap_the_shift_page_offers_to_correct(manager_client, venue):
    shift = money_taken_without_receipt(manager_client, venue)
    assert reconcile_shift(shift).gaps == [
        "Чеки (приход − возвраты) 0,00 ₽ ≠ операции по картам (оплаты − отмены − возвраты) 300,00 ₽, "
        "разница -300,00 ₽"]
    html = manager_client.get(f"/shifts/{shift.pk}/").content.decode()
    assert "разница -300,00 ₽" in html
    assert 'data-testid="correction-form"' in html and f'action="/shifts/{shift.pk}/correction/"' in html
    assert "Чек коррекции прихода" in html and "самостоятельно" in html and "по предписанию" in html


def test_a_sell_correction_from_the_shift_page_is_made_journaled_and_closes_the_gap(manager_client, manager, venue):
    shift = money_taken_without_receipt(manager_client, venue)
    before = len(venue.atol.journal())
    answer = manager_client.post(f"/shifts/{shift.pk}/correction/", correction_form())
    assert answer.status_code == 302 and answer["Location"].startswith(f"/shifts/{shift.pk}/?job=")

    # A device job, journaled with who and why.
    start = job_of(answer)
    assert start.action == "panel.correction" and start.user == manager and start.object_ref == f"shift:{shift.pk}"
    assert REASON in start.message
    outcome = Event.objects.get(object_ref=f"job:{start.pk}")
    assert outcome.action == jobs.DONE, outcome.message

    # The same journaled workflow as every fiscal task: the operation (uuid) and the document with its FD.
    correction = Correction.objects.select_related("operation__document").get()
    op = correction.operation
    assert op.task_type == "sellCorrection" and op.state == "done" and op.sent_at is not None
    document = op.document
    assert document.doc_type == "sellCorrection" and document.fd_number and document.total == D("300.00")
    assert correction.shift == shift and correction.created_by == manager and correction.reason == REASON
    assert correction.basis == "self" and correction.total == D("300.00") and correction.job == start
    assert Event.objects.filter(action="fiscal.correction.made", user=manager, object_ref=f"shift:{shift.pk}",
                                data__fd=document.fd_number).exists()

    # What the register was sent and made: the lines and the basis, paid electronically.
    made = [entry for entry in venue.atol.journal()[before:] if entry["device"] == "K1"]
    assert [entry["type"] for entry in made] == ["openShift", "sellCorrection"]  # the register's shift was closed
    entry = made[-1]
    assert entry["fiscalDocumentNumber"] == document.fd_number and entry["total"] == 300.0
    assert entry["correctionType"] == "self"
    assert entry["correctionBaseDate"] == timezone.localdate().strftime("%Y.%m.%d")
    assert "correctionBaseNumber" not in entry  # tag 1179 only for an instruction
    [item] = entry["items"]
    assert (item["name"], item["price"], item["quantity"], item["amount"], item["tax"]) == (
        "Бургер классический", 300.0, 1, 300.0, {"type": "vat22"})
    assert entry["payments"] == [{"type": "electronically", "sum": 300.0}]

    # The reconciliation counts it: the gap closes.
    rec = reconcile_shift(shift)
    assert rec.gaps == [] and rec.status == "ok" and rec.corrections == Totals(D("300.00"), D("0.00"), 1, 0)
    page = manager_client.get(f"/shifts/{shift.pk}/").content.decode()
    assert 'data-testid="rec-status">сходится<' in page
    assert 'data-testid="corrections"' in page and f"ФД {document.fd_number}" in page and REASON in page
    # The receipt itself lies in the shift the register was in when it was made, listed among its receipts.
    later = document.shift
    assert later.pk != shift.pk and reconcile_shift(later).gaps == []
    later_page = manager_client.get(f"/shifts/{later.pk}/").content.decode()
    assert "чек коррекции прихода" in later_page and f"смены №{shift.number}" in later_page


def test_a_return_correction_by_instruction_subtracts_and_carries_its_number_and_date(manager_client, venue):
    shift = money_taken_without_receipt(manager_client, venue, kind="refund", kopecks=18900)
    assert "разница 189,00 ₽" in reconcile_shift(shift).gaps[0]
    form = correction_form(kind="sellReturnCorrection", basis="instruction", settlement_date="2026-03-06",
                           instruction_number="12-34/567", name_0="Капучино", price_0="189", vat_0="vat22")
    answer = manager_client.post(f"/shifts/{shift.pk}/correction/", form)
    assert Event.objects.get(object_ref=f"job:{job_of(answer).pk}").action == jobs.DONE
    entry = venue.atol.journal()[-1]
    assert entry["type"] == "sellReturnCorrection" and entry["correctionType"] == "instruction"
    assert (entry["correctionBaseDate"], entry["correctionBaseNumber"]) == ("2026.03.06", "12-34/567")
    correction = Correction.objects.get()
    assert (correction.basis, correction.instruction_number) == ("instruction", "12-34/567")
    assert correction.settlement_date.isoformat() == "2026-03-06"
    rec = reconcile_shift(shift)
    assert rec.gaps == [] and rec.corrections == Totals(D("0.00"), D("189.00"), 0, 1)


def test_a_correction_needs_the_shift_permission_and_a_named_manager(client, viewer, venue):
    shift = Shift.objects.create(kiosk=venue.kiosks["K1"], fn_number="9999078900000001", number=1, state="closed")
    client.force_login(viewer)
    assert 'data-testid="correction-form"' not in client.get(f"/shifts/{shift.pk}/").content.decode()
    rows = saved_rows()
    assert client.post(f"/shifts/{shift.pk}/correction/", correction_form()).status_code == 403
    assert saved_rows() == rows
    # The kiosk's own PIN-unlocked screen has no named person to answer for a correction: not offered there.
    client.logout()
    assert client.post("/kiosk/K1/service/", {"pin": PIN}).status_code == 302
    rows = saved_rows()  # the unlock itself is journaled
    assert 'data-testid="correction-form"' not in client.get(f"/kiosk/K1/service/shifts/{shift.pk}/").content.decode()
    assert client.post(f"/kiosk/K1/service/shifts/{shift.pk}/correction/", correction_form()).status_code == 404
    assert saved_rows() == rows and venue.atol.journal() == []


@pytest.mark.parametrize(("changes", "message"), [
    ({"name_0": "", "price_0": "", "quantity_0": "", "vat_0": ""}, "Укажите хотя бы одну позицию"),
    ({"price_0": "0"}, "Позиция 1: цена должна быть больше нуля"),
    ({"price_0": "-5"}, "Позиция 1: цена должна быть больше нуля"),
    ({"price_0": "сто"}, "Позиция 1: цена — число рублей с копейками, например 189.00"),
    ({"price_0": "1.005"}, "Позиция 1: цена — число рублей с копейками, например 189.00"),
    ({"quantity_0": "0"}, "Позиция 1: количество должно быть больше нуля"),
    ({"price_0": "1e30"}, "Позиция 1: цена больше 1\u00a0000\u00a0000,00 ₽"),
    ({"quantity_0": "NaN"}, "Позиция 1: количество — число, до 3 знаков после запятой"),
    ({"price_0": "999999", "quantity_0": "9999", "name_1": "Ещё", "price_1": "999999", "vat_1": "vat22"},
     "Сумма чека коррекции больше 10\u00a0000\u00a0000,00 ₽: проверьте цены и количества"),
    ({"price_0": "0.01", "quantity_0": "0.001"}, "Позиция 1: сумма меньше копейки"),
    ({"name_0": ""}, "Позиция 1: укажите наименование"),
    ({"name_0": "Б" * 129}, "Позиция 1: наименование длиннее 128 символов"),
    ({"vat_0": "vat18"}, "Позиция 1: неизвестная ставка НДС «vat18»"),
    ({"vat_0": "vat20"}, "Позиция 1: ставка «НДС 20%» не применяется с 01.01.2026"),
    ({"vat_0": "vat5"}, "Позиция 1: ставка «НДС 5%» применяется только при УСН"),
    ({"vat_0": "vat122"}, "Позиция 1: расчётная ставка «НДС 22/122» бывает только в чеках предоплаты"),
    ({"vat_0": "vat22", "settlement_date": "2025-12-31"},
     "Позиция 1: ставка «НДС 22%» применяется только с 01.01.2026"),
    ({"vat_0": ""}, "Позиция 1: выберите ставку НДС"),
    ({"basis": "instruction"}, "Для коррекции по предписанию укажите номер предписания налогового органа"),
    ({"basis": "sometimes"}, "Выберите основание коррекции: самостоятельно или по предписанию"),
    ({"kind": "buyCorrection"}, "Выберите вид чека коррекции"),
    ({"settlement_date": ""}, "Укажите дату корректируемого расчёта"),
    ({"settlement_date": "31.02.2026"}, "Укажите дату корректируемого расчёта"),
    ({"settlement_date": "2999-01-01"}, "Дата корректируемого расчёта не может быть позже сегодняшней"),
    ({"reason": "  "}, "Укажите, почему нужна коррекция: это попадёт в журнал"),
])
def test_bad_input_is_refused_in_russian_and_nothing_is_saved(manager_client, venue, changes, message):
    shift = Shift.objects.create(kiosk=venue.kiosks["K1"], fn_number="9999078900000001", number=1, state="closed")
    rows = saved_rows()
    answer = manager_client.post(f"/shifts/{shift.pk}/correction/", correction_form(**changes))
    assert answer.status_code == 422
    html = answer.content.decode()
    assert 'data-testid="correction-errors"' in html and message in html
    assert 'value="' + REASON in html or changes.get("reason")  # what was typed is kept in the form
    assert saved_rows() == rows and venue.atol.journal() == []


def test_a_correction_carries_the_requisites_of_an_automatic_device(manager_client, venue):
    """Like every receipt of a kiosk's register (issue 11 item 6): tags 1036, 1009, 1187 as the kiosk has them."""
    from core.models import Kiosk

    Kiosk.objects.filter(code="K1").update(machine_number="К-0042", payments_address="г. Москва, ул. Тверская, 1",
                                           payments_place="Фудкорт, киоск 1")
    shift = money_taken_without_receipt(manager_client, venue)
    manager_client.post(f"/shifts/{shift.pk}/correction/", correction_form())
    entry = venue.atol.journal()[-1]
    assert entry["type"] == "sellCorrection"
    assert (entry["machineNumber"], entry["paymentsAddress"], entry["paymentsPlace"]) == (
        "К-0042", "г. Москва, ул. Тверская, 1", "Фудкорт, киоск 1")


def test_a_vat20_correction_of_a_2025_settlement_is_allowed(manager_client, venue):
    """The rate follows the date of the settlement being corrected (PROTOCOLS.md §1): 20 % before 2026."""
    shift = money_taken_without_receipt(manager_client, venue)
    form = correction_form(settlement_date="2025-12-31", vat_0="vat20")
    answer = manager_client.post(f"/shifts/{shift.pk}/correction/", form)
    assert Event.objects.get(object_ref=f"job:{job_of(answer).pk}").action == jobs.DONE
    assert venue.atol.journal()[-1]["items"][0]["tax"] == {"type": "vat20"}


def test_a_register_failure_is_the_jobs_outcome_and_makes_no_document(manager_client, venue):
    shift = money_taken_without_receipt(manager_client, venue)
    manager_client.post("/kiosks/K1/shift/open/")
    venue.atol.fault("cover_open", device="K1")
    answer = manager_client.post(f"/shifts/{shift.pk}/correction/", correction_form(), headers=HX)
    html = answer.content.decode()
    assert 'data-job-kind="correction"' in html and 'data-job-state="failed"' in html and "крышка" in html.lower()
    correction = Correction.objects.select_related("operation").get()
    assert correction.operation.state == "failed"  # journaled before the call, kept
    assert not FiscalDocument.objects.filter(doc_type="sellCorrection").exists()
    assert reconcile_shift(shift).gaps  # still a gap: nothing was made


def test_a_job_delivered_twice_makes_one_correction(manager_client, venue):
    shift = money_taken_without_receipt(manager_client, venue)
    answer = manager_client.post(f"/shifts/{shift.pk}/correction/", correction_form())
    start = job_of(answer)
    Event.objects.filter(object_ref=f"job:{start.pk}").update(object_ref="lost")  # its outcome never recorded
    assert jobs.run_job(start.pk) == "ok"
    assert Correction.objects.count() == 1
    assert [e["type"] for e in venue.atol.journal()].count("sellCorrection") == 1


# --- the reconciliation on plain values ---------------------------------------------------------------------
def test_corrections_count_on_the_fiscal_side():
    card = Totals(D("556.00"), D("189.00"))
    receipts = Totals(D("256.00"), D("0.00"))
    assert total_gaps(None, receipts, card) != []
    assert total_gaps(None, receipts, card, corrections=Totals(D("300.00"), D("189.00"))) == []
    gaps = total_gaps(None, receipts, card, corrections=Totals(D("300.00"), D("0.00")))
    assert gaps == ["Чеки (приход − возвраты) 256,00 ₽, с чеками коррекции 556,00 ₽ ≠ операции по картам "
                    "(оплаты − отмены − возвраты) 367,00 ₽, разница 189,00 ₽"]


def test_a_corrected_shift_is_no_longer_among_the_venues_problems(manager_client, venue):
    """The Telegram alerts and the venue page share ``find_problems``: once the correction receipt is made,
    the closed shift's gap is closed there too, not only on the shift page."""
    from nekassir.alerts import find_problems

    shift = money_taken_without_receipt(manager_client, venue)
    ref = f"shift:{shift.pk}:unreconciled"
    assert ref in [p.key for p in find_problems()]
    answer = manager_client.post(f"/shifts/{shift.pk}/correction/", correction_form())
    assert Event.objects.get(object_ref=f"job:{job_of(answer).pk}").action == jobs.DONE
    assert ref not in [p.key for p in find_problems()]
