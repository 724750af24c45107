"""kill -9 of the device cluster at each step of a checkout: the next cluster resumes the order from
its saved ids to the same end state, and nothing is printed, charged or sent twice."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from django_q.conf import Conf

from iiko import emulator as demo
from nekassir.models import IikoAttempt, Order
from payments.models import CardOperation
from tests.processes import start_manage
from tests.venue import build_venue, order_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
DELAY = 1.5  # seconds each device takes: the window in which the cluster is killed


@pytest.fixture
def venue(serve_emulator, tmp_path, monkeypatch):
    from fiscal.atol_emulator import AtolWebServerEmulator
    from iiko.emulator import IikoEmulator
    from payments.dualconnector_emulator import DualConnectorEmulator
    from payments.kkm_emulator import KkmServerEmulator

    # Jobs go to the broker for a real cluster instead of running inline in the test.
    monkeypatch.setattr(Conf, "SYNC", False)
    return build_venue(
        serve_emulator(AtolWebServerEmulator(state_path=str(tmp_path / "a.json"), print_delay=DELAY)),
        serve_emulator(KkmServerEmulator(state_path=str(tmp_path / "k.json"), card_delay=DELAY)),
        serve_emulator(DualConnectorEmulator(state_path=str(tmp_path / "d.json"), card_delay=DELAY)),
        serve_emulator(IikoEmulator(state_path=str(tmp_path / "i.json"), creation_delay=DELAY)),
    )


def cluster():
    return start_manage("devicecluster", Q_DEVICE_WORKERS="2")


def kill(proc) -> str:
    os.killpg(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=10)
    return out + err


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def atol_has(venue, op) -> bool:
    """The register received the task (so the kill lands between the POST and the result)."""
    return httpx.get(f"{venue.atol.url}/api/v2/requests/{op.uuid}", params={"deviceID": "K1"}).status_code == 200


def terminal_has(venue, op) -> bool:
    """The terminal is working on the payment (KKM Server: GetRezult says running or done)."""
    answer = httpx.post(f"{venue.kkm.url}/Execute", json={"Command": "GetRezult", "IdCommand": op.op_id})
    return answer.json().get("Status") in (0, 1)


KILL_POINTS = {
    # name: (card fault, condition under which the cluster is killed)
    "receipt": (None, lambda v, o: o.sell_operation_id and o.sell_operation.state == "sent"
                and atol_has(v, o.sell_operation)),
    "card": (None, lambda v, o: o.card_sale_id and o.card_sale.state == "sent" and terminal_has(v, o.card_sale)),
    "iiko": (None, lambda v, o: IikoAttempt.objects.filter(order=o, state="sent").exists()),
    "annulment": ("decline", lambda v, o: o.annul_operation_id and o.annul_operation.state == "sent"
                  and atol_has(v, o.annul_operation)),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_at_each_step_resumes_to_the_same_end(client, venue, point):
    fault, reached = KILL_POINTS[point]
    if fault:
        venue.kkm.fault(fault)
    body = order_body((demo.PRODUCT_BURGER_ID, "1"))
    first = cluster()
    try:
        answer = client.post("/api/v1/orders", body, content_type="application/json",
                             headers={"Authorization": f"Bearer {venue.tokens['K1']}"})
        assert answer.status_code == 201
        wait_for(lambda: reached(venue, Order.objects.select_related("sell_operation", "card_sale", "annul_operation")
                                 .get(pk=body["id"])))
    except AssertionError:
        raise AssertionError(f"kill point not reached; the cluster said:\n{kill(first)[-3000:]}") from None
    kill(first)
    second = cluster()
    try:
        wait_for(lambda: Order.objects.get(pk=body["id"]).step == Order.Step.DONE)
    except AssertionError:
        raise AssertionError(f"not resumed; the second cluster said:\n{kill(second)[-3000:]}") from None
    kill(second)
    order = Order.objects.get(pk=body["id"])
    receipts = [d["type"] for d in venue.atol.journal() if d["type"] in ("sell", "sellReturn")]
    sales = [e["state"] for e in venue.kkm.journal() if e["operation"] == "sale"]
    if fault:
        assert order.status == Order.Status.CANCELLED
        assert receipts == ["sell", "sellReturn"] and sales == ["declined"]
        assert venue.iiko.journal() == []
    else:
        ops = list(CardOperation.objects.values_list("kind", "state", "resolution", "reason"))
        assert order.status == Order.Status.COMPLETED, (order.status, order.error_message, ops, venue.kkm.journal())
        assert receipts == ["sell"] and sales == ["approved"]
        assert [o["creationStatus"] for o in venue.iiko.journal()] == ["Success"]
