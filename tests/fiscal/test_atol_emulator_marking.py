"""Marked goods in the ATOL emulator, over real HTTP (issue 13): the FN validates one code at a time, keeps the
accepted codes for this shift, refuses a receipt position whose code no validation accepted (driver error 420),
keeps imcParams and industryInfo in its journal and tells the marking operator what was sold or returned."""

from __future__ import annotations

import base64
import time
import uuid as uuid_lib

import pytest

from core.gs1 import GS, imc_base64, make_code
from fiscal.atol_emulator import InMemoryMarkingOperator
from tests.fiscal.conftest import error_code, position, sell

FIVE_FLAGS = {"imcCheckFlag", "imcCheckResult", "imcStatusInfo", "imcEstimatedStatusCorrect", "ecrStandAloneFlag"}
INDUSTRY = [{"fois": "030", "date": "21.11.2023", "number": "1944",
             "industryAttribute": "UUID=0d2c6d5e-4f6b-4a55-9d55-1b1c2f3e4d5a&Time=1765000000000"}]


def new_code(gtin: str = "04600000000013") -> str:
    return make_code(gtin, uuid_lib.uuid4().hex[:13], "ab" + GS + "cd")


def params(code: str, status: str = "itemPieceSold") -> dict:
    return {"imcType": "auto", "imc": imc_base64(code), "itemEstimatedStatus": status, "imcModeProcessing": 0,
            "itemUnits": "piece", "itemQuantity": 1}


def marked(code: str, status: str = "itemPieceSold", checks: dict | None = None, price: float = 80.0) -> dict:
    item = position("Вода питьевая 0,5 л", price)
    item["paymentObject"] = "commodityWithMarking"
    item["imcParams"] = {"imc": imc_base64(code), "imcType": "auto", "itemEstimatedStatus": status,
                         "imcModeProcessing": 0,
                         "itemInfoCheckResult": checks or dict.fromkeys(FIVE_FLAGS - {"ecrStandAloneFlag"}, True)
                         | {"ecrStandAloneFlag": False}}
    item["industryInfo"] = INDUSTRY
    return item


def wait_ready(atol) -> dict:
    deadline = time.monotonic() + 3
    while True:
        status = atol.result({"type": "getMarkingCodeValidationStatus"})
        if status.get("ready"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.02)


def validate(atol, code: str, status: str = "itemPieceSold") -> tuple[dict, dict]:
    """begin → status until ready → accept; the ready status and the acceptance."""
    atol.result({"type": "beginMarkingCodeValidation", "params": params(code, status)})
    ready = wait_ready(atol)
    return ready, atol.result({"type": "acceptMarkingCode"})


def accepted_codes(shared) -> dict:
    return shared.emulator.control.get("/_emulator/marking").json()[shared.device]["accepted"]


def operator(shared) -> InMemoryMarkingOperator:
    return shared.emulator.app.marking_operator


def test_a_valid_code_is_accepted_with_the_five_flags(atol, shared):
    code = new_code()
    begun = atol.result({"type": "beginMarkingCodeValidation", "params": params(code)})
    assert begun["offlineValidation"] == {"fmCheck": True, "fmCheckResult": True, "fmCheckErrorReason": "checked"}
    ready = wait_ready(atol)
    assert ready["driverError"]["code"] == 0 and ready["sentImcRequest"] is True
    online = ready["onlineValidation"]
    assert online["markOperatorItemStatus"] == "itemEstimatedStatusCorrect"
    assert online["itemInfoCheckResult"] == dict.fromkeys(FIVE_FLAGS - {"ecrStandAloneFlag"}, True) | {
        "ecrStandAloneFlag": False}
    accepted = atol.result({"type": "acceptMarkingCode"})
    assert accepted["itemInfoCheckResult"] == online["itemInfoCheckResult"]
    assert set(accepted_codes(shared)) == {imc_base64(code)}


def test_the_fn_holds_one_code_at_a_time(atol, shared):
    first, second = new_code(), new_code()
    atol.result({"type": "beginMarkingCodeValidation", "params": params(first)})
    refused = atol.one({"type": "beginMarkingCodeValidation", "params": params(second)})
    assert refused["status"] == "error"
    assert refused["error"] == {"code": 401, "description": "Процедура проверки КМ уже запущена"}
    atol.result({"type": "cancelMarkingCodeValidation"})
    atol.result({"type": "cancelMarkingCodeValidation"})  # harmless when nothing is held
    _, accepted = validate(atol, second)
    assert accepted["itemInfoCheckResult"]["imcEstimatedStatusCorrect"] is True
    assert set(accepted_codes(shared)) == {imc_base64(second)}  # the cancelled one was never accepted


def test_accept_or_status_without_a_code_under_validation(atol):
    assert error_code(atol.one({"type": "acceptMarkingCode"})) == 410
    status = atol.result({"type": "getMarkingCodeValidationStatus"})
    assert "ready" not in status and status["driverError"]["code"] == 410


@pytest.mark.parametrize(
    "how, item_status",
    [
        ("fault code_sold", "itemEstimatedStatusIncorrect"),
        ("fault code_blocked", "itemSaleStopped"),
        ("operator sold", "itemEstimatedStatusIncorrect"),
        ("operator blocked", "itemSaleStopped"),
        ("operator expired", "itemEstimatedStatusIncorrect"),
        ("gtin not found", "itemEstimatedStatusIncorrect"),
    ],
)
def test_the_operator_refuses_sold_blocked_expired_unknown_codes(atol, shared, how, item_status):
    code = new_code("09990000000017" if how == "gtin not found" else "04600000000013")
    kind, _, what = how.partition(" ")
    if kind == "fault":
        shared.fault(what)
    elif kind == "operator":
        operator(shared).set_status(code, what)
    atol.result({"type": "beginMarkingCodeValidation", "params": params(code)})
    online = wait_ready(atol)["onlineValidation"]
    assert online["markOperatorItemStatus"] == item_status
    flags = online["itemInfoCheckResult"]
    assert flags["imcStatusInfo"] is True and flags["imcEstimatedStatusCorrect"] is False
    atol.result({"type": "declineMarkingCode"})
    assert accepted_codes(shared) == {}
    # A fault is spent on one validation: the next code is fine.
    if kind == "fault":
        _, accepted = validate(atol, new_code())
        assert accepted["itemInfoCheckResult"]["imcEstimatedStatusCorrect"] is True


def test_ism_unreachable_answers_offline(atol, shared):
    shared.fault("ism_unreachable")
    code = new_code()
    atol.result({"type": "beginMarkingCodeValidation", "params": params(code)})
    ready = wait_ready(atol)
    assert ready["driverError"]["code"] == 411 and "onlineValidation" not in ready
    accepted = atol.result({"type": "acceptMarkingCode"})
    assert accepted["itemInfoCheckResult"] == {"imcCheckFlag": True, "imcCheckResult": True, "imcStatusInfo": False,
                                               "imcEstimatedStatusCorrect": False, "ecrStandAloneFlag": True}
    # The FN accepted it on its own check: it may go into a receipt (the caller decides).
    assert atol.one(sell(marked(code, checks=accepted["itemInfoCheckResult"])))["status"] == "ready"


def test_a_malformed_code_fails_the_fns_own_check(atol):
    code = "0104600000000013"  # no serial
    begun = atol.result({"type": "beginMarkingCodeValidation", "params": params(code)})
    assert begun["offlineValidation"]["fmCheckResult"] is False
    flags = wait_ready(atol)["onlineValidation"]["itemInfoCheckResult"]
    assert flags["imcCheckResult"] is False


def test_a_sell_of_an_accepted_code_keeps_its_imc_params_and_marks_it_sold(atol, shared):
    codes = [new_code(), new_code()]
    for code in codes:
        validate(atol, code)
    entry = atol.one(sell(marked(codes[0]), marked(codes[1])))
    assert entry["status"] == "ready", entry
    receipt = [d for d in shared.journal() if d["type"] == "sell"][-1]
    assert len(receipt["items"]) == 2
    for item, code in zip(receipt["items"], codes, strict=True):
        assert item["quantity"] == 1
        assert base64.b64decode(item["imcParams"]["imc"]).decode() == code and GS in code
        assert item["imcParams"]["itemInfoCheckResult"]["imcCheckFlag"] is True
        assert item["industryInfo"] == INDUSTRY
        assert operator(shared).code_status(code) == "sold"
    # The receipt used the validations up: the same code cannot go into another receipt without a new one.
    assert accepted_codes(shared) == {}
    assert error_code(atol.one(sell(marked(codes[0])))) == 420
    atol.result({"type": "beginMarkingCodeValidation", "params": params(codes[0])})
    assert wait_ready(atol)["onlineValidation"]["markOperatorItemStatus"] == "itemEstimatedStatusIncorrect"


def test_a_code_no_validation_accepted_is_refused_with_the_drivers_error(atol, shared):
    code = new_code()
    refused = atol.one(sell(position(), marked(code)))
    assert refused["status"] == "error"
    assert refused["error"]["code"] == 420 and refused["error"]["description"].startswith("КМ не проверен в ФН")
    assert [d for d in shared.journal() if d["type"] == "sell"] == []
    assert operator(shared).code_status(code) == "valid"
    # A declined code is not accepted either.
    atol.result({"type": "beginMarkingCodeValidation", "params": params(code)})
    wait_ready(atol)
    atol.result({"type": "declineMarkingCode"})
    assert error_code(atol.one(sell(marked(code)))) == 420


def test_a_code_accepted_for_a_sale_does_not_serve_a_return(atol):
    code = new_code()
    validate(atol, code)
    assert error_code(atol.one(sell(marked(code, "itemPieceReturn"), kind="sellReturn"))) == 420


def test_closing_the_shift_forgets_accepted_codes(atol, shared):
    atol.result({"type": "openShift"})
    code = new_code()
    validate(atol, code)
    atol.result({"type": "closeShift"})
    assert accepted_codes(shared) == {}
    assert error_code(atol.one(sell(marked(code)))) == 420
    validate(atol, code)  # validated again, in the new shift the receipt opens
    entry = atol.one(sell(marked(code)))
    assert entry["status"] == "ready" and entry["result"]["warnings"]["shiftAutoOpened"] is True


def test_a_return_marks_the_code_returned(atol, shared):
    code = new_code()
    validate(atol, code)
    assert atol.one(sell(marked(code)))["status"] == "ready"
    ready, _ = validate(atol, code, "itemPieceReturn")  # the operator knows it sold: a return is correct
    assert ready["onlineValidation"]["markOperatorItemStatus"] == "itemEstimatedStatusCorrect"
    entry = atol.one(sell(marked(code, "itemPieceReturn"), kind="sellReturn"))
    assert entry["status"] == "ready", entry
    returned = [d for d in shared.journal() if d["type"] == "sellReturn"][-1]
    assert returned["items"][0]["imcParams"]["itemEstimatedStatus"] == "itemPieceReturn"
    assert operator(shared).code_status(code) == "valid"  # may be sold again


@pytest.mark.parametrize(
    "change, field",
    [
        ({"imcParams": {"imc": "not base64!", "imcType": "auto", "itemEstimatedStatus": "itemPieceSold"}}, "imc"),
        ({"imcParams": {"imc": imc_base64("x"), "imcType": "qr", "itemEstimatedStatus": "itemPieceSold"}}, "imcType"),
        ({"imcParams": {"imc": imc_base64("x"), "itemEstimatedStatus": "sold"}}, "itemEstimatedStatus"),
        ({"imcParams": {"imc": imc_base64("x"), "itemEstimatedStatus": "itemPieceSold", "imcModeProcessing": "0"}},
         "imcModeProcessing"),
        ({"imcParams": {"imc": imc_base64("x"), "itemEstimatedStatus": "itemPieceSold",
                        "itemInfoCheckResult": {"imcCheckFlag": "yes"}}}, "itemInfoCheckResult"),
        ({"imcParams": {"imc": imc_base64("x"), "itemEstimatedStatus": "itemPieceSold"}, "quantity": 2,
          "amount": 160.0}, "quantity"),
        ({"industryInfo": {"fois": "030"}}, "industryInfo"),
        ({"industryInfo": [{"fois": "030", "date": "21.11.2023", "number": "1944"}]}, "industryAttribute"),
        ({"industryInfo": [{**INDUSTRY[0], "date": "2023-11-21"}]}, "date"),
    ],
)
def test_a_positions_marking_fields_are_checked_like_the_driver_does(atol, change, field):
    item = {**position("Вода", 80.0), **change}
    entry = atol.one(sell(item))
    assert entry["status"] == "error" and error_code(entry) == 501, entry
    assert field in entry["error"]["description"]


def test_the_marking_faults_are_known(shared):
    known = shared.emulator.control.get("/_emulator/faults/known").json()
    assert {"ism_unreachable", "code_sold", "code_blocked"} <= set(known)
