"""The ATOL Web Server client against the emulator over real HTTP (no mocks)."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest

from core.emulator_http import Response, json_response
from fiscal.atol_client import AtolClient, TaskStatus
from fiscal.atol_errors import (
    AtolAuthError,
    AtolBadAnswer,
    AtolConnectionLost,
    AtolNoPaper,
    AtolNotFound,
    AtolShiftAlreadyOpen,
    AtolShiftClosed,
    AtolShiftExpired,
    AtolStillBlocked,
    AtolTimeout,
    AtolUnreachable,
    AtolValidationError,
)
from tests.fake_servers import BadAtolServer


def new_uuid() -> str:
    return str(uuid.uuid4())


def client_for(emulator, device: str = "K1", **options) -> AtolClient:
    defaults = {"timeout": 2.0, "poll_interval": 0.02, "max_wait": 5.0}
    return AtolClient(emulator.url, device_id=device, **{**defaults, **options})


def sell_task(amount: str = "189.00") -> dict:
    value = Decimal(amount)  # goes out as the exact JSON number literal
    return {
        "type": "sell",
        "taxationType": "osn",
        "machineNumber": "KIOSK-1",  # the emulated registers are registered for an automatic device
        "items": [{
            "type": "position", "name": "Капучино", "price": value, "quantity": 1, "amount": value,
            "tax": {"type": "vat22"}, "paymentMethod": "fullPayment", "paymentObject": "commodity",
        }],
        "payments": [{"type": "electronically", "sum": value}],
        "total": value,
    }


def documents(emulator, device: str = "K1") -> list[dict]:
    return [d for d in emulator.journal() if d["device"] == device]


def test_open_x_close_give_consecutive_fd_and_x_report_has_none(atol_emulator):
    client = client_for(atol_emulator)
    opened = client.execute(new_uuid(), [{"type": "openShift"}]).raise_for_error()
    client.execute(new_uuid(), [{"type": "reportX"}]).raise_for_error()
    closed = client.execute(new_uuid(), [{"type": "closeShift"}]).raise_for_error()

    fd_open = opened.first.fiscal_params.fiscal_document_number
    fd_close = closed.first.fiscal_params.fiscal_document_number
    assert fd_close == fd_open + 1
    journal = documents(atol_emulator)
    assert [d["type"] for d in journal] == ["openShift", "reportX", "closeShift"]
    assert "fiscalDocumentNumber" not in journal[1]
    assert [journal[0]["fiscalDocumentNumber"], journal[2]["fiscalDocumentNumber"]] == [fd_open, fd_close]


def test_second_open_is_83_and_close_of_closed_is_73(atol_emulator):
    client = client_for(atol_emulator)
    client.run(new_uuid(), {"type": "openShift"})
    with pytest.raises(AtolShiftAlreadyOpen):
        client.run(new_uuid(), {"type": "openShift"})
    client.run(new_uuid(), {"type": "closeShift"})
    with pytest.raises(AtolShiftClosed):
        client.run(new_uuid(), {"type": "closeShift"})


def test_sell_returns_fiscal_params_with_decimal_total(atol_emulator):
    client = client_for(atol_emulator)
    client.run(new_uuid(), {"type": "openShift"})
    outcome = client.execute(new_uuid(), [sell_task("390.75")]).raise_for_error()
    params = outcome.first.fiscal_params
    assert str(params.total) == "390.75"
    assert params.fiscal_receipt_number == 1
    assert params.fiscal_document_sign.isdigit()


def test_shift_expiry_via_the_register_clock(atol_emulator):
    client = client_for(atol_emulator)
    client.run(new_uuid(), {"type": "openShift"})
    atol_emulator.control.post("/_emulator/clock", json={"advance_seconds": 24 * 3600 + 60}).raise_for_status()
    state = client.run(new_uuid(), {"type": "getShiftStatus"})["shiftStatus"]["state"]
    assert state == "expired"
    with pytest.raises(AtolShiftExpired):
        client.run(new_uuid(), sell_task())
    client.run(new_uuid(), {"type": "closeShift"})
    assert client.run(new_uuid(), {"type": "getShiftStatus"})["shiftStatus"]["state"] == "closed"


def test_paper_out_before_the_write_makes_nothing(atol_emulator):
    client = client_for(atol_emulator)
    client.run(new_uuid(), {"type": "openShift"})
    atol_emulator.fault("paper_out", device="K1")
    outcome = client.execute(new_uuid(), [sell_task()])
    assert isinstance(outcome.error(), AtolNoPaper)
    assert [d["type"] for d in documents(atol_emulator)] == ["openShift"]


def test_paper_out_after_the_write_then_continue_print(atol_emulator):
    client = client_for(atol_emulator)
    client.run(new_uuid(), {"type": "openShift"})
    atol_emulator.fault("paper_out_after_write", device="K1")
    outcome = client.execute(new_uuid(), [sell_task()]).raise_for_error()
    assert outcome.first.not_printed
    assert [d["type"] for d in documents(atol_emulator)] == ["openShift", "sell"]
    with pytest.raises(AtolNoPaper):
        client.run(new_uuid(), {"type": "continuePrint"})
    atol_emulator.control.post("/_emulator/paper", json={"present": True}).raise_for_status()
    client.run(new_uuid(), {"type": "continuePrint"})
    assert [d["type"] for d in documents(atol_emulator)] == ["openShift", "sell"]


@pytest.mark.parametrize(("fault", "made"), [("blocked_then_ready", True), ("blocked_then_error", False)])
def test_blocked_is_polled_until_it_resolves(atol_emulator, fault, made):
    client = client_for(atol_emulator)
    client.run(new_uuid(), {"type": "openShift"})
    atol_emulator.fault(fault, device="K1", blocked_seconds=0.3)
    task_uuid = new_uuid()
    client.submit(task_uuid, [sell_task()])
    seen_blocked = False
    for _ in range(100):
        state = client.get(task_uuid)
        if state.first.status == TaskStatus.BLOCKED:
            seen_blocked = True
            break
        if state.first.status in (TaskStatus.READY, TaskStatus.ERROR):
            break
        threading.Event().wait(0.01)
    assert seen_blocked
    outcome = client.wait(task_uuid)
    assert outcome.ok is made
    assert ("sell" in [d["type"] for d in documents(atol_emulator)]) is made


def test_blocked_longer_than_the_bound_is_unknown_not_failed(atol_emulator):
    client = client_for(atol_emulator, max_wait=0.3)
    client.run(new_uuid(), {"type": "openShift"})
    atol_emulator.fault("blocked_then_ready", device="K1", blocked_seconds=3)
    task_uuid = new_uuid()
    with pytest.raises(AtolStillBlocked):
        client.execute(task_uuid, [sell_task()])
    # Resuming the same uuid later finds the document: it was made exactly once.
    outcome = client_for(atol_emulator).execute(task_uuid, [sell_task()], resume=True)
    assert outcome.ok
    assert [d["type"] for d in documents(atol_emulator)].count("sell") == 1


def test_lost_post_answer_is_reposted_answered_409_and_polled(atol_emulator):
    client = client_for(atol_emulator)
    atol_emulator.fault("lost_post_answer", device="K1")
    task_uuid = new_uuid()
    with pytest.raises(AtolConnectionLost):
        client.submit(task_uuid, [{"type": "openShift"}])
    again = client.submit(task_uuid, [{"type": "openShift"}])
    assert again.already_queued
    assert client.wait(task_uuid).ok
    assert [d["type"] for d in documents(atol_emulator)] == ["openShift"]


def test_execute_survives_a_lost_post_answer_without_a_second_document(atol_emulator):
    client = client_for(atol_emulator)
    atol_emulator.fault("lost_post_answer", device="K1")
    outcome = client.execute(new_uuid(), [{"type": "openShift"}])
    assert outcome.ok
    assert [d["type"] for d in documents(atol_emulator)] == ["openShift"]


def test_lost_get_answer_is_polled_again(atol_emulator):
    client = client_for(atol_emulator)
    atol_emulator.fault("lost_get_answer", device="K1")
    assert client.execute(new_uuid(), [{"type": "openShift"}]).ok
    assert len(documents(atol_emulator)) == 1


def test_resume_of_a_task_never_posted_posts_the_same_uuid(atol_emulator):
    """A worker died after saving the uuid and before the POST: the resume sends it once."""
    client = client_for(atol_emulator)
    task_uuid = new_uuid()
    outcome = client.execute(task_uuid, [{"type": "openShift"}], resume=True)
    assert outcome.ok and outcome.uuid == task_uuid
    assert client.submit(task_uuid, [{"type": "openShift"}]).already_queued


def test_two_registers_work_in_parallel_with_their_own_counters(atol_emulator):
    errors: list[BaseException] = []

    def shift_on(device: str) -> None:
        try:
            client = client_for(atol_emulator, device=device)
            client.run(new_uuid(), {"type": "openShift"})
            client.run(new_uuid(), sell_task())
            client.run(new_uuid(), {"type": "closeShift"})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=shift_on, args=(d,)) for d in ("K1", "K2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    k1, k2 = documents(atol_emulator, "K1"), documents(atol_emulator, "K2")
    assert [d["type"] for d in k1] == [d["type"] for d in k2] == ["openShift", "sell", "closeShift"]
    assert k1[0]["fnNumber"] != k2[0]["fnNumber"]
    assert [d["fiscalDocumentNumber"] for d in k1] == [d["fiscalDocumentNumber"] for d in k2]


def test_driver_validation_error_is_typed(atol_emulator):
    client = client_for(atol_emulator)
    client.run(new_uuid(), {"type": "openShift"})
    task = sell_task()
    task["items"][0]["name"] = "Я" * 129
    with pytest.raises(AtolValidationError) as info:
        client.run(new_uuid(), task)
    assert info.value.code == 501


def test_flat_error_shape_is_read_too(serve_emulator, tmp_path):
    from fiscal.atol_emulator import AtolWebServerEmulator

    flat = serve_emulator(AtolWebServerEmulator(state_path=str(tmp_path / "s.json"), print_delay=0.01,
                                                flat_errors=True))
    client = client_for(flat)
    with pytest.raises(AtolShiftClosed) as info:
        client.run(new_uuid(), {"type": "closeShift"})
    assert info.value.code == 73


def test_basic_auth(serve_emulator, tmp_path):
    from fiscal.atol_emulator import AtolWebServerEmulator

    secured = serve_emulator(AtolWebServerEmulator(state_path=str(tmp_path / "s.json"), print_delay=0.01,
                                                   users={"kiosk": "secret"}))
    with pytest.raises(AtolAuthError):
        client_for(secured).run(new_uuid(), {"type": "getShiftStatus"})
    good = client_for(secured, username="kiosk", password="secret")
    assert good.run(new_uuid(), {"type": "getShiftStatus"})["shiftStatus"]["state"] == "closed"
    assert client_for(secured).server_info()  # serverInfo needs no auth


def test_unreachable_server_is_known_not_sent():
    client = AtolClient("http://127.0.0.1:9", timeout=0.5, max_wait=0.2, poll_interval=0.01)
    with pytest.raises(AtolUnreachable):
        client.execute(new_uuid(), [{"type": "openShift"}])


def test_unknown_uuid_without_repost_is_not_found(atol_emulator):
    with pytest.raises(AtolNotFound):
        client_for(atol_emulator).wait(new_uuid(), max_wait=0.1)


# --- a server that answers badly ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (Response(200, b"{not json", {"Content-Type": "application/json"}), AtolBadAnswer),
        (json_response({"results": [{"status": "exploded", "result": None}]}), AtolBadAnswer),
        (json_response({"error": "internal"}, status=500), AtolBadAnswer),
        (json_response({"results": []}), AtolBadAnswer),
        (Response(drop=True, hang_seconds=2), AtolTimeout),
    ],
    ids=["malformed-json", "unknown-status", "http-500", "empty-results", "timeout"],
)
def test_bad_answers_are_typed_unknown_outcomes(serve_emulator, answer, error):
    server = serve_emulator(BadAtolServer(answer))
    client = AtolClient(server.url, timeout=0.3, poll_interval=0.02, max_wait=0.5)
    with pytest.raises(error) as info:
        client.execute(new_uuid(), [{"type": "openShift"}])
    assert info.value.uuid  # the uuid to resolve later travels with the error
