"""KKM Server client against the KKM Server emulator over real HTTP (no mocks)."""

from __future__ import annotations

import socket
import time
from decimal import Decimal

import httpx
import pytest

from payments.acquiring import (
    CardResult,
    InvalidRequest,
    Outcome,
    Reason,
    kopecks_to_rubles,
    rubles_to_kopecks,
)
from payments.kkm_client import KkmServerClient
from payments.kkm_emulator import KkmServerEmulator

JOURNAL_KEYS = {"operation", "device", "amount", "rrn", "state", "batch", "id", "time"}


def make_client(emulator, **overrides) -> KkmServerClient:
    options = {"timeout": 0.5, "guest_timeout": 0.5, "poll_interval": 0.02, "poll_for": 2.0}
    return KkmServerClient(emulator.url, **(options | overrides))


@pytest.fixture
def kkm(kkm_emulator) -> KkmServerClient:
    return make_client(kkm_emulator)


def approved_sale(client: KkmServerClient, op_id: str, amount: int = 18900) -> CardResult:
    result = client.sale(op_id, amount, order_number="A-042")
    assert result.outcome is Outcome.APPROVED, result
    return result


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def advance_clock(emulator, seconds: float) -> None:
    emulator.control.post("/_emulator/clock", json={"advance_seconds": seconds}).raise_for_status()


# --- sale --------------------------------------------------------------------------------------------------


def test_approved_sale_reads_every_field(kkm, kkm_emulator):
    result = approved_sale(kkm, "sale-1")

    assert result.reason is Reason.OK
    assert result.amount_kopecks == 18900
    assert result.rrn and result.auth_code and result.reference
    assert "******" in result.masked_pan
    assert "ОДОБРЕНО" in result.slip
    assert '"Amount": 189.00' in result.raw_request  # rubles with two decimals, never a float
    assert '"IdCommand": "sale-1"' in result.raw_request
    [entry] = kkm_emulator.journal()
    assert set(entry) == JOURNAL_KEYS
    assert entry | {"time": None} == {
        "operation": "sale", "device": "1", "amount": "189.00", "rrn": result.rrn, "state": "approved",
        "batch": 1, "id": "sale-1", "time": None,
    }


def test_declined_by_bank(kkm, kkm_emulator):
    kkm_emulator.fault("decline")

    result = kkm.sale("sale-1", 18900, "A-1")

    assert result.outcome is Outcome.DECLINED and result.reason is Reason.DECLINED
    assert result.bank_code == "05"
    assert "Отказ" in result.message
    assert kkm_emulator.journal()[0]["state"] == "declined"


def test_insufficient_funds(kkm, kkm_emulator):
    kkm_emulator.fault("insufficient_funds")

    result = kkm.sale("sale-1", 18900, "A-1")

    assert result.outcome is Outcome.DECLINED
    assert result.bank_code == "51"
    assert "Недостаточно средств" in result.message


def test_terminal_without_bank_connection_is_a_known_failure(kkm, kkm_emulator):
    kkm_emulator.fault("no_connection")

    result = kkm.sale("sale-1", 18900, "A-1")

    assert result.outcome is Outcome.DECLINED
    assert "Нет связи" in result.message
    assert kkm_emulator.journal()[0]["state"] == "failed"


def test_terminal_memory_full(kkm, kkm_emulator):
    kkm_emulator.fault("memory_full")

    result = kkm.sale("sale-1", 18900, "A-1")

    assert result.outcome is Outcome.DECLINED and result.bank_code == "4130"


def test_kkm_server_not_reachable_is_a_known_non_charge():
    client = KkmServerClient(f"http://127.0.0.1:{closed_port()}", timeout=0.5, guest_timeout=0.5, poll_for=0.2)

    result = client.sale("sale-1", 18900, "A-1")

    assert result.outcome is Outcome.DECLINED and result.reason is Reason.NOT_REACHABLE
    assert result.raw_response == ""


# --- unclear answers resolved through GetRezult ---------------------------------------------------------------


@pytest.mark.parametrize("approved", [True, False])
def test_timeout_then_resolved_by_get_rezult(kkm, kkm_emulator, approved):
    kkm_emulator.fault("timeout", approved=approved)

    result = kkm.sale("sale-1", 18900, "A-1")

    assert result.outcome is (Outcome.APPROVED if approved else Outcome.DECLINED)
    assert '"Command": "GetRezult"' not in result.raw_request  # the request kept is the payment itself
    assert '"Rezult"' in result.raw_response
    assert [e["operation"] for e in kkm_emulator.journal()] == ["sale"]  # performed once, never re-sent


@pytest.mark.parametrize("approved", [True, False])
def test_lost_answer_then_resolved_by_get_rezult(kkm, kkm_emulator, approved):
    kkm_emulator.fault("lost_response", approved=approved)

    result = kkm.sale("sale-1", 18900, "A-1")

    assert result.outcome is (Outcome.APPROVED if approved else Outcome.DECLINED)
    if approved:
        assert result.reference and result.rrn
    assert len(kkm_emulator.journal()) == 1


def test_guest_still_at_pin_pad_is_polled_until_final(kkm_emulator):
    kkm_emulator.control.post("/_emulator/config", json={"card_delay": 0.4}).raise_for_status()
    client = make_client(kkm_emulator, guest_timeout=0.1)

    result = client.sale("sale-1", 18900, "A-1")

    assert result.outcome is Outcome.APPROVED


def test_still_unknown_when_get_rezult_never_answers(kkm_emulator):
    kkm_emulator.fault("lost_response", count=1000)
    client = make_client(kkm_emulator, poll_for=0.3)

    result = client.sale("sale-1", 18900, "A-1")

    assert result.outcome is Outcome.UNKNOWN and result.reason is Reason.LOST_ANSWER


def test_still_running_after_polling_is_unknown(kkm_emulator):
    kkm_emulator.control.post("/_emulator/config", json={"card_delay": 1.0}).raise_for_status()
    client = make_client(kkm_emulator, guest_timeout=0.1, poll_for=0.3)

    result = client.sale("sale-1", 18900, "A-1")

    assert result.outcome is Outcome.UNKNOWN and result.reason is Reason.IN_PROGRESS


def test_status_query(kkm, kkm_emulator):
    sale = approved_sale(kkm, "sale-1")

    assert kkm.status("sale-1").outcome is Outcome.APPROVED
    assert kkm.status("sale-1").reference == sale.reference
    never_sent = kkm.status("never-sent")
    # "no record" only: whether that proves "never received" depends on whether we sent it (the workflow knows)
    assert never_sent.outcome is Outcome.UNKNOWN and never_sent.reason is Reason.NOT_FOUND


# --- KKM Server restarts, a busy terminal (issue 11 items 2 and 9) ------------------------------------------


def restart(emulator, keep_results: bool) -> dict:
    answer = emulator.control.post("/_emulator/restart", json={"keep_results": keep_results})
    answer.raise_for_status()
    return answer.json()


def test_a_restart_that_loses_the_results_makes_get_rezult_unknown(kkm, kkm_emulator):
    approved_sale(kkm, "sale-1")
    restart(kkm_emulator, keep_results=True)
    assert kkm.status("sale-1").outcome is Outcome.APPROVED  # results kept

    assert restart(kkm_emulator, keep_results=False) == {"restarted": True, "kept_results": 0}
    lost = kkm.status("sale-1")
    assert lost.outcome is Outcome.UNKNOWN and lost.reason is Reason.NOT_FOUND  # sent, then forgotten
    assert kkm_emulator.journal()[0]["state"] == "approved"  # the terminal still has the payment


def test_a_restart_during_a_sale_drops_its_answer_and_the_terminal_still_charges(kkm_emulator):
    kkm_emulator.fault("busy", seconds=1.5)  # the guest is still at the PIN pad when KKM Server restarts
    client = make_client(kkm_emulator, guest_timeout=0.2, poll_for=0.1)
    unclear = client.sale("sale-1", 18900, "A-1")
    assert unclear.outcome is Outcome.UNKNOWN and unclear.reason is Reason.IN_PROGRESS
    restart(kkm_emulator, keep_results=False)
    deadline = time.monotonic() + 10
    while not kkm_emulator.journal():  # the guest finishes on the terminal
        assert time.monotonic() < deadline
        time.sleep(0.05)

    after = make_client(kkm_emulator, poll_for=0.2).status("sale-1")
    assert after.outcome is Outcome.UNKNOWN and after.reason is Reason.NOT_FOUND
    assert kkm_emulator.journal()[0]["state"] == "approved"


def test_a_command_sent_while_the_terminal_is_busy_is_refused_as_busy(kkm_emulator):
    kkm_emulator.fault("busy", seconds=1.5)
    slow = make_client(kkm_emulator, guest_timeout=0.1, poll_for=0.1).sale("sale-1", 18900, "A-1")
    busy = make_client(kkm_emulator).emergency_reversal("rev-1")

    assert slow.outcome is Outcome.UNKNOWN
    assert busy.outcome is Outcome.DECLINED and busy.reason is Reason.BUSY and "занят" in busy.message
    assert make_client(kkm_emulator, poll_for=3.0).status("rev-1").reason is Reason.NOT_FOUND  # never ran


def test_reversal_refused_and_no_connection_hit_emergency_reversals(kkm, kkm_emulator):
    kkm_emulator.fault("no_connection", operation="reversal")  # armed for the reversal: the sale is spared
    approved_sale(kkm, "sale-1")
    kkm_emulator.fault("reversal_refused")

    no_bank, refused = kkm.emergency_reversal("rev-1"), kkm.emergency_reversal("rev-2")

    assert refused.outcome is Outcome.DECLINED and "отклонена" in refused.message
    assert no_bank.outcome is Outcome.DECLINED and "Нет связи" in no_bank.message
    assert kkm.emergency_reversal("rev-3").approved  # the sale was still there to reverse


def test_every_fault_is_listed_with_what_it_does(kkm_emulator):
    known = kkm_emulator.control.get("/_emulator/faults/known").json()
    assert {"busy", "reversal_refused", "no_connection", "timeout", "lost_response"} <= set(known)
    assert all(isinstance(text, str) and text for text in known.values())


def test_status_query_that_cannot_reach_kkm_server_is_unknown():
    client = KkmServerClient(f"http://127.0.0.1:{closed_port()}", timeout=0.5)

    assert client.status("sale-1").outcome is Outcome.UNKNOWN


def test_repeated_id_command_is_idempotent(kkm, kkm_emulator):
    first = approved_sale(kkm, "sale-1")

    again = kkm.sale("sale-1", 18900, "A-042")
    other = kkm.sale("sale-1", 100, "A-042")

    assert again.outcome is Outcome.APPROVED and again.reference == first.reference
    assert other.outcome is Outcome.DECLINED and "IdCommand" in other.message
    assert len(kkm_emulator.journal()) == 1


def test_id_command_is_validated_before_sending(kkm, kkm_emulator):
    with pytest.raises(InvalidRequest):
        kkm.sale("x" * 41, 18900, "A-1")
    with pytest.raises(InvalidRequest):
        kkm.sale("sale-1", 0, "A-1")
    assert kkm_emulator.journal() == []


# --- reversal, cancel, refund -----------------------------------------------------------------------------


def test_emergency_reversal_of_the_last_operation(kkm, kkm_emulator):
    kkm_emulator.fault("lost_response", count=1000)  # sale done, every answer lost: still unknown
    unclear = make_client(kkm_emulator, poll_for=0.2).sale("sale-1", 18900, "A-1")
    assert unclear.outcome is Outcome.UNKNOWN
    kkm_emulator.app.faults.clear()

    reversal = kkm.emergency_reversal("rev-1")
    again = kkm.emergency_reversal("rev-2")

    assert reversal.outcome is Outcome.APPROVED and reversal.amount_kopecks == 18900
    assert again.outcome is Outcome.DECLINED  # nothing approved is left to reverse
    assert [(e["operation"], e["state"]) for e in kkm_emulator.journal()] == [
        ("sale", "approved"), ("reversal", "approved"), ("reversal", "failed")]


def test_emergency_reversal_only_while_the_operation_is_last(kkm):
    first = approved_sale(kkm, "sale-1")
    approved_sale(kkm, "sale-2")

    assert kkm.emergency_reversal("rev-1", first).outcome is Outcome.DECLINED
    assert kkm.emergency_reversal("rev-2").outcome is Outcome.APPROVED


def test_cancel_before_settlement(kkm, kkm_emulator):
    sale = approved_sale(kkm, "sale-1")

    result = kkm.cancel("cancel-1", 18900, sale)

    assert result.outcome is Outcome.APPROVED
    assert kkm_emulator.journal()[-1] | {"time": None, "rrn": None} == {
        "operation": "cancel", "device": "1", "amount": "189.00", "rrn": None, "state": "approved",
        "batch": 1, "id": "cancel-1", "time": None}


def test_cancel_refused_after_settlement_then_refund_works(kkm):
    sale = approved_sale(kkm, "sale-1")
    assert kkm.settlement("settle-1").ok

    cancel = kkm.cancel("cancel-1", 18900, sale)
    refund = kkm.refund("refund-1", 18900, sale.reference)

    assert cancel.outcome is Outcome.DECLINED and "сверку" in cancel.message
    assert refund.outcome is Outcome.APPROVED and refund.amount_kopecks == 18900


def test_partial_refunds_up_to_the_original_amount(kkm):
    sale = approved_sale(kkm, "sale-1")

    assert kkm.refund("refund-1", 5000, sale).outcome is Outcome.APPROVED
    too_much = kkm.refund("refund-2", 13901, sale)
    assert kkm.refund("refund-3", 13900, sale).outcome is Outcome.APPROVED

    assert too_much.outcome is Outcome.DECLINED and "остатка" in too_much.message
    assert kkm.refund("refund-4", 1, sale).outcome is Outcome.DECLINED


def test_cancel_needs_an_approved_original(kkm):
    declined = CardResult(outcome=Outcome.DECLINED, reason=Reason.DECLINED, operation="sale", op_id="x")
    with pytest.raises(InvalidRequest):
        kkm.cancel("cancel-1", 100, declined)


# --- settlement, 4134, check, report -------------------------------------------------------------------------


def test_settlement_failing_keeps_the_batch_then_succeeds(kkm, kkm_emulator):
    sale = approved_sale(kkm, "sale-1")
    kkm_emulator.fault("settlement_fails")

    failed = kkm.settlement("settle-1")
    cancel_still_possible = kkm.cancel("cancel-1", 1000, sale)
    done = kkm.settlement("settle-2")
    next_sale = approved_sale(kkm, "sale-2")

    assert failed.outcome is Outcome.DECLINED and failed.message
    assert cancel_still_possible.outcome is Outcome.APPROVED  # the batch was kept
    assert done.ok and "СВЕРКА ИТОГОВ" in done.slip and "179.00" in done.slip
    journal = {e["id"]: e for e in kkm_emulator.journal()}
    assert journal["settle-1"]["state"] == "failed" and journal["settle-1"]["batch"] == 1
    assert journal["settle-2"]["state"] == "approved" and journal["settle-2"]["batch"] == 1
    assert journal["sale-2"]["batch"] == 2
    assert kkm.cancel("cancel-2", 1000, sale).outcome is Outcome.DECLINED  # batch cleared
    assert next_sale.approved


def test_card_operations_refused_after_too_long_without_settlement(kkm, kkm_emulator):
    sale = approved_sale(kkm, "sale-0")
    advance_clock(kkm_emulator, 5 * 86400 - 60)
    assert kkm.sale("sale-1", 100, "A-1").approved  # five days are still fine
    advance_clock(kkm_emulator, 120)

    refused = kkm.sale("sale-2", 18900, "A-1")
    refund_refused = kkm.refund("refund-1", 100, sale)
    assert kkm.settlement("settle-1").ok
    after = kkm.sale("sale-3", 18900, "A-1")

    assert refused.outcome is Outcome.DECLINED and refused.bank_code == "4134"
    assert refund_refused.bank_code == "4134"
    assert after.outcome is Outcome.APPROVED


def test_connectivity_check(kkm, kkm_emulator):
    assert kkm.check("check-1").ok

    kkm_emulator.fault("no_connection")
    no_bank = kkm.check("check-2")
    unreachable = KkmServerClient(f"http://127.0.0.1:{closed_port()}", timeout=0.5, poll_for=0.1).check("check-3")

    assert not no_bank.ok and no_bank.reachable
    assert not unreachable.ok and not unreachable.reachable
    assert [e["operation"] for e in kkm_emulator.journal()] == ["check", "check"]


def test_terminal_report(kkm, kkm_emulator):
    approved_sale(kkm, "sale-1")

    report = kkm.report("report-1", detailed=True)

    assert report.ok and "189.00" in report.slip
    assert kkm_emulator.journal()[-1]["operation"] == "report"


# --- devices, auth, persistence --------------------------------------------------------------------------


def test_devices_have_their_own_batches_and_faults(kkm_emulator):
    first, second = make_client(kkm_emulator), make_client(kkm_emulator, device_number=2)
    kkm_emulator.fault("decline", device="2")

    assert first.sale("sale-1", 100, "A-1").approved
    assert second.sale("sale-2", 100, "A-2").declined
    assert second.settlement("settle-2").ok

    batches = {(e["device"], e["operation"]): e["batch"] for e in kkm_emulator.journal()}
    assert batches == {("1", "sale"): 1, ("2", "sale"): 1, ("2", "settlement"): 1}
    assert first.sale("sale-3", 100, "A-3").approved and kkm_emulator.journal()[-1]["batch"] == 1


def test_basic_auth_and_no_password_in_the_journal(serve_emulator, tmp_path):
    emulator = serve_emulator(KkmServerEmulator(state_path=str(tmp_path / "kkm.json"), users={"kiosk": "s3cret"}))
    good = make_client(emulator, username="kiosk", password="s3cret")
    bad = make_client(emulator, username="kiosk", password="wrong")

    result = good.sale("sale-1", 18900, "A-1")
    refused = bad.sale("sale-2", 18900, "A-2")

    assert result.approved
    assert refused.outcome is Outcome.DECLINED and refused.reason is Reason.REJECTED
    for text in (result.raw_request, result.raw_response, refused.raw_request, refused.raw_response):
        assert "s3cret" not in text and "wrong" not in text and "Basic " not in text
    assert len(emulator.journal()) == 1


def test_state_survives_an_emulator_restart(serve_emulator, tmp_path):
    path = str(tmp_path / "kkm.json")
    first = serve_emulator(KkmServerEmulator(state_path=path))
    sale = approved_sale(make_client(first), "sale-1")
    first.server.stop()

    second = serve_emulator(KkmServerEmulator(state_path=path))
    client = make_client(second)

    assert client.status("sale-1").reference == sale.reference
    assert client.cancel("cancel-1", 18900, sale).approved


def test_control_api_validates_input(kkm_emulator):
    assert kkm_emulator.control.post("/_emulator/faults", json={"fault": "nonsense"}).status_code == 400
    assert kkm_emulator.control.post("/_emulator/config", json={"card_delay": -1}).status_code == 400
    assert kkm_emulator.control.get("/_emulator/clock").json()["now"]
    kkm_emulator.reset()
    assert kkm_emulator.journal() == []


def test_wire_format_of_the_emulator(kkm_emulator):
    """What a kiosk's KKM Server sees and answers, without our client in between."""
    answer = httpx.post(f"{kkm_emulator.url}/Execute", content=(
        b'{"Command": "PayByPaymentCard", "NumDevice": 0, "IdCommand": "raw-1", "Timeout": 60,'
        b' "Amount": 10.50, "ReceiptNumber": "7", "CardNumber": ""}'))
    rezult = httpx.post(f"{kkm_emulator.url}/Execute", json={"Command": "GetRezult", "IdCommand": "raw-1"})

    assert answer.json()["Status"] == 0 and b'"Amount": 10.50' in answer.content
    assert rezult.json()["Rezult"]["UniversalID"] == answer.json()["UniversalID"]


# --- money ---------------------------------------------------------------------------------------------------


def test_kopecks_and_rubles_convert_exactly():
    assert kopecks_to_rubles(18900) == Decimal("189.00") and str(kopecks_to_rubles(5)) == "0.05"
    assert rubles_to_kopecks(Decimal("189.00")) == 18900
    assert rubles_to_kopecks("0.29") == 29 and rubles_to_kopecks(3) == 300
    for bad in (0.29, "1.005", "abc", True):
        with pytest.raises(InvalidRequest):
            rubles_to_kopecks(bad)
