"""Device locks taken and left in fewer statements (issue 15 item 3): a lock claimed together with the one the block
takes next (``with_keys``), and a lock left while another is held freed with that one (``release_later``). Neither
may let two holders in, nor keep a row held once its thread holds nothing."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.locks import DeviceBusy, device_lock, holds
from core.models import DeviceLock

pytestmark = pytest.mark.django_db(transaction=True)


def _holder(key: str) -> str:
    return DeviceLock.objects.get(key=key).holder


def _lock_statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "core_devicelock" in q["sql"]]


def _create_free(*keys: str) -> None:
    for key in keys:
        with device_lock(key):
            pass


def test_keys_claimed_together_in_one_statement_and_the_inner_lock_costs_none():
    _create_free("sale:K1", "atol:K1")
    with CaptureQueriesContext(connection) as queries:
        with device_lock("sale:K1", "заказ 1", with_keys={"atol:K1": "чек заказа 1"}):
            claimed = _lock_statements(queries)
            assert _holder("sale:K1") and _holder("atol:K1") == _holder("sale:K1")
            assert DeviceLock.objects.get(key="atol:K1").purpose == "чек заказа 1"
            with CaptureQueriesContext(connection) as inner, device_lock("atol:K1", wait=0):
                entered = _lock_statements(inner)
            assert _holder("atol:K1") == ""  # freed when its block ends, as before
            assert _holder("sale:K1")
    assert len(claimed) == 1, claimed
    assert entered == []
    assert _holder("sale:K1") == ""


def test_a_key_claimed_along_and_never_entered_is_freed_with_the_outer_one():
    _create_free("sale:K1", "atol:K1")
    with device_lock("sale:K1", with_keys={"atol:K1": "чек"}):
        assert holds("atol:K1")
    assert _holder("sale:K1") == "" and _holder("atol:K1") == ""
    assert not holds("atol:K1") and not holds("sale:K1")


def test_a_key_held_elsewhere_is_not_taken_along_the_outer_one_is_claimed_alone():
    _create_free("sale:K1", "atol:K1")
    inside, leave = threading.Event(), threading.Event()

    def hold():
        try:
            with device_lock("atol:K1", "X-отчёт"):
                inside.set()
                leave.wait(10)
        finally:
            connection.close()  # this thread's own connection

    other = threading.Thread(target=hold)
    other.start()
    try:
        assert inside.wait(10)
        theirs = _holder("atol:K1")
        with device_lock("sale:K1", with_keys={"atol:K1": "чек"}):
            assert _holder("sale:K1") and _holder("sale:K1") != theirs
            assert _holder("atol:K1") == theirs  # untouched: still theirs
            assert not holds("atol:K1")
            with pytest.raises(DeviceBusy), device_lock("atol:K1", wait=0):
                pass
        assert _holder("atol:K1") == theirs
    finally:
        leave.set()
        other.join()
    assert _holder("atol:K1") == "" and _holder("sale:K1") == ""


def test_a_lock_left_inside_another_is_freed_with_it_in_one_statement():
    _create_free("sale:K1", "terminal:K1")
    with CaptureQueriesContext(connection) as queries:
        with device_lock("sale:K1"):
            with device_lock("terminal:K1", release_later=True):
                pass
            assert not holds("terminal:K1")
            left = _holder("terminal:K1")  # not freed yet: nobody else waits on this thread meanwhile
            assert left == _holder("sale:K1")
            before = len(_lock_statements(queries))
    freeing = _lock_statements(queries)[before:]
    assert len(freeing) == 1, freeing
    assert _holder("sale:K1") == "" and _holder("terminal:K1") == ""


def test_a_lock_left_later_is_freed_before_the_next_claim_and_taken_again_at_no_cost():
    _create_free("sale:K1", "terminal:K1", "atol:K1")
    with device_lock("sale:K1"):
        with device_lock("terminal:K1", release_later=True):
            pass
        with CaptureQueriesContext(connection) as queries, device_lock("terminal:K1", release_later=True):
            assert _lock_statements(queries) == []  # still ours: entered again without a round trip
        with device_lock("atol:K1"):  # the next claim frees it first
            assert _holder("terminal:K1") == ""
        assert _holder("atol:K1") == ""
    assert _holder("sale:K1") == ""


def test_release_later_without_an_outer_lock_frees_at_once():
    _create_free("terminal:K1")
    with device_lock("terminal:K1", release_later=True):
        assert _holder("terminal:K1")
    assert _holder("terminal:K1") == ""


def test_a_re_entered_outer_lock_frees_what_was_left_later_when_left_once():
    _create_free("sale:K1", "terminal:K1")
    with device_lock("sale:K1"):
        with device_lock("sale:K1"):  # a close carrying an order on: the sale lock entered twice
            with device_lock("terminal:K1", release_later=True):
                pass
        assert _holder("terminal:K1") == ""  # the inner sale block's end freed it
        assert _holder("sale:K1")
    assert _holder("sale:K1") == ""


def test_a_lock_tells_whether_its_row_was_made_by_this_claim():
    """``deliver(just_paid=True)`` reads nothing again only when the order's iiko lock row is new: nobody held it."""
    with device_lock("iiko:order:7", new_key=True) as first:
        assert first is True
    with device_lock("iiko:order:7", new_key=True) as first:
        assert first is False  # the row was there: someone held it before
    with device_lock("iiko:order:8") as first:  # made by the usual claim's fallback
        assert first is True
        with device_lock("iiko:order:8") as again:  # re-entered
            assert again is False
    with device_lock("iiko:order:8") as first:
        assert first is False
