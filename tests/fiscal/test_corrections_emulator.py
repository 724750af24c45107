"""The ATOL emulator checks a correction receipt's FFD 1.2 basis (tags 1173, 1178, 1179) like the driver
does, and its journal keeps the basis as sent, over real HTTP."""

from __future__ import annotations

import pytest

from tests.fiscal.conftest import error_code, position


def correction(**changes) -> dict:
    task = {"type": "sellCorrection", "taxationType": "osn", "correctionType": "self",
            "correctionBaseDate": "2026.03.06", "items": [position()],
            "payments": [{"type": "electronically", "sum": 189.0}], "total": 189.0, "machineNumber": "KIOSK-1"}
    return {key: value for key, value in {**task, **changes}.items() if value is not None}


def test_a_self_correction_is_journaled_with_its_basis(atol, shared):
    params = atol.result(correction())["fiscalParams"]
    entry = shared.journal()[-1]
    assert entry["type"] == "sellCorrection" and entry["fiscalDocumentNumber"] == params["fiscalDocumentNumber"]
    assert (entry["correctionType"], entry["correctionBaseDate"]) == ("self", "2026.03.06")
    assert "correctionBaseNumber" not in entry and entry["items"] == [position()]


def test_an_instruction_correction_keeps_its_number(atol, shared):
    atol.result(correction(type="sellReturnCorrection", correctionType="instruction",
                           correctionBaseNumber="12-34/567"))
    entry = shared.journal()[-1]
    assert entry["type"] == "sellReturnCorrection" and entry["correctionBaseNumber"] == "12-34/567"


@pytest.mark.parametrize(("changes", "field"), [
    ({"correctionType": None}, "correctionType"),
    ({"correctionType": "auto"}, "correctionType"),
    ({"correctionBaseDate": None}, "correctionBaseDate"),
    ({"correctionBaseDate": "06.03.2026"}, "correctionBaseDate"),
    ({"correctionBaseDate": "2026.02.31"}, "correctionBaseDate"),
    ({"correctionType": "instruction"}, "correctionBaseNumber"),
    ({"correctionType": "instruction", "correctionBaseNumber": "  "}, "correctionBaseNumber"),
    ({"items": None}, "items"),
    ({"payments": None}, "payments"),
    ({"total": 200.0}, "total"),
])
def test_a_correction_without_a_valid_basis_or_money_is_refused_501(atol, shared, changes, field):
    entry = atol.one(correction(**changes))
    assert entry["status"] == "error" and error_code(entry) == 501, entry
    assert field in entry["error"]["description"]
    assert [e for e in shared.journal() if e["type"] == "sellCorrection"] == []


def test_a_correction_of_an_automatic_register_without_its_machine_number_is_refused(atol, shared):
    entry = atol.one(correction(machineNumber=None))
    assert entry["status"] == "error" and error_code(entry) == 501 and "machineNumber" in entry["error"]["description"]
    assert [e for e in shared.journal() if e["type"] == "sellCorrection"] == []
