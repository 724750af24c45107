"""A real process killed with SIGKILL between the POST and the result: the resume finds the
document by the saved uuid and makes no second one."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from fiscal import shifts
from fiscal.models import FiscalDocument, FiscalOperation
from tests.factories import make_kiosk
from tests.processes import run_manage, start_manage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def slow_atol(serve_emulator, tmp_path):
    from fiscal.atol_emulator import AtolWebServerEmulator

    return serve_emulator(AtolWebServerEmulator(state_path=str(tmp_path / "atol.json"), print_delay=2.0))


def wait_for(predicate, timeout: float = 20.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def test_kill_between_post_and_result_then_resume(slow_atol):
    kiosk = make_kiosk(slow_atol.url)
    proc = start_manage("kkt", "K1", "open")

    def posted_open():
        op = FiscalOperation.objects.filter(task_type="openShift").first()
        if op is None:
            return None
        answer = httpx.get(f"{slow_atol.url}/api/v2/requests/{op.uuid}", params={"deviceID": "K1"})
        return op if answer.status_code == 200 else None

    op = wait_for(posted_open)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    op.refresh_from_db()
    assert op.state == FiscalOperation.State.SENT  # the process died waiting for the result

    status = shifts.status(kiosk)  # any next operation resumes the saved uuid first

    op.refresh_from_db()
    assert op.state == FiscalOperation.State.DONE
    assert status.state == "opened"
    assert FiscalDocument.objects.filter(doc_type="openShift").count() == 1
    assert [d["type"] for d in slow_atol.journal()] == ["openShift"]


def test_kkt_command_prints_json_and_fails_with_non_zero(atol_emulator):
    make_kiosk(atol_emulator.url)
    opened = run_manage("kkt", "K1", "open")
    assert opened.returncode == 0, opened.stderr
    payload = json.loads(opened.stdout)
    assert payload["ok"] and payload["shift"]["state"] == "open"

    xreport = json.loads(run_manage("kkt", "K1", "xreport").stdout)
    assert xreport["operation"]["fd"] is None

    closed = json.loads(run_manage("kkt", "K1", "close").stdout)
    assert closed["shift"]["state"] == "closed"
    assert closed["shift"]["closing_document"]["fd"] == payload_fd(opened) + 1

    again = run_manage("kkt", "K1", "xreport")
    assert again.returncode == 1
    assert json.loads(again.stdout)["error"]["code"] == "shift_closed"


def payload_fd(completed) -> int:
    shift_id = json.loads(completed.stdout)["shift"]["id"]
    return FiscalDocument.objects.get(shift_id=shift_id, doc_type="openShift").fd_number


def test_kkt_check_reports_registration(atol_emulator):
    make_kiosk(atol_emulator.url)
    result = run_manage("kkt", "K1", "check")
    payload = json.loads(result.stdout)
    assert result.returncode == 0, payload
    assert payload["ok"] and payload["registration"] and payload["server"]


def test_kkt_check_of_an_unreachable_register_fails_in_plain_russian():
    make_kiosk("http://127.0.0.1:9")
    result = run_manage("kkt", "K1", "check")
    payload = json.loads(result.stdout)
    assert result.returncode == 1
    assert "не отвечает" in " ".join(payload["problems"])
