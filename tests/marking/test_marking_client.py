"""The check service's client (marking/client.py) against the emulator over real HTTP: a verdict per code by the
rule of PROTOCOLS.md §4, and typed errors when no verdict can be had."""

from __future__ import annotations

import socket
import time

import pytest

from core.gs1 import GS, make_code
from marking.client import MarkingCheckClient, MarkingRefused, MarkingUnavailable
from marking.emulator import DEMO_TOKEN

GTIN = "04600000000013"


def client_for(emulator, token=DEMO_TOKEN, timeout=2.0) -> MarkingCheckClient:
    return MarkingCheckClient(emulator.url, token, timeout)


def test_a_valid_code_is_sellable_and_the_answer_carries_req_id_and_timestamp(marking_emulator):
    raw = make_code(GTIN, "abc123", "ab" + GS + "cd")
    before = int(time.time() * 1000)
    with client_for(marking_emulator) as client:
        answer = client.check([raw])
    verdict = answer.codes[raw]
    assert verdict.sellable and verdict.reason == ""
    assert verdict.flags["found"] and verdict.flags["realizable"] and not verdict.flags["expired"]
    assert verdict.flags["gtin"] == GTIN
    assert len(answer.req_id) == 36 and before <= answer.req_timestamp <= int(time.time() * 1000)
    assert answer.all_sellable
    assert marking_emulator.journal()[-1]["codes"] == [raw]  # the exact bytes went out, GS included


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("sold", "уже продан"),
        ("expired", "срок годности"),
        ("blocked", "заблокирована"),
        ("not_found", "не найден"),
        ("sale_stopped", "не в обороте"),
    ],
)
def test_a_code_that_may_not_be_sold_says_why(marking_emulator, status, reason):
    raw = marking_emulator.control.post("/_emulator/codes", json={"gtin": GTIN, "status": status, "count": 1}
                                        ).json()["codes"][0]
    with client_for(marking_emulator) as client:
        verdict = client.check([raw]).codes[raw]
    assert not verdict.sellable
    assert reason in verdict.reason


def test_the_0999_gtins_are_not_found_and_one_request_answers_every_code(marking_emulator):
    good = [make_code(GTIN, f"ok{i}", "ab" + GS + "cd") for i in range(3)]
    unknown = make_code("09990000000012", "nope1", "abcd")
    with client_for(marking_emulator) as client:
        answer = client.check([*good, unknown])
    assert [answer.codes[raw].sellable for raw in good] == [True, True, True]
    assert answer.codes[unknown].reason == "код не найден в системе маркировки"
    assert not answer.all_sellable
    assert len(marking_emulator.journal()) == 1


@pytest.mark.parametrize("fault", ["unavailable", "slow", "lost_answer"])
def test_no_verdict_is_marking_unavailable(marking_emulator, fault):
    marking_emulator.fault(fault, seconds=3)
    raw = make_code(GTIN, "abc123", "abcd")
    with client_for(marking_emulator, timeout=0.5) as client, pytest.raises(MarkingUnavailable):
        client.check([raw])
    with client_for(marking_emulator) as client:  # the fault is used up: the next check answers
        assert client.check([raw]).codes[raw].sellable


def test_a_service_nobody_listens_on_is_marking_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with MarkingCheckClient(f"http://127.0.0.1:{port}", DEMO_TOKEN, 1.0) as client, \
            pytest.raises(MarkingUnavailable, match="нет связи"):
        client.check([make_code(GTIN, "abc123", "abcd")])


def test_a_bad_key_is_marking_refused_and_never_shown(marking_emulator):
    with client_for(marking_emulator, token="wrong-secret-key") as client, pytest.raises(MarkingRefused) as caught:
        client.check([make_code(GTIN, "abc123", "abcd")])
    assert caught.value.status == 401
    assert "wrong-secret-key" not in str(caught.value)


def test_no_codes_is_a_programming_error(marking_emulator):
    with client_for(marking_emulator) as client, pytest.raises(ValueError):
        client.check([])
