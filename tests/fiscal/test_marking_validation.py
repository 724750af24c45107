"""fiscal.marking.validate_codes against the ATOL emulator over real HTTP (issue 13): one code at a time under the
register's lock, every step journaled, a bounded wait, nothing unreadable taken for an acceptance, and a register
left with a code under validation by a killed process cleared first."""

from __future__ import annotations

import base64
import uuid as uuid_lib
from decimal import Decimal

import pytest

from core.gs1 import GS, imc_base64, make_code
from fiscal.atol_emulator import AtolWebServerEmulator, DriverError
from fiscal.marking import CodeValidation, validate_codes
from fiscal.models import FiscalOperation
from fiscal.register import FiscalFailed, make_client, register_session
from tests.factories import make_kiosk

pytestmark = pytest.mark.django_db(transaction=True)

GOOD = {"imcCheckFlag": True, "imcCheckResult": True, "imcStatusInfo": True, "imcEstimatedStatusCorrect": True,
        "ecrStandAloneFlag": False}
INDUSTRY = [{"fois": "030", "date": "21.11.2023", "number": "1944",
             "industryAttribute": "UUID=0d2c6d5e-4f6b-4a55-9d55-1b1c2f3e4d5a&Time=1765000000000"}]


@pytest.fixture
def kiosk(atol_emulator):
    return make_kiosk(atol_emulator.url)


def new_code(gtin: str = "04600000000013") -> str:
    return make_code(gtin, uuid_lib.uuid4().hex[:13], "ab" + GS + "cd")


PRICE = Decimal("80.00")


def sell(*items: dict, kind: str = "sell") -> dict:
    """A receipt task as the product sends it (money as Decimal, never float)."""
    total = sum((item["amount"] for item in items), Decimal(0))
    return {"type": kind, "taxationType": "osn", "operator": {"name": "Киоск 1"}, "machineNumber": "KIOSK-K1",
            "items": list(items), "payments": [{"type": "electronically", "sum": total}], "total": total}


def marked(result: CodeValidation, status: str = "itemPieceSold") -> dict:
    item = {"type": "position", "name": "Вода питьевая 0,5 л", "price": PRICE, "quantity": 1, "amount": PRICE,
            "tax": {"type": "vat22"}, "paymentMethod": "fullPayment", "paymentObject": "commodityWithMarking",
            "measurementUnit": "piece"}
    item["imcParams"] = {"imc": imc_base64(result.code), "imcType": "auto", "itemEstimatedStatus": status,
                         "imcModeProcessing": 0, "itemInfoCheckResult": result.item_info_check_result}
    item["industryInfo"] = INDUSTRY
    return item


def validate(kiosk, codes, **options) -> list[CodeValidation]:
    with register_session(kiosk) as session:
        return validate_codes(session, codes, **options)


def run(kiosk, task: dict) -> FiscalOperation:
    with register_session(kiosk) as session:
        return session.run(task)


def held_and_accepted(emulator, device: str = "K1") -> tuple[dict | None, set[str]]:
    state = emulator.control.get("/_emulator/marking").json()[device]
    return state["held"], set(state["accepted"])


def test_a_valid_code_is_accepted_with_the_five_flags_every_step_journaled(kiosk, atol_emulator):
    code = new_code()
    [result] = validate(kiosk, [code], reference="order-1")
    assert result == CodeValidation(code=code, accepted=True, offline=False, item_info_check_result=GOOD,
                                    operator_status="itemEstimatedStatusCorrect", reason="", shift_number=None,
                                    fn_number=kiosk.fn_number, fn_accepted=True)
    steps = list(FiscalOperation.objects.filter(reference="order-1").order_by("id").values_list("task_type", "state"))
    types = [task for task, _ in steps]
    assert types[:3] == ["cancelMarkingCodeValidation", "getShiftStatus", "beginMarkingCodeValidation"]
    assert types[-1] == "acceptMarkingCode" and "getMarkingCodeValidationStatus" in types
    assert {state for _, state in steps} == {FiscalOperation.State.DONE}
    begin = FiscalOperation.objects.get(reference="order-1", task_type="beginMarkingCodeValidation")
    assert base64.b64decode(begin.request[0]["params"]["imc"]).decode() == code  # exact bytes, GS included
    assert held_and_accepted(atol_emulator) == (None, {imc_base64(code)})


def test_codes_are_validated_one_after_another_in_an_open_shift(kiosk, atol_emulator):
    shift = run(kiosk, {"type": "openShift"}).shift_number
    codes = [new_code(), new_code(), new_code()]
    results = validate(kiosk, codes)
    assert [r.code for r in results] == codes
    assert all(r.accepted and r.fn_accepted and r.shift_number == shift for r in results)
    assert results[0].fn_number == kiosk.fn_number != ""
    begins = FiscalOperation.objects.filter(task_type="beginMarkingCodeValidation").order_by("id")
    accepts = FiscalOperation.objects.filter(task_type="acceptMarkingCode").order_by("id")
    assert [a.id > b.id for a, b in zip(accepts, begins, strict=True)] == [True] * 3  # each accepted before the next
    assert held_and_accepted(atol_emulator)[1] == {imc_base64(code) for code in codes}


@pytest.mark.parametrize("how", ["fault code_sold", "fault code_blocked", "operator sold", "operator expired",
                                 "operator sale_stopped", "gtin not found"])
def test_a_sold_blocked_or_unknown_code_is_refused_with_a_reason(kiosk, atol_emulator, how):
    code = new_code("09990000000017" if how == "gtin not found" else "04600000000013")
    kind, _, what = how.partition(" ")
    if kind == "fault":
        atol_emulator.fault(what, device="K1")
    elif kind == "operator":
        atol_emulator.app.marking_operator.set_status(code, what)
    [result] = validate(kiosk, [code])
    assert not result.accepted and not result.offline and not result.fn_accepted
    assert result.item_info_check_result["imcStatusInfo"] is True
    assert result.item_info_check_result["imcEstimatedStatusCorrect"] is False
    if what in ("code_blocked", "sale_stopped"):
        assert result.operator_status == "itemSaleStopped" and "приостановлен" in result.reason
    else:
        assert result.operator_status == "itemEstimatedStatusIncorrect" and "нельзя продать" in result.reason
    assert FiscalOperation.objects.filter(task_type="declineMarkingCode", state="done").count() == 1
    assert held_and_accepted(atol_emulator) == (None, set())
    # The register is free for the next code.
    assert validate(kiosk, [new_code()])[0].accepted


def test_an_unreachable_operator_gives_an_offline_result_the_fn_keeps(kiosk, atol_emulator):
    atol_emulator.fault("ism_unreachable", device="K1")
    code = new_code()
    [result] = validate(kiosk, [code])
    assert result.offline and not result.accepted and result.fn_accepted
    assert result.item_info_check_result == {**GOOD, "imcStatusInfo": False, "imcEstimatedStatusCorrect": False,
                                             "ecrStandAloneFlag": True}
    assert result.operator_status == "" and "не ответил" in result.reason
    # The FN accepted it on its own check: a receipt may carry it (whether to sell is the caller's setting).
    assert run(kiosk, sell(marked(result))).state == FiscalOperation.State.DONE


def test_a_malformed_code_fails_the_fns_own_check(kiosk, atol_emulator):
    [result] = validate(kiosk, ["0104600000000013"])
    assert not result.accepted and not result.fn_accepted and "ФН" in result.reason
    assert held_and_accepted(atol_emulator) == (None, set())


def test_the_wait_for_the_operator_is_bounded(serve_emulator, tmp_path, settings):
    slow = serve_emulator(AtolWebServerEmulator(state_path=str(tmp_path / "slow.json"), print_delay=0.02,
                                                marking_delay=30))
    kiosk = make_kiosk(slow.url)
    settings.MARKING_VALIDATION_WAIT = 0.3
    settings.MARKING_VALIDATION_POLL = 0.05
    [result] = validate(kiosk, [new_code()])
    assert not result.accepted and not result.fn_accepted and not result.offline
    assert "за 0.3 с" in result.reason
    assert held_and_accepted(slow) == (None, set())  # cancelled: the FN holds nothing
    assert FiscalOperation.objects.filter(task_type="getMarkingCodeValidationStatus").count() >= 2


@pytest.mark.parametrize("odd", [
    {"ready": "yes"},
    {"ready": True, "driverError": {"code": 0}, "onlineValidation": {"itemInfoCheckResult": {"imcCheckFlag": 1}}},
    {"ready": True, "driverError": {"code": 0}},
    {"ready": True, "driverError": {"code": 499, "description": "что-то новое"}},
])
def test_an_answer_it_cannot_read_is_never_taken_for_an_acceptance(kiosk, atol_emulator, monkeypatch, odd):
    monkeypatch.setattr(atol_emulator.app, "_validation_status", lambda held: odd)
    [result] = validate(kiosk, [new_code()])
    assert not result.accepted and not result.fn_accepted and result.reason
    assert held_and_accepted(atol_emulator) == (None, set())
    assert not FiscalOperation.objects.filter(task_type="acceptMarkingCode").exists()


def test_a_validation_left_by_a_killed_process_is_cleared_first(kiosk, atol_emulator):
    """The process sent begin and died: its task is resolved by the next session and the FN's code cancelled."""
    leftover = new_code()
    with register_session(kiosk) as session:
        op = session.create({"type": "beginMarkingCodeValidation",
                             "params": {"imc": imc_base64(leftover), "itemEstimatedStatus": "itemPieceSold"}})
        FiscalOperation.objects.filter(pk=op.pk).update(state=FiscalOperation.State.SENT)
        make_client(kiosk).submit(str(op.uuid), op.request)
    code = new_code()
    [result] = validate(kiosk, [code])
    assert result.accepted
    op.refresh_from_db()
    assert op.state == FiscalOperation.State.DONE
    assert held_and_accepted(atol_emulator) == (None, {imc_base64(code)})


def test_a_sell_of_validated_codes_keeps_imc_params_and_marks_them_sold(kiosk, atol_emulator):
    results = validate(kiosk, [new_code(), new_code()])
    run(kiosk, sell(marked(results[0]), marked(results[1])))
    receipt = [d for d in atol_emulator.journal() if d["type"] == "sell"][-1]
    for item, result in zip(receipt["items"], results, strict=True):
        assert base64.b64decode(item["imcParams"]["imc"]).decode() == result.code
        assert item["imcParams"]["itemInfoCheckResult"] == GOOD and item["industryInfo"] == INDUSTRY
        assert atol_emulator.app.marking_operator.code_status(result.code) == "sold"
    # Sold now: a new sale of the same code is refused.
    again = validate(kiosk, [results[0].code])[0]
    assert not again.accepted and again.operator_status == "itemEstimatedStatusIncorrect"


def test_a_sell_with_a_code_not_accepted_is_refused_with_the_drivers_error(kiosk, atol_emulator):
    refused = validate(kiosk, [new_code()])
    atol_emulator.fault("code_sold", device="K1")
    declined = validate(kiosk, [new_code()])[0]
    assert declined.item_info_check_result  # a refused code still has its flags
    with pytest.raises(FiscalFailed) as info:
        run(kiosk, sell(marked(refused[0]), marked(declined)))
    assert info.value.op.error_code == 420 and "КМ не проверен в ФН" in info.value.op.error_message
    assert [d for d in atol_emulator.journal() if d["type"] == "sell"] == []


def test_closing_the_shift_needs_the_codes_validated_again(kiosk, atol_emulator):
    run(kiosk, {"type": "openShift"})
    [result] = validate(kiosk, [new_code()])
    run(kiosk, {"type": "closeShift"})
    with pytest.raises(FiscalFailed) as info:
        run(kiosk, sell(marked(result)))
    assert info.value.op.error_code == 420
    [again] = validate(kiosk, [result.code])
    assert again.accepted and again.shift_number is None  # no shift open: the receipt opens the next one
    assert run(kiosk, sell(marked(again))).state == FiscalOperation.State.DONE


def test_a_return_is_validated_and_marks_the_code_returned(kiosk, atol_emulator):
    [sold] = validate(kiosk, [new_code()])
    run(kiosk, sell(marked(sold)))
    [back] = validate(kiosk, [sold.code], status="itemPieceReturn")
    assert back.accepted and back.fn_accepted and back.reason == ""
    run(kiosk, sell(marked(back, "itemPieceReturn"), kind="sellReturn"))
    assert atol_emulator.app.marking_operator.code_status(sold.code) == "valid"  # may be sold again
    assert validate(kiosk, [sold.code])[0].accepted


def test_a_return_the_operator_disagrees_with_is_recorded_and_never_blocked(kiosk, atol_emulator):
    """Right after a sale the operator may not know the code was sold: the return goes through all the same."""
    [result] = validate(kiosk, [new_code()], status="itemPieceReturn")  # never sold, as far as the operator knows
    assert not result.accepted and result.fn_accepted and result.reason
    assert run(kiosk, sell(marked(result, "itemPieceReturn"), kind="sellReturn")).state == FiscalOperation.State.DONE


def test_an_unreachable_register_is_the_callers_fiscal_failure(db):
    kiosk = make_kiosk("http://127.0.0.1:9")
    with pytest.raises(FiscalFailed):
        validate(kiosk, [new_code()])


def test_no_connection_to_the_register_is_the_callers_failure_not_a_refused_code(kiosk, atol_emulator, monkeypatch):
    def no_connection(*args):
        raise DriverError(2, "Нет связи")

    monkeypatch.setattr(atol_emulator.app, "_begin_validation", no_connection)
    with pytest.raises(FiscalFailed) as info:
        validate(kiosk, [new_code()])
    assert info.value.op.error_code == 2
