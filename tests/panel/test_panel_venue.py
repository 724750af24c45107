"""The venue page: KKT blocks, and the kiosk actions (open, X report, close, settlement, check) as jobs."""

from __future__ import annotations

import re

import pytest

from core.models import Event
from fiscal.models import Shift
from nekassir.panel import jobs
from tests.panel_support import HX, place

pytestmark = pytest.mark.django_db(transaction=True)


def job_id(response) -> int:
    return int(re.search(r"job=(\d+)", response["Location"]).group(1))


def test_the_venue_page_shows_every_kiosk_with_a_register(manager_client, venue):
    page = manager_client.get("/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="kiosk-K1"' in html and 'id="kiosk-K2"' in html
    assert "Смена закрыта" in html and "Открыть смену" in html


def test_opening_a_shift_is_a_job_audited_with_the_manager(manager_client, manager, venue):
    answer = manager_client.post("/kiosks/K1/shift/open/")
    assert answer.status_code == 302 and answer["Location"].startswith("/?job=")
    start = Event.objects.get(pk=job_id(answer))
    assert start.action == "panel.shift_open" and start.user == manager and start.kiosk.code == "K1"
    outcome = Event.objects.get(object_ref=f"job:{start.pk}")
    assert outcome.action == jobs.DONE and outcome.user == manager
    shift = Shift.objects.get(kiosk__code="K1", state="open")
    assert Event.objects.filter(action="fiscal.shift.opened", user=manager, object_ref=f"shift:{shift.pk}").exists()
    page = manager_client.get(answer["Location"])
    assert f"Смена №{shift.number} открыта" in page.content.decode()
    assert 'data-job-state="ok"' in page.content.decode()


def test_an_htmx_action_answers_with_its_job_fragment_and_refreshes_the_block(manager_client, venue):
    answer = manager_client.post("/kiosks/K1/shift/open/", headers=HX)
    html = answer.content.decode()
    assert answer.status_code == 200
    assert 'data-job-kind="shift_open"' in html and 'data-job-state="ok"' in html
    assert 'id="kiosk-K1-state" class="kiosk-state" hx-swap-oob="true"' in html
    assert "Закрыть смену" in html  # the refreshed block offers the next step


def test_polling_a_finished_job_stops_with_286(manager_client, venue):
    answer = manager_client.post("/kiosks/K1/shift/open/")
    poll = manager_client.get(f"/jobs/{job_id(answer)}/", headers=HX)
    assert poll.status_code == 286
    assert 'data-job-state="ok"' in poll.content.decode()
    running = manager_client.get(f"/jobs/{job_id(answer)}/")  # without htmx: a page
    assert running.status_code == 200 and "<html" in running.content.decode()


def test_a_running_job_keeps_polling(manager_client, manager, venue):
    from core.events import record_event

    start = record_event("panel.shift_close", kiosk=venue.kiosks["K1"], user=manager, data={"job": "shift_close"})
    poll = manager_client.get(f"/jobs/{start.pk}/", headers=HX)
    assert poll.status_code == 200
    assert 'hx-trigger="every 1s"' in poll.content.decode() and "Выполняется" in poll.content.decode()
    assert f'hx-get="/jobs/{start.pk}/"' in manager_client.get("/").content.decode()


def test_x_report_only_while_the_shift_is_open(manager_client, venue):
    closed = manager_client.post("/kiosks/K1/xreport/", headers=HX).content.decode()
    assert 'data-job-state="failed"' in closed and "только при открытой смене" in closed
    manager_client.post("/kiosks/K1/shift/open/")
    opened = manager_client.post("/kiosks/K1/xreport/", headers=HX).content.decode()
    assert 'data-job-state="ok"' in opened and "X-отчёт напечатан" in opened
    assert [d for d in venue.atol.journal() if d["type"] == "reportX" and d["device"] == "K1"]


def test_closing_shows_the_settlement_slip_and_the_closing_report(client, manager_client, venue):
    manager_client.post("/kiosks/K1/shift/open/")
    order = place(client, venue)
    answer = manager_client.post("/kiosks/K1/shift/close/", headers=HX)
    html = answer.content.decode()
    shift = Shift.objects.get(kiosk__code="K1", number=order.shift.number)
    assert shift.state == "closed"
    assert 'data-testid="closing-report"' in html and 'data-testid="settlement-slip"' in html
    closing = shift.documents.get(doc_type="closeShift")
    assert f'data-testid="closing-fd">{closing.fd_number}<' in html
    assert closing.fpd in html
    assert "Чеков за смену" in html and "сходится" in html
    assert shift.settlements.get().slip.splitlines()[0] in html
    start = Event.objects.filter(action="panel.shift_close").get()
    assert start.object_ref == f"shift:{shift.pk}"


def test_settlement_and_check_are_jobs_too(manager_client, venue):
    settled = manager_client.post("/kiosks/K1/settle/", headers=HX).content.decode()
    assert 'data-job-state="ok"' in settled and 'data-testid="settlement-slip"' in settled
    checked = manager_client.post("/kiosks/K1/check/", headers=HX).content.decode()
    assert 'data-job-kind="check"' in checked
    assert Event.objects.filter(action=jobs.CHECKED, kiosk__code="K1").exists()
    assert "Проверка" in manager_client.get("/").content.decode()


def test_closing_refuses_while_a_payment_holds_the_kiosk(manager_client, venue, settings):
    import threading

    from django.db import connections

    from core.locks import device_lock, sale_lock_key

    settings.CLOSE_WAIT_FOR_SALE = 0.2
    manager_client.post("/kiosks/K1/shift/open/")
    held, done = threading.Event(), threading.Event()

    def payment_in_progress():
        try:
            with device_lock(sale_lock_key(venue.kiosks["K1"]), purpose="оплата заказа K1-001"):
                held.set()
                done.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=payment_in_progress)
    thread.start()
    try:
        assert held.wait(5)
        html = manager_client.post("/kiosks/K1/shift/close/", headers=HX).content.decode()
    finally:
        done.set()
        thread.join()
    assert "идёт оплата заказа" in html
    assert Shift.objects.get(kiosk__code="K1").state == "open"


def test_a_user_without_the_permission_cannot_open_or_close(client, viewer, venue):
    client.force_login(viewer)
    assert client.post("/kiosks/K1/shift/open/").status_code == 403
    assert client.post("/kiosks/K1/shift/close/").status_code == 403
    assert not Event.objects.filter(action__startswith="panel.shift").exists()
    page = client.get("/").content.decode()
    assert "Открыть смену" not in page


def test_an_alert_names_an_order_not_delivered_to_iiko(client, manager_client, venue, settings):
    venue.iiko.fault("creation_timeout", count=settings.IIKO_MAX_ATTEMPTS)
    order = place(client, venue)
    order.refresh_from_db()
    assert order.status == "not_delivered"
    html = manager_client.get("/").content.decode()
    assert f"Заказ {order.number}: не передан в iiko" in html


def test_the_venue_page_refreshes_every_kiosk_block_with_one_request(
        manager_client, venue, django_assert_max_num_queries):
    """Issue 15: 30 kiosk blocks each polling every 20 s, in phase, put ~1.2 s of web CPU at once in front of
    the kiosks' status GETs. The page holds one poller for all blocks; its answer swaps each block out of band."""
    html = manager_client.get("/").content.decode()
    assert html.count('hx-trigger="every 20s"') == 1
    assert 'hx-get="/blocks/" hx-trigger="every 20s" hx-swap="none"' in html
    assert re.search(r'id="kiosk-K1-state"[^>]*hx-get', html) is None  # the blocks do not poll one by one
    with django_assert_max_num_queries(14):  # a fixed number for all kiosks (kiosk_blocks), not per kiosk
        answer = manager_client.get("/blocks/", headers=HX)
    states = answer.content.decode()
    assert answer.status_code == 200
    for code in ("K1", "K2"):
        assert f'id="kiosk-{code}-state" class="kiosk-state" hx-swap-oob="true"' in states
    assert "Смена закрыта" in states and "Открыть смену" in states


def test_the_kiosk_embed_refreshes_only_its_own_block(client, venue):
    from tests.panel_support import PIN

    assert client.post("/kiosk/K1/service/", {"pin": PIN}).status_code == 302
    html = client.get("/kiosk/K1/service/").content.decode()
    assert 'hx-get="/kiosk/K1/service/blocks/" hx-trigger="every 20s" hx-swap="none"' in html
    states = client.get("/kiosk/K1/service/blocks/", headers=HX).content.decode()
    assert 'id="kiosk-K1-state"' in states and 'id="kiosk-K2-state"' not in states
