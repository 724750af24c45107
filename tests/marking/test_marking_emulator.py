"""The check service's emulator (marking/emulator.py): its control API, its faults as listed and documented, and
its place among the emulators (one code table shared with the ATOL emulator)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from core.gs1 import GS, make_code, parse_code
from fiscal.atol_emulator import AtolWebServerEmulator
from marking.emulator import DEMO_TOKEN, MarkingCheckEmulator
from nekassir.emulators import EmulatorDelays, build_emulators

ROOT = Path(__file__).resolve().parents[2]
GTIN = "04600000000013"


def test_mint_gives_fresh_codes_in_the_stated_state(marking_emulator):
    answer = marking_emulator.control.post("/_emulator/codes", json={"gtin": GTIN, "status": "expired", "count": 3})
    assert answer.status_code == 200
    codes = answer.json()["codes"]
    assert len(set(codes)) == 3 and all(parse_code(raw).gtin == GTIN and GS in raw for raw in codes)
    for raw in codes:
        status = marking_emulator.control.get("/_emulator/codes/status", params={"code": raw}).json()
        assert status == {"code": raw, "status": "expired"}
    assert marking_emulator.control.get("/_emulator/codes").json() == {raw: "expired" for raw in codes}


def test_a_code_state_is_set_by_the_control_api(marking_emulator):
    raw = make_code(GTIN, "abc123", "ab" + GS + "cd")
    answer = marking_emulator.control.post("/_emulator/codes/status", json={"code": raw, "status": "sold"})
    assert answer.json() == {"ok": True, "code": raw, "status": "sold"}
    assert marking_emulator.app.operator.code_status(raw) == "sold"


def test_bad_control_requests_are_400(marking_emulator):
    control = marking_emulator.control
    assert control.post("/_emulator/codes", json={"gtin": GTIN, "status": "lost"}).status_code == 400
    assert control.post("/_emulator/codes", json={"gtin": "12", "status": "valid"}).status_code == 400
    assert control.post("/_emulator/codes", json={"status": "valid"}).status_code == 400
    assert control.post("/_emulator/codes/status", json={"code": "x", "status": "lost"}).status_code == 400


def test_the_protocol_refuses_a_bad_key_a_bad_body_and_other_paths(marking_emulator):
    url = marking_emulator.url + "/api/v4/true-api/codes/check"
    key = {"X-API-KEY": DEMO_TOKEN}
    assert httpx.post(url, json={"codes": ["x"]}).status_code == 401
    assert httpx.post(url, json={"codes": []}, headers=key).status_code == 400
    assert httpx.post(url, content=b"{", headers=key).status_code == 400
    assert httpx.post(marking_emulator.url + "/api/v3/other", json={}, headers=key).status_code == 404
    answer = httpx.post(url, json={"codes": ["0104600000000013" + "21abc"]}, headers=key).json()
    assert answer["code"] == 0 and answer["description"] == "ok"
    assert set(answer) == {"code", "description", "codes", "reqId", "reqTimestamp"}
    assert {"cis", "found", "valid", "verified", "realizable", "utilised", "isBlocked", "sold", "expireDate",
            "errorCode", "gtin", "groupIds"} <= set(answer["codes"][0])


def test_the_faults_are_listed_and_named_in_the_readme(marking_emulator):
    known = marking_emulator.control.get("/_emulator/faults/known").json()
    assert set(known) == {"unavailable", "slow", "lost_answer"} == set(marking_emulator.app.faults_known)
    assert all(len(text) > 10 for text in known.values())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Emulators"):]
    section = section[section.index("Marking check service"):]
    assert all(f"`{name}`" in section.split("\n- **")[0] for name in known)


def test_reset_clears_the_journal_never_the_code_table(marking_emulator):
    raw = marking_emulator.control.post("/_emulator/codes", json={"gtin": GTIN, "status": "sold"}).json()["codes"][0]
    httpx.post(marking_emulator.url + "/api/v4/true-api/codes/check", json={"codes": [raw]},
               headers={"X-API-KEY": DEMO_TOKEN}).raise_for_status()
    assert marking_emulator.journal()
    marking_emulator.reset()
    assert marking_emulator.journal() == []
    assert marking_emulator.app.operator.code_status(raw) == "sold"


def test_manage_py_emulators_shares_one_code_table_between_atol_and_the_check_service(tmp_path):
    apps = build_emulators(tmp_path, EmulatorDelays(0, 0, 0))
    marking, atol = apps["marking"], apps["atol"]
    assert isinstance(marking, MarkingCheckEmulator) and isinstance(atol, AtolWebServerEmulator)
    assert atol.marking_operator is marking.operator
    raw = marking.operator.mint(GTIN, "valid", 1)[0]
    assert (tmp_path / "marking.json").exists()  # its state in the data dir, like the others
    assert json.loads((tmp_path / "marking.json").read_text(encoding="utf-8"))["codes"] == {raw: "valid"}


def test_make_run_points_the_check_service_at_the_emulator_with_its_key():
    run = (ROOT / "scripts" / "run.py").read_text(encoding="utf-8")
    assert f'"{DEMO_TOKEN}"' in run
    assert 'os.environ.setdefault("MARKING_CHECK_URL"' in run


def test_the_test_fixtures_share_one_code_table_between_atol_and_the_check_service(atol_emulator, marking_emulator):
    assert atol_emulator.app.marking_operator is marking_emulator.app.operator
