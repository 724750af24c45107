"""Marked goods through the checkout (issue 13), against every emulator over HTTP: the MARKS step (the check
service, then the register's validation), the sell receipt's positions per unit with their codes, the refusals
before anything is printed or charged, the offline sale, the guest window, a resumed step, a shift changed
between the checks and the receipt, and the annulment that returns the codes."""

from __future__ import annotations

import base64
import time

import pytest
from django.test import Client
from django_q.conf import Conf

from core.gs1 import GS
from fiscal import shifts
from fiscal.models import FiscalOperation
from iiko import emulator as demo
from marking.emulator import DEMO_TOKEN
from marking.models import MarkedProduct, MarkingCheck
from nekassir import checkout_marks
from nekassir.checkout import resume_due_orders, run_checkout
from nekassir.models import Order, OrderMark
from payments.settlement import settle_before_close
from tests.threads import run_in_threads
from tests.venue import order_body

pytestmark = pytest.mark.django_db(transaction=True)

WATER_GTIN = "04600000000013"
FLAGS = {"imcCheckFlag": True, "imcCheckResult": True, "imcStatusInfo": True, "imcEstimatedStatusCorrect": True,
         "ecrStandAloneFlag": False}


@pytest.fixture
def marked(venue, marking_emulator, settings, db):
    """The venue with the check service on, and the demo menu's water marked."""
    settings.MARKING_CHECK_URL = marking_emulator.url
    settings.MARKING_CHECK_TOKEN = DEMO_TOKEN
    settings.MARKING_CHECK_TIMEOUT = 1.0
    settings.MARKING_OFFLINE_SALE = "refuse"
    settings.MARKING_VALIDATION_POLL = 0.02
    MarkedProduct.objects.create(product_id=demo.PRODUCT_WATER_ID, name="Вода", group="water", gtins=[WATER_GTIN])
    venue.marking = marking_emulator
    return venue


def mint(venue, status="valid", count=2) -> list[str]:
    answer = venue.marking.control.post("/_emulator/codes", json={"gtin": WATER_GTIN, "status": status,
                                                                  "count": count})
    answer.raise_for_status()
    return answer.json()["codes"]


def water_body(codes: list[str]) -> dict:
    body = order_body((demo.PRODUCT_WATER_ID, str(len(codes))))
    body["lines"][0]["marking_codes"] = codes
    return body


def post(client, venue, body, kiosk="K1"):
    return client.post("/api/v1/orders", body, content_type="application/json",
                       headers={"Authorization": f"Bearer {venue.tokens[kiosk]}"})


def place(client, venue, codes, kiosk="K1") -> Order:
    body = water_body(codes)
    answer = post(client, venue, body, kiosk)
    assert answer.status_code == 201, answer.content
    return Order.objects.select_related("kiosk").get(pk=body["id"])


def status_of(client, venue, order, kiosk="K1") -> dict:
    answer = client.get(f"/api/v1/orders/{order.pk}", headers={"Authorization": f"Bearer {venue.tokens[kiosk]}"})
    assert answer.status_code == 200
    return answer.json()


def documents(venue, kind, device="K1") -> list[dict]:
    return [d for d in venue.atol.journal() if d["device"] == device and d["type"] == kind]


def card_ops(venue) -> list:
    return venue.kkm.journal()


def marks_of(order) -> list[OrderMark]:
    return list(OrderMark.objects.filter(order=order).order_by("unit"))


def imc_codes(receipt) -> list[str]:
    return [base64.b64decode(item["imcParams"]["imc"]).decode() for item in receipt["items"] if "imcParams" in item]


@pytest.fixture
def queued_only(monkeypatch):
    """Checkout jobs go to the broker and nobody runs them: the test moves the order itself."""
    monkeypatch.setattr(Conf, "SYNC", False)


# --- the "done when" -------------------------------------------------------------------------------


def test_two_bottles_of_water_with_valid_codes_complete_with_a_position_per_code(client, marked):
    codes = mint(marked)
    assert all(GS in code for code in codes)
    order = place(client, marked, codes)
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED, order.error_message
    assert order.marking_mode == Order.MarkingMode.ONLINE
    check = order.marking_check
    assert check.state == MarkingCheck.State.ANSWERED and check.codes == codes
    [sell] = documents(marked, "sell")
    marked_items = [item for item in sell["items"] if "imcParams" in item]
    assert len(marked_items) == 2
    for item, code in zip(marked_items, codes, strict=True):
        assert float(item["quantity"]) == 1 and float(item["amount"]) == 90.0
        assert base64.b64decode(item["imcParams"]["imc"]) == code.encode()  # the exact bytes, GS included
        assert item["imcParams"]["itemEstimatedStatus"] == "itemPieceSold"
        assert item["imcParams"]["imcType"] == "auto" and item["imcParams"]["imcModeProcessing"] == 0
        assert item["imcParams"]["itemInfoCheckResult"] == FLAGS
        assert item["paymentObject"] == "commodityWithMarking"
        assert item["industryInfo"] == [{"fois": "030", "date": "21.11.2023", "number": "1944",
                                         "industryAttribute": f"UUID={check.req_id}&Time={check.req_timestamp}"}]
    assert [m.state for m in marks_of(order)] == [OrderMark.State.SOLD] * 2
    for mark in marks_of(order):
        assert mark.service_result["sellable"] is True and mark.register_result["accepted"] is True
        assert mark.validated_shift == order.shift.number and mark.validated_fn == order.shift.fn_number
    assert [op["state"] for op in card_ops(marked)] == ["approved"]
    assert status_of(client, marked, order)["status"] == "completed"
    # The operator now knows them sold: the same codes cannot be sold again.
    refused = post(client, marked, water_body(codes))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "marking_code_in_use"


def test_a_code_already_sold_fails_the_order_before_any_receipt_or_card(client, marked):
    codes = [mint(marked)[0], mint(marked, "sold", 1)[0]]
    order = place(client, marked, codes)
    order.refresh_from_db()
    assert order.status == Order.Status.FAILED and order.error_code == "marking_rejected"
    state = status_of(client, marked, order)
    assert state["status"] == "failed" and state["error"]["code"] == "marking_rejected"
    assert state["error"]["message"].startswith("Вода питьевая негазированная 0,5 л: код маркировки не прошёл")
    assert "продан" in state["error"]["message"]
    assert documents(marked, "sell") == [] and card_ops(marked) == []
    assert [m.state for m in marks_of(order)] == [OrderMark.State.RELEASED] * 2
    assert marks_of(order)[1].service_result["sellable"] is False


def test_a_code_the_register_refuses_fails_the_order_the_same_way(client, marked, settings):
    settings.MARKING_CHECK_URL = ""  # the service off: the register's validation alone
    marked.atol.fault("code_blocked", device="K1")
    order = place(client, marked, mint(marked))
    order.refresh_from_db()
    assert order.status == Order.Status.FAILED and order.error_code == "marking_rejected"
    assert "заблокирован" in order.error_message or "приостановлен" in order.error_message
    assert order.marking_check is None
    assert documents(marked, "sell") == [] and card_ops(marked) == []
    assert marks_of(order)[0].register_result["accepted"] is False


# --- the service or the operator out of reach ----------------------------------------------------------------


def test_check_service_unavailable_refuses_the_sale_by_default(client, marked):
    marked.marking.fault("unavailable", count=5)
    order = place(client, marked, mint(marked))
    order.refresh_from_db()
    assert order.status == Order.Status.FAILED and order.error_code == "marking_unavailable"
    assert order.marking_check.state == MarkingCheck.State.UNAVAILABLE
    assert status_of(client, marked, order)["error"]["code"] == "marking_unavailable"
    assert documents(marked, "sell") == [] and card_ops(marked) == []
    assert {m.state for m in marks_of(order)} == {OrderMark.State.RELEASED}


def test_check_service_unavailable_sells_offline_when_allowed(client, marked, settings):
    settings.MARKING_OFFLINE_SALE = "offline"
    marked.marking.fault("unavailable", count=5)
    codes = mint(marked)
    order = place(client, marked, codes)
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED, order.error_message
    assert order.marking_mode == Order.MarkingMode.OFFLINE
    [sell] = documents(marked, "sell")
    assert imc_codes(sell) == codes
    assert all("industryInfo" not in item for item in sell["items"])  # no answer of the service to quote


@pytest.mark.parametrize(("mode", "final", "code"), [
    ("refuse", Order.Status.FAILED, "marking_unavailable"),
    ("offline", Order.Status.COMPLETED, ""),
])
def test_the_operator_out_of_reach_of_the_register_is_decided_by_the_setting(client, marked, settings, mode, final,
                                                                             code):
    settings.MARKING_OFFLINE_SALE = mode
    marked.atol.fault("ism_unreachable", device="K1")
    order = place(client, marked, mint(marked, count=1))
    order.refresh_from_db()
    assert (order.status, order.error_code) == (final, code)
    assert marks_of(order)[0].register_result["offline"] is True
    if mode == "offline":
        assert order.marking_mode == Order.MarkingMode.OFFLINE
        [sell] = documents(marked, "sell")
        assert sell["items"][0]["imcParams"]["itemInfoCheckResult"]["ecrStandAloneFlag"] is True
    else:
        assert documents(marked, "sell") == []


# --- the guest window, a resumed step, a new shift --------------------------------------------------------


def test_the_guest_window_closing_during_the_checks_cancels_with_nothing_printed(client, marked, settings):
    settings.CHECKOUT_GUEST_WINDOW = 0.5
    settings.MARKING_OFFLINE_SALE = "offline"
    marked.marking.fault("slow", seconds=1.5)  # the client gives up after 1 s: past the window
    order = place(client, marked, mint(marked))
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED and order.error_code == "guest_timeout"
    assert documents(marked, "sell") == [] and card_ops(marked) == []
    assert {m.state for m in marks_of(order)} == {OrderMark.State.RELEASED}


def test_a_marks_step_run_again_after_a_kill_prints_once(client, marked, queued_only):
    codes = mint(marked)
    order = place(client, marked, codes)
    assert order.step == Order.Step.MARKS and order.status == Order.Status.RECEIVED
    # The step's work done, then the process killed before the step was saved: the checks stand.
    assert checkout_marks.check_marks(order).code == ""
    order.refresh_from_db()
    assert order.step == Order.Step.MARKS
    assert run_checkout(str(order.pk)) == Order.Status.COMPLETED
    assert run_checkout(str(order.pk)) == Order.Status.COMPLETED
    assert len(documents(marked, "sell")) == 1 and len(card_ops(marked)) == 1
    assert MarkingCheck.objects.count() == 1  # the answered check is not asked again
    assert imc_codes(documents(marked, "sell")[0]) == codes


def test_the_status_says_checking_marks_while_the_step_runs(client, marked, queued_only):
    order = place(client, marked, mint(marked))
    assert status_of(client, marked, order)["status"] == "received"
    marked.marking.fault("slow", seconds=1.5)  # the client gives up after 1 s
    seen: list[str] = []

    def watch():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "checking_marks" not in seen:
            seen.append(status_of(Client(), marked, order)["status"])
            time.sleep(0.05)

    _results, errors = run_in_threads(lambda which: run_checkout(str(order.pk)) if which else watch(), [(1,), (0,)])
    assert errors == []
    assert "checking_marks" in seen
    order.refresh_from_db()
    assert (order.status, order.error_code) == (Order.Status.FAILED, "marking_unavailable")


def test_a_shift_closed_and_reopened_between_the_checks_and_the_receipt_validates_again(client, marked,
                                                                                        queued_only):
    codes = mint(marked)
    order = place(client, marked, codes)
    assert checkout_marks.check_marks(order).code == ""
    Order.objects.filter(pk=order.pk).update(step=Order.Step.SELL)
    first_shift = marks_of(order)[0].validated_shift
    shifts.close_register(order.kiosk, before_close=settle_before_close)
    shifts.open_shift(order.kiosk)
    assert run_checkout(str(order.pk)) == Order.Status.COMPLETED
    order.refresh_from_db()
    assert order.shift.number == first_shift + 1
    assert {m.validated_shift for m in marks_of(order)} == {first_shift + 1}
    begins = FiscalOperation.objects.filter(task_type="beginMarkingCodeValidation", state=FiscalOperation.State.DONE)
    assert begins.count() == 4  # each code validated in both shifts
    assert imc_codes(documents(marked, "sell")[0]) == codes


# --- the annulment ------------------------------------------------------------------------------------------


def test_a_declined_card_annuls_with_the_codes_returned_and_frees_them(client, marked):
    marked.kkm.fault("decline")
    codes = mint(marked)
    order = place(client, marked, codes)
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED and order.error_code == "card_declined"
    [sell] = documents(marked, "sell")
    [annul] = documents(marked, "sellReturn")
    assert imc_codes(annul) == codes
    returned = [item for item in annul["items"] if "imcParams" in item]
    assert {item["imcParams"]["itemEstimatedStatus"] for item in returned} == {"itemPieceReturn"}
    assert sell["total"] == annul["total"]
    for mark in marks_of(order):
        assert mark.state == OrderMark.State.RELEASED
        assert mark.return_result is not None  # the return's validation, recorded
    # The codes are free again: a new order sells them.
    again = place(client, marked, codes)
    again.refresh_from_db()
    assert again.status == Order.Status.COMPLETED, again.error_message
    assert imc_codes(documents(marked, "sell")[-1]) == codes


def test_recovery_resumes_an_order_left_at_the_marks_step(client, marked, queued_only, monkeypatch):
    codes = mint(marked)
    order = place(client, marked, codes)
    assert order.step == Order.Step.MARKS  # its job never ran (the process died with it queued)
    monkeypatch.setattr(Conf, "SYNC", True)  # the device cluster is back: jobs run
    assert resume_due_orders(everything=True) == 1
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED, order.error_message
    assert imc_codes(documents(marked, "sell")[0]) == codes
