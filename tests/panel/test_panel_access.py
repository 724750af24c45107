"""Access: every URL walked logged out, the login form and its throttling, the kiosk embed behind its PIN."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import get_resolver

from core.events import record_event
from core.models import Event
from tests.panel_support import HX, PIN, fake_completed_order, fake_shift
from tests.urlwalk import concrete, walk

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def objects(venue, manager):
    kiosk = venue.kiosks["K1"]
    shift = fake_shift(kiosk)
    order = fake_completed_order(kiosk, shift)
    job = record_event("panel.check", kiosk=kiosk, user=manager, data={"job": "check"})
    return {
        "code": "K1", "order_id": str(order.pk), "shift_id": str(shift.pk), "job_id": str(job.pk),
        "document_id": str(order.sell_operation.document.pk), "operation_id": str(order.card_sale.pk),
        # the admin's own converters
        "object_id": "1", "app_label": "nekassir", "content_type_id": "1", "url": "x", "id": str(order.pk),
        "path": "x", "rest": "",
    }


def test_every_url_needs_a_login_except_the_known_public_ones(objects):
    client = Client()
    checked = 0
    for route, name in walk(get_resolver().url_patterns):
        url = concrete(route, objects)
        for method in ("get", "post"):
            answer = getattr(client, method)(url)
            where = f"{method.upper()} {url} ({name})"
            if url.startswith("/api/"):
                assert answer["Content-Type"].startswith("application/json"), where
                assert answer.status_code != 200 or url.endswith("openapi.json"), where
            elif url.startswith("/admin/") and name in ("login", "logout"):
                assert answer.status_code in (200, 302, 405), where
            elif url.startswith("/admin/"):
                assert answer.status_code in (302, 404), where
                if answer.status_code == 302:
                    assert answer["Location"].startswith("/admin/login/"), where
            elif name in ("login", "health"):
                assert answer.status_code in (200, 405), where
            elif name == "logout":
                assert answer.status_code in (302, 405), where  # POST only; nothing to protect
            elif name == "embed_home":
                assert answer.status_code in (200, 403), where  # the PIN page (a POST without a PIN: 403)
            elif name == "embed_lock":
                assert answer.status_code in (302, 405), where  # locking needs no PIN
            elif name.startswith("embed_"):
                assert answer.status_code == 302 and answer["Location"] == "/kiosk/K1/service/", where
            else:
                assert answer.status_code == 302, where
                assert answer["Location"].startswith("/login/?next="), where
            checked += 1
    assert checked > 60


def test_a_fragment_asked_for_after_the_session_ended_sends_the_page_to_login(objects):
    answer = Client().get(f"/jobs/{objects['job_id']}/", headers=HX)
    assert answer.status_code == 204 and answer["HX-Redirect"].startswith("/login/?next=")


def test_the_login_form_logs_a_manager_in(client, manager):
    form = client.get("/login/").content.decode()
    assert 'name="username"' in form and 'name="password"' in form
    answer = client.post("/login/", {"username": "anna", "password": "pass-anna"})
    assert answer.status_code == 302 and answer["Location"] == "/"
    wrong = client.post("/login/", {"username": "anna", "password": "nope"})
    assert "Неверное имя пользователя или пароль" in wrong.content.decode()


def test_logins_are_throttled_per_username_and_address(client, manager, settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        client.post("/login/", {"username": "anna", "password": "wrong"})
    locked = client.post("/login/", {"username": "anna", "password": "pass-anna"})
    assert locked.status_code == 429 and "Вход временно закрыт" in locked.content.decode()
    # Another person on the same venue address is not locked out.
    from tests.panel_support import make_user

    make_user("boris")
    other = Client().post("/login/", {"username": "boris", "password": "pass-boris"})
    assert other.status_code == 302


def test_manager_pages_may_not_be_framed(manager_client, venue):
    assert manager_client.get("/")["X-Frame-Options"] == "DENY"


# --- the kiosk embed ---------------------------------------------------------------------------------
def unlocked(pin: str = PIN) -> Client:
    kiosk = Client()
    answer = kiosk.post("/kiosk/K1/service/", {"pin": pin})
    assert answer.status_code == 302, answer.content.decode()
    return kiosk


def test_the_embed_asks_for_the_pin_and_may_be_framed_only_by_the_kiosk(venue, settings):
    settings.KIOSK_FRAME_ORIGINS = ["http://192.168.1.21:8080"]
    answer = Client().get("/kiosk/K1/service/")
    assert answer.status_code == 200 and 'name="pin"' in answer.content.decode()
    assert "frame-ancestors 'self' http://192.168.1.21:8080" in answer["Content-Security-Policy"].split("; ")
    assert "X-Frame-Options" not in answer
    inside = unlocked().get("/kiosk/K1/service/")
    assert "frame-ancestors 'self' http://192.168.1.21:8080" in inside["Content-Security-Policy"].split("; ")
    assert "X-Frame-Options" not in inside


def test_a_wrong_pin_is_refused_journaled_and_throttled(venue, settings):
    settings.KIOSK_PIN_ATTEMPTS = 3
    kiosk = Client()
    for _ in range(3):
        assert kiosk.post("/kiosk/K1/service/", {"pin": "0000"}).status_code == 403
    assert Event.objects.filter(action="panel.embed.pin_failed", kiosk__code="K1").count() == 3
    refused = kiosk.post("/kiosk/K1/service/", {"pin": PIN})
    assert refused.status_code == 429 and "Слишком много неверных попыток" in refused.content.decode()
    # The other kiosk's PIN page is not affected.
    assert Client().post("/kiosk/K2/service/", {"pin": PIN}).status_code == 302


def test_the_embed_shows_that_kiosk_only(venue, client):
    from tests.panel_support import place

    mine = place(client, venue, "K1")
    other = place(client, venue, "K2")
    kiosk = unlocked()
    home = kiosk.get("/kiosk/K1/service/").content.decode()
    assert 'id="kiosk-K1"' in home and 'id="kiosk-K2"' not in home and mine.number in home
    assert kiosk.get(f"/kiosk/K1/service/orders/{mine.pk}/").status_code == 200
    assert kiosk.get(f"/kiosk/K1/service/orders/{other.pk}/").status_code == 404
    assert kiosk.get(f"/kiosk/K1/service/shifts/{other.shift_id}/").status_code == 404
    assert kiosk.get(f"/kiosk/K2/service/orders/{other.pk}/").status_code == 302  # K2 is not unlocked
    assert kiosk.get(f"/orders/{mine.pk}/").status_code == 302  # and the manager pages need a login


def test_the_embed_runs_kiosk_actions_journaled_as_the_kiosk(venue):
    kiosk = unlocked()
    answer = kiosk.post("/kiosk/K1/service/shift/open/", headers=HX)
    assert 'data-job-state="ok"' in answer.content.decode()
    start = Event.objects.get(action="panel.shift_open")
    assert start.user is None and start.data["via"] == "kiosk_pin" and "сервисное меню киоска" in start.message
    assert "/kiosk/K1/service/jobs/" in answer.content.decode() or 'data-job-state="ok"' in answer.content.decode()


def test_refunds_from_the_embed_are_off_unless_enabled(venue, client, settings):
    from tests.panel_support import place

    order = place(client, venue, "K1")
    kiosk = unlocked()
    assert "Оформить возврат" not in kiosk.get(f"/kiosk/K1/service/orders/{order.pk}/").content.decode()
    assert kiosk.post(f"/kiosk/K1/service/orders/{order.pk}/refund/", {"full": "1", "to_card": "on",
                                                                        "after": "0"}).status_code == 403
    settings.KIOSK_SERVICE_REFUNDS = True
    assert "Оформить возврат" in kiosk.get(f"/kiosk/K1/service/orders/{order.pk}/").content.decode()


def test_the_unlock_expires_and_locking_ends_it(venue, settings):
    kiosk = unlocked()
    assert kiosk.post("/kiosk/K1/service/lock/").status_code == 302
    assert kiosk.get("/kiosk/K1/service/orders/").status_code == 302
    settings.KIOSK_UNLOCK_SECONDS = 30
    kiosk = unlocked()
    session = kiosk.session
    session["kiosk_unlocked"] = {"code": "K1", "until": 0}
    session.save()
    assert kiosk.get("/kiosk/K1/service/orders/").status_code == 302


def test_unknown_objects_are_404_not_500(manager_client, venue):
    assert manager_client.get(f"/orders/{uuid.uuid4()}/").status_code == 404
    assert manager_client.get("/shifts/999999/").status_code == 404
    assert manager_client.get("/jobs/999999/").status_code == 404
    assert manager_client.post("/kiosks/NOPE/shift/open/").status_code == 404
