"""«Проверить связь» on the kiosk's admin page: a job that checks the register, the terminal and iiko on the
emulators and says in plain Russian what is wrong with each."""

from __future__ import annotations

import pytest

from core.models import Event, IikoConnection, Kiosk
from nekassir.panel import jobs
from tests.panel_support import check, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_kiosk_settings_page_has_the_button(support, venue):
    kiosk = venue.kiosks["K1"]
    page = support.get(f"/admin/core/kiosk/{kiosk.pk}/change/").content.decode()
    assert 'action="/kiosks/K1/connection/"' in page and "Проверить связь" in page
    assert 'name="csrfmiddlewaretoken"' in page


def test_a_healthy_kiosk_is_in_order_on_every_device(support, venue):
    outcome, html = check(support, venue.kiosks["K1"])
    assert outcome.action == jobs.DONE and outcome.message == "Связь в порядке"
    assert [(d["device"], d["state"]) for d in outcome.data["devices"]] == [
        ("ККТ", "ok"), ("Терминал", "ok"), ("iiko", "ok")]
    assert 'data-testid="connection"' in html and "<strong>Терминал</strong>: В порядке: KKM Server" in html
    assert [d for d in venue.kkm.journal() if d["operation"] == "check"]  # it really asked the terminal


def test_a_broken_kiosk_names_each_problem_and_what_to_do(support, venue):
    venue.atol.control.post("/_emulator/paper", json={"present": False, "device": "K2"}).raise_for_status()
    Kiosk.objects.filter(code="K2").update(dc_url="http://127.0.0.1:9/")
    IikoConnection.objects.update(api_login="wrong-login")
    outcome, html = check(support, venue.kiosks["K2"])
    assert outcome.action == jobs.FAILED and outcome.message == "Есть проблемы: ККТ, Терминал, iiko"
    lines = {d["device"]: d["text"] for d in outcome.data["devices"]}
    assert lines["ККТ"].startswith("В ККТ нет бумаги.")
    assert "Нет связи с DualConnector по адресу http://127.0.0.1:9/" in lines["Терминал"]
    assert "проверьте, что служба запущена" in lines["Терминал"].lower()
    assert "iiko не принял ключ API" in lines["iiko"]
    assert all(text in html for text in lines.values())


def test_a_wrong_register_address_says_the_web_server_does_not_answer(support, venue):
    Kiosk.objects.filter(code="K1").update(atol_url="http://127.0.0.1:9")
    outcome, _ = check(support, venue.kiosks["K1"])
    register = outcome.data["devices"][0]
    assert register["state"] == "bad"
    assert register["text"].startswith("ATOL Web Server по адресу http://127.0.0.1:9 не отвечает")
    assert "ATOL Web Server запущен" in register["text"]


def test_only_who_may_change_kiosks_may_check(client, venue):
    client.force_login(make_user("cashier", "manage_shift", "print_xreport"))
    assert client.post("/kiosks/K1/connection/").status_code == 403
    assert not Event.objects.filter(action="panel.connection").exists()
    client.force_login(make_user("settings-only", "change_kiosk"))
    assert client.post("/kiosks/K1/connection/").status_code == 403  # a device job: fiscal.check_device too
    client.force_login(make_user("support", "change_kiosk", "check_device"))
    assert client.post("/kiosks/K1/connection/").status_code == 302
