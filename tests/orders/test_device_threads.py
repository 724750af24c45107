"""Checkouts on threads of the device workers (nekassir.device_threads, issue 15 item 2), in a real
``manage.py devicecluster`` with a single worker process: a guest slow at the PIN pad on one kiosk never
delays another kiosk, a run that raises is journaled as django-q2 would, and a worker that recycles or a
cluster that stops gracefully lets its checkouts finish (what a kill cuts off is resumed at the next start)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django_q.conf import Conf
from django_q.models import Task
from django_q.tasks import async_task, result

from iiko import emulator as demo
from nekassir.models import Order
from payments.models import CardOperation
from tests.processes import start_manage
from tests.venue import build_venue, order_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
SLOW_CARD = 12.0  # the slow guest on K1 (KKM Server)
CARD = 0.5  # every other guest


@pytest.fixture
def venue(serve_emulator, tmp_path, monkeypatch):
    from fiscal.atol_emulator import AtolWebServerEmulator
    from iiko.emulator import IikoEmulator
    from payments.dualconnector_emulator import DualConnectorEmulator
    from payments.kkm_emulator import KkmServerEmulator

    monkeypatch.setattr(Conf, "SYNC", False)  # jobs go to the broker, for the real cluster
    return build_venue(
        serve_emulator(AtolWebServerEmulator(state_path=str(tmp_path / "a.json"), print_delay=0.1)),
        serve_emulator(KkmServerEmulator(state_path=str(tmp_path / "k.json"), card_delay=CARD)),
        serve_emulator(DualConnectorEmulator(state_path=str(tmp_path / "d.json"), card_delay=CARD)),
        serve_emulator(IikoEmulator(state_path=str(tmp_path / "i.json"), creation_delay=0.1)),
    )


def slow_card(venue, seconds: float) -> None:
    """The guest on K1 (KKM Server) takes ``seconds`` at the PIN pad."""
    venue.kkm.control.post("/_emulator/config", json={"card_delay": seconds}).raise_for_status()


def cluster(**env: str):
    return start_manage("devicecluster", Q_DEVICE_WORKERS="1", Q_POLL="0.1",
                        DJANGO_SETTINGS_MODULE="tests.orders.device_threads_settings", **env)


def stop(proc, sig=signal.SIGKILL) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=30)
    return out + err


def post(client, venue, kiosk: str) -> str:
    body = order_body((demo.PRODUCT_BURGER_ID, "1"))
    answer = client.post("/api/v1/orders", body, content_type="application/json",
                         headers={"Authorization": f"Bearer {venue.tokens[kiosk]}"})
    assert answer.status_code == 201, answer.content
    return body["id"]


def order(order_id: str) -> Order:
    return Order.objects.select_related("card_sale").get(pk=order_id)


def wait_for(predicate, timeout: float, proc) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not reached in {timeout}s; the cluster said:\n{stop(proc)[-4000:]}")


def in_card(order_id: str) -> bool:
    o = order(order_id)
    return o.step == Order.Step.CARD and o.card_sale is not None and o.card_sale.state == CardOperation.State.SENT


def completed(order_id: str) -> bool:
    return order(order_id).status == Order.Status.COMPLETED


def test_slow_guest_on_one_kiosk_does_not_delay_another_on_one_worker_process(client, venue):
    slow_card(venue, SLOW_CARD)
    proc = cluster()
    try:
        t_slow = time.monotonic()
        slow = post(client, venue, "K1")
        wait_for(lambda: in_card(slow), 60, proc)
        # The only worker process dispatched K1's checkout and is free: a second dispatch of the same order
        # (the recovery finding it stale) is a no-op while its run is in this process.
        again = async_task("nekassir.device_threads.dispatch_checkout", slow, cluster="devices")
        assert result(again, wait=20_000) == "already running"
        t_other = time.monotonic()
        other = post(client, venue, "K2")
        wait_for(lambda: completed(other), 30, proc)
        other_seconds = time.monotonic() - t_other
        assert in_card(slow), "the other kiosk must complete while the slow guest is still at the PIN pad"
        wait_for(lambda: completed(slow), SLOW_CARD + 30, proc)
        slow_seconds = time.monotonic() - t_slow
    finally:
        out = stop(proc)
    assert other_seconds < SLOW_CARD / 2 < slow_seconds, (other_seconds, slow_seconds, out[-3000:])
    # Both q2 tasks returned at once: the checkouts ran on the worker's threads.
    tasks = list(Task.objects.values_list("name", "func", "result"))
    assert (f"checkout {slow}", "nekassir.device_threads.dispatch_checkout", "dispatched") in tasks, tasks
    assert (f"checkout {other}", "nekassir.device_threads.dispatch_checkout", "dispatched") in tasks, tasks
    assert [e["state"] for e in venue.kkm.journal() if e["operation"] == "sale"] == ["approved"]
    assert [e["state"] for e in venue.dc.journal() if e["operation"] == "sale"] == ["approved"]
    assert [o["creationStatus"] for o in venue.iiko.journal()] == ["Success", "Success"]


def test_a_run_that_raises_is_journaled_as_a_failed_task_and_the_order_can_run_again(venue):
    missing = "00000000-0000-4000-8000-000000000000"  # no such order: run_checkout raises DoesNotExist
    proc = cluster()
    try:
        for _ in range(2):  # the failed run left nothing behind: the second dispatch runs (and fails) again
            task = async_task("nekassir.device_threads.dispatch_checkout", missing, cluster="devices")
            assert result(task, wait=60_000) == "dispatched"
        wait_for(lambda: Task.objects.filter(name=f"checkout {missing}", success=False).count() == 2, 30, proc)
    finally:
        out = stop(proc)
    failed = Task.objects.filter(name=f"checkout {missing}", success=False).first()
    assert failed.func == "nekassir.checkout.run_checkout" and failed.args == (missing,)
    assert "Order matching query does not exist" in failed.result and "Traceback" in failed.result
    # django-q2's own log line of a failed task (its monitor's, translated when LANGUAGE_CODE is ru)
    assert "ERROR django-q " in out and f"(checkout {missing})" in out, out[-3000:]


def test_a_recycled_worker_lets_its_checkout_finish(client, venue):
    slow_card(venue, 4)
    proc = cluster(Q_DEVICE_RECYCLE="1")  # the worker recycles right after its first job: the dispatch
    try:
        first = post(client, venue, "K1")
        wait_for(lambda: completed(first), 60, proc)
        # The worker came back (reincarnated after its threads ended): the next order runs too.
        second = post(client, venue, "K2")
        wait_for(lambda: completed(second), 60, proc)
    finally:
        out = stop(proc)
    # django-q2's log lines (in English, or Russian when LANGUAGE_CODE is ru): recycled, never killed
    assert "recycled worker" in out or "перезапущен (recycle)" in out, out[-3000:]
    for killed in ("after death", "after timeout", "после сбоя", "по таймауту"):
        assert killed not in out, out[-3000:]
    assert [e["state"] for e in venue.kkm.journal() if e["operation"] == "sale"] == ["approved"]


def test_graceful_stop_waits_for_the_checkout_and_a_cut_off_one_resumes_at_the_next_start(client, venue):
    slow_card(venue, 4)
    proc = cluster()
    try:
        finished = post(client, venue, "K1")
        wait_for(lambda: in_card(finished), 60, proc)
        proc.send_signal(signal.SIGTERM)  # the cluster's own process only, as systemd's KillMode=mixed does
        proc.wait(timeout=60)
    finally:
        out = stop(proc)
    assert completed(finished), (order(finished).step, out[-3000:])

    # What systemd kills after TimeoutStopSec (the workers, with their threads) is resumed at the next start.
    proc = cluster()
    try:
        cut = post(client, venue, "K1")
        wait_for(lambda: in_card(cut), 60, proc)
        stop(proc, sig=signal.SIGKILL)
        assert order(cut).step == Order.Step.CARD
        proc = cluster()
        wait_for(lambda: order(cut).step == Order.Step.DONE, 90, proc)
    finally:
        out = stop(proc)
    assert completed(cut), (order(cut).status, order(cut).error_message, out[-3000:])
    # One charge per order, whatever was cut off.
    assert [e["state"] for e in venue.kkm.journal() if e["operation"] == "sale"] == ["approved", "approved"]


def test_an_automatic_close_runs_on_a_thread_beside_a_slow_checkout(client, venue):
    """At the quiet hour every kiosk's close is due at once and each may wait minutes (an order in progress, the
    terminal's settlement): on threads, like the checkouts, none of them holds the worker a checkout needs."""
    from fiscal.models import Shift

    first = post(client, venue, "K2")  # K2's shift is opened by its receipt
    proc = cluster()
    try:
        wait_for(lambda: completed(first), 30, proc)
        slow_card(venue, SLOW_CARD)
        slow = post(client, venue, "K1")
        wait_for(lambda: in_card(slow), 60, proc)
        shift = Shift.objects.get(kiosk__code="K2", state=Shift.State.OPEN)
        close = async_task("nekassir.device_threads.dispatch_auto_close", shift.pk, "тест", cluster="devices")
        assert result(close, wait=20_000) == "dispatched"
        wait_for(lambda: Shift.objects.get(pk=shift.pk).state == Shift.State.CLOSED, 30, proc)
        assert in_card(slow), "the close ran while K1's guest was still at the PIN pad"
        wait_for(lambda: completed(slow), SLOW_CARD + 30, proc)
    finally:
        out = stop(proc)
    assert Shift.objects.get(pk=shift.pk).state == Shift.State.CLOSED, out[-3000:]
    assert [e["state"] for e in venue.kkm.journal() if e["operation"] == "sale"] == ["approved"]
