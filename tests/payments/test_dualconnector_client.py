"""DualConnector client against the DualConnector emulator over real HTTP/XML (no mocks)."""

from __future__ import annotations

import socket

import httpx
import pytest

from payments.acquiring import CardResult, InvalidRequest, LostOperation, NotSupported, Outcome, Reason
from payments.dualconnector_client import DualConnectorClient, ecr_transaction_id, slip_to_text
from payments.dualconnector_emulator import DualConnectorEmulator

JOURNAL_KEYS = {"operation", "device", "amount", "rrn", "state", "batch", "id", "time"}


@pytest.fixture
def dc(dc_emulator) -> DualConnectorClient:
    return DualConnectorClient(dc_emulator.url, timeout=0.5, guest_timeout=0.5)


def approved_sale(client: DualConnectorClient, op_id: str, amount: int = 18900) -> CardResult:
    result = client.sale(op_id, amount, order_number="A-042")
    assert result.outcome is Outcome.APPROVED, result
    return result


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- sale --------------------------------------------------------------------------------------------------


def test_approved_sale(dc, dc_emulator):
    result = approved_sale(dc, "sale-1")

    assert result.reason is Reason.OK and result.amount_kopecks == 18900
    assert result.rrn and result.auth_code and result.masked_pan
    assert result.reference.startswith("DC:") and result.rrn in result.reference
    assert result.bank_code == "00" and result.message == "Одобрено"
    for field in ('<field id="25">1</field>', '<field id="00">18900</field>', '<field id="04">643</field>',
                  f'<field id="26">{ecr_transaction_id("sale-1")}</field>'):
        assert field in result.raw_request
    [entry] = dc_emulator.journal()
    assert set(entry) == JOURNAL_KEYS
    assert entry | {"time": None} == {
        "operation": "sale", "device": "1", "amount": "189.00", "rrn": result.rrn, "state": "approved",
        "batch": 1, "id": ecr_transaction_id("sale-1"), "time": None,
    }


def test_slip_markup_becomes_plain_lines(dc):
    slip = approved_sale(dc, "sale-1").slip

    assert "^" not in slip and "~" not in slip
    assert "ОДОБРЕНО" in slip.splitlines() and "Сумма: 189.00 руб." in slip.splitlines()
    assert slip_to_text("A^B~C^^D~") == "A\nB\nC\n\nD"


def test_declined(dc, dc_emulator):
    dc_emulator.fault("decline")

    result = dc.sale("sale-1", 18900, "A-1")

    assert result.outcome is Outcome.DECLINED and result.reason is Reason.DECLINED
    assert result.bank_code == "05" and result.reference == ""
    assert dc_emulator.journal()[0]["state"] == "declined"


def test_insufficient_funds_in_windows_1251(dc, dc_emulator):
    dc_emulator.fault("insufficient_funds")

    result = dc.sale("sale-1", 18900, "A-1")

    assert result.outcome is Outcome.DECLINED and result.bank_code == "51"
    assert result.message == "Недостаточно средств"
    assert "Недостаточно средств" in result.raw_response  # kept as decoded text


def test_answers_are_windows_1251_on_the_wire(dc_emulator):
    dc_emulator.fault("insufficient_funds")
    body = ('<?xml version="1.0" encoding="windows-1251"?><request><field id="25">1</field>'
            '<field id="00">100</field><field id="04">643</field><field id="26">7</field></request>')

    answer = httpx.post(dc_emulator.url + "/", content=body.encode("cp1251"), headers={"Content-Type": "text/xml"})

    assert "windows-1251" in answer.headers["content-type"]
    assert "Недостаточно средств".encode("cp1251") in answer.content
    with pytest.raises(UnicodeDecodeError):
        answer.content.decode("utf-8")


def test_terminal_without_bank_connection(dc, dc_emulator):
    dc_emulator.fault("no_connection")

    result = dc.sale("sale-1", 18900, "A-1")

    assert result.outcome is Outcome.DECLINED and "Нет связи" in result.message
    assert dc_emulator.journal()[0]["state"] == "failed"


def test_service_not_reachable_is_a_known_non_charge():
    client = DualConnectorClient(f"http://127.0.0.1:{closed_port()}", timeout=0.5, guest_timeout=0.5)

    result = client.sale("sale-1", 18900, "A-1")

    assert result.outcome is Outcome.DECLINED and result.reason is Reason.NOT_REACHABLE


def test_malformed_request_gets_an_errorcode(dc_emulator, dc):
    garbage = httpx.post(dc_emulator.url + "/", content=b"<nonsense", headers={"Content-Type": "text/xml"})
    unknown_code = DualConnectorClient(dc_emulator.url, operation_codes={"sale": 77}, timeout=0.5)

    assert b"<errorcode>4</errorcode>" in garbage.content
    refused = unknown_code.sale("sale-1", 100, "A-1")
    assert refused.outcome is Outcome.DECLINED and refused.reason is Reason.REJECTED and refused.bank_code == "3"
    assert dc_emulator.journal() == []


# --- unclear answers: no status query, emergency reversal -----------------------------------------------------


def test_there_is_no_status_query(dc):
    assert not dc.supports_status
    with pytest.raises(NotSupported):
        dc.status("sale-1")


@pytest.mark.parametrize("fault", ["timeout", "lost_response"])
def test_unclear_approved_sale_is_resolved_by_emergency_reversal(dc, dc_emulator, fault):
    dc_emulator.fault(fault)

    unclear = dc.sale("sale-1", 18900, "A-1")
    reversal = dc.emergency_reversal("rev-1")

    assert unclear.outcome is Outcome.UNKNOWN
    assert unclear.reason is (Reason.TIMEOUT if fault == "timeout" else Reason.LOST_ANSWER)
    assert reversal.outcome is Outcome.APPROVED and reversal.amount_kopecks == 18900
    assert [(e["operation"], e["state"]) for e in dc_emulator.journal()] == [
        ("sale", "approved"), ("reversal", "approved")]


@pytest.mark.parametrize("fault", ["timeout", "lost_response"])
def test_unclear_declined_sale_leaves_nothing_to_reverse(dc, dc_emulator, fault):
    approved_sale(dc, "sale-0")  # an earlier payment that must survive
    dc_emulator.fault(fault, approved=False)

    unclear = dc.sale("sale-1", 18900, "A-1")
    reversal = dc.emergency_reversal("rev-1")

    assert unclear.outcome is Outcome.UNKNOWN
    assert reversal.outcome is Outcome.DECLINED and "Нет одобренной операции" in reversal.message
    assert [(e["operation"], e["state"]) for e in dc_emulator.journal()] == [
        ("sale", "approved"), ("sale", "declined"), ("reversal", "failed")]


def test_emergency_reversal_only_of_the_last_operation(dc):
    first = approved_sale(dc, "sale-1")
    second = approved_sale(dc, "sale-2")

    assert dc.emergency_reversal("rev-1", first).outcome is Outcome.DECLINED
    assert dc.emergency_reversal("rev-2", second).outcome is Outcome.APPROVED
    assert dc.emergency_reversal("rev-3").outcome is Outcome.DECLINED  # already reversed


def test_a_reversal_naming_a_lost_sale_cancels_only_that_sale(dc, dc_emulator):
    """After a lost answer the reversal names the sale by its ECR id and amount: a sale that never reached
    the terminal leaves the payment before it alone; one that did is cancelled."""
    earlier = approved_sale(dc, "sale-1")
    never_sent = dc.emergency_reversal("rev-1", lost=LostOperation("sale-2", 18900))
    assert never_sent.outcome is Outcome.DECLINED
    assert never_sent.reason is Reason.NOT_RECEIVED and never_sent.bank_code == "25"  # about that very sale
    dc_emulator.fault("lost_response")
    assert dc.sale("sale-3", 18900, "A-3").outcome is Outcome.UNKNOWN
    wrong_amount = dc.emergency_reversal("rev-2", lost=LostOperation("sale-3", 100))
    reached = dc.emergency_reversal("rev-3", lost=LostOperation("sale-3", 18900))
    assert wrong_amount.outcome is Outcome.DECLINED and wrong_amount.reason is Reason.DECLINED  # proves nothing
    assert reached.outcome is Outcome.APPROVED and reached.rrn != earlier.rrn
    assert [(e["operation"], e["state"], e["rrn"]) for e in dc_emulator.journal()][-1] == (
        "reversal", "approved", reached.rrn)
    again = dc.emergency_reversal("rev-4", lost=LostOperation("sale-3", 18900))
    assert again.outcome is Outcome.DECLINED and again.reason is Reason.DECLINED  # reached, no longer last


def test_refusals_of_a_named_reversal_say_whether_they_are_about_that_operation(dc, dc_emulator):
    """Only "never had it" (25) and "it is last and not approved" (21) are answers about the named
    operation; a refusal for want of a bank link or by the terminal is not."""
    dc_emulator.fault("lost_response", approved=False)
    assert dc.sale("sale-1", 18900, "A-1").outcome is Outcome.UNKNOWN
    not_approved = dc.emergency_reversal("rev-1", lost=LostOperation("sale-1", 18900))
    assert not_approved.declined and not_approved.reason is Reason.NOT_APPROVED and not_approved.bank_code == "21"

    dc_emulator.fault("no_connection", operation="reversal")  # waits for the reversal: the sale is spared
    dc_emulator.fault("lost_response")
    assert dc.sale("sale-2", 18900, "A-2").outcome is Outcome.UNKNOWN
    for fault, status in (("no_connection", "34"), ("reversal_refused", "16")):
        if fault != "no_connection":
            dc_emulator.fault(fault)
        refused = dc.emergency_reversal(f"rev-{fault}", lost=LostOperation("sale-2", 18900))
        assert refused.declined and refused.reason is Reason.DECLINED, fault
        assert f'<field id="39">{status}</field>' in refused.raw_response
    assert dc.emergency_reversal("rev-2", lost=LostOperation("sale-2", 18900)).approved


def test_a_request_while_the_terminal_is_busy_is_refused_as_busy(dc_emulator):
    dc_emulator.fault("busy", seconds=1.5)
    slow = DualConnectorClient(dc_emulator.url, timeout=0.2, guest_timeout=0.2).sale("sale-1", 18900, "A-1")
    busy = DualConnectorClient(dc_emulator.url, timeout=0.5).emergency_reversal(
        "rev-1", lost=LostOperation("sale-1", 18900))

    assert slow.outcome is Outcome.UNKNOWN and slow.reason is Reason.TIMEOUT
    assert busy.declined and busy.reason is Reason.BUSY and busy.bank_code == "5"
    assert dc_emulator.journal() == []  # the sale is still running, the reversal never ran


def test_every_fault_is_listed_with_what_it_does(dc_emulator):
    known = dc_emulator.control.get("/_emulator/faults/known").json()
    assert {"busy", "reversal_refused", "no_connection", "timeout", "lost_response"} <= set(known)
    assert all(isinstance(text, str) and text for text in known.values())


# --- cancel, refund, settlement -----------------------------------------------------------------------------


def test_cancel_before_settlement(dc, dc_emulator):
    sale = approved_sale(dc, "sale-1")

    result = dc.cancel("cancel-1", 18900, sale)

    assert result.outcome is Outcome.APPROVED
    assert '<field id="25">4</field>' in result.raw_request
    assert f'<field id="14">{sale.rrn}</field>' in result.raw_request
    assert dc_emulator.journal()[-1]["operation"] == "cancel"


def test_cancel_refused_after_settlement_then_refund_works(dc):
    sale = approved_sale(dc, "sale-1")
    assert dc.settlement("settle-1").ok

    cancel = dc.cancel("cancel-1", 18900, sale)
    refund = dc.refund("refund-1", 18900, sale.reference)

    assert cancel.outcome is Outcome.DECLINED and "сверку" in cancel.message
    assert refund.outcome is Outcome.APPROVED
    assert '<field id="25">29</field>' in refund.raw_request


def test_partial_refunds_and_refund_above_remaining(dc):
    sale = approved_sale(dc, "sale-1")

    assert dc.refund("refund-1", 8900, sale).approved
    too_much = dc.refund("refund-2", 10001, sale)
    assert dc.refund("refund-3", 10000, sale).approved

    assert too_much.outcome is Outcome.DECLINED and "остатка" in too_much.message
    assert dc.refund("refund-4", 1, sale).declined


def test_reference_of_another_transport_is_refused(dc):
    with pytest.raises(InvalidRequest):
        dc.refund("refund-1", 100, "0123456789abcdef")


def test_settlement_failing_keeps_the_batch_then_succeeds(dc, dc_emulator):
    sale = approved_sale(dc, "sale-1")
    dc_emulator.fault("settlement_fails")

    failed = dc.settlement("settle-1")
    kept = dc.cancel("cancel-1", 900, sale)
    done = dc.settlement("settle-2")

    assert failed.outcome is Outcome.DECLINED and failed.message
    assert kept.approved  # the batch was kept
    assert done.ok and "Итого: 180.00" in done.slip.splitlines()
    assert dc.cancel("cancel-2", 900, sale).declined  # batch cleared
    journal = {e["id"]: e for e in dc_emulator.journal()}
    assert journal[ecr_transaction_id("settle-1")]["state"] == "failed"
    assert journal[ecr_transaction_id("settle-2")] | {"time": None} == {
        "operation": "settlement", "device": "1", "amount": "180.00", "rrn": "", "state": "approved", "batch": 1,
        "id": ecr_transaction_id("settle-2"), "time": None}


def test_card_operations_refused_after_too_long_without_settlement(dc, dc_emulator):
    approved_sale(dc, "sale-0")
    dc_emulator.control.post("/_emulator/clock", json={"advance_seconds": 6 * 86400}).raise_for_status()

    refused = dc.sale("sale-1", 100, "A-1")
    assert dc.settlement("settle-1").ok

    assert refused.outcome is Outcome.DECLINED and "сверки итогов" in refused.message
    assert dc.sale("sale-2", 100, "A-2").approved


def test_connectivity_check(dc, dc_emulator):
    ok = dc.check("check-1")
    dc_emulator.fault("no_connection")
    no_bank = dc.check("check-2")
    unreachable = DualConnectorClient(f"http://127.0.0.1:{closed_port()}", timeout=0.5).check("check-3")

    assert ok.ok and '<field id="25">26</field>' in ok.raw_request
    assert not no_bank.ok and no_bank.reachable
    assert not unreachable.ok and not unreachable.reachable
    assert [(e["operation"], e["state"]) for e in dc_emulator.journal()] == [("check", "approved"), ("check", "failed")]


def test_guest_delay_is_configurable_at_runtime(dc, dc_emulator):
    dc_emulator.control.post("/_emulator/config", json={"card_delay": 0.8}).raise_for_status()

    result = dc.sale("sale-1", 100, "A-1")  # the client gives up after 0.5 s

    assert result.outcome is Outcome.UNKNOWN and result.reason is Reason.TIMEOUT


def test_operation_codes_are_configurable(serve_emulator):
    codes = {"refund": 3, "emergency_cancel": 56}
    emulator = serve_emulator(DualConnectorEmulator(operation_codes=codes))
    client = DualConnectorClient(emulator.url, operation_codes=codes, timeout=0.5, guest_timeout=0.5)

    sale = approved_sale(client, "sale-1")
    refund = client.refund("refund-1", 100, sale)
    reversal = client.emergency_reversal("rev-1")

    assert refund.approved and '<field id="25">3</field>' in refund.raw_request
    assert reversal.approved and '<field id="25">56</field>' in reversal.raw_request
    with pytest.raises(InvalidRequest):
        DualConnectorClient(emulator.url, operation_codes={"sell": 1})


def test_ecr_transaction_id():
    assert ecr_transaction_id("12345") == "12345"
    derived = ecr_transaction_id("0b6f1c2e-8d0a-4f7c-9a51-3f1f0e8c2d44")
    assert derived.isdigit() and len(derived) <= 12
    assert derived == ecr_transaction_id("0b6f1c2e-8d0a-4f7c-9a51-3f1f0e8c2d44")
    with pytest.raises(InvalidRequest):
        ecr_transaction_id("has space")
