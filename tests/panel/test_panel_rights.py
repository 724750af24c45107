"""Reading rights (issue 16 item 2): every panel page needs ``nekassir.view_order``; an account without it
gets a Russian 403 page with a way out; guests' phones and e-mails are masked except to refund holders."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django_q.conf import Conf
from django_q.models import OrmQ

from core.events import record_event
from core.models import Event, Kiosk
from iiko import emulator as demo
from nekassir.models import Refund
from tests.panel_support import PIN, fake_completed_order, fake_shift, make_user
from tests.urlwalk import concrete, walk
from tests.venue import order_body

pytestmark = pytest.mark.django_db(transaction=True)

PHONE, EMAIL = "+79161234567", "guest@example.com"
MASKED_PHONE, MASKED_EMAIL = "+7 *** ***-**-67", "g***@example.com"


@pytest.fixture
def objects(venue):
    kiosk = venue.kiosks["K1"]
    shift = fake_shift(kiosk)
    order = fake_completed_order(kiosk, shift)
    job = record_event("panel.check", kiosk=kiosk, data={"job": "check"})
    return {"code": "K1", "order_id": str(order.pk), "shift_id": str(shift.pk), "job_id": str(job.pk),
            "document_id": str(order.sell_operation.document.pk), "operation_id": str(order.card_sale.pk)}


def _manager_urls(values: dict[str, str]) -> list[str]:
    """Every manager page of the panel (the embed's own pages are behind the kiosk's PIN, not a login)."""
    from nekassir.panel import urls

    return [concrete(route, values) for route, name in walk(urls.urlpatterns) if not name.startswith("embed_")]


def _effects() -> tuple[int, int, int]:
    return Event.objects.count(), OrmQ.objects.count(), Refund.objects.count()


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_account_without_the_reading_right_gets_a_russian_403_on_every_panel_page(objects, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)  # were anything started, it would be queued, never run
    nobody = _client(User.objects.create_user("no-groups", password="x"))
    checked = 0
    for url in _manager_urls(objects):
        for method in ("get", "post"):
            before = _effects()
            answer = getattr(nobody, method)(url)
            where = f"{method.upper()} {url}"
            assert answer.status_code == 403, f"{where}: {answer.status_code}"
            html = answer.content.decode()
            assert "Недостаточно прав" in html and 'lang="ru"' in html, where
            assert 'action="/logout/"' in html, f"{where}: no way out of the 403 page"
            assert "Forbidden" not in html, where
            assert _effects() == before, f"{where} changed something"
            checked += 1
    assert checked >= 40


def test_the_reading_right_alone_opens_every_page_and_a_group_that_has_it_too(objects):
    reader = User.objects.create_user("reader", password="x")
    reader.user_permissions.add(Permission.objects.get(codename="view_order", content_type__app_label="nekassir"))
    managers = Group.objects.create(name="Менеджеры смены")
    managers.permissions.add(Permission.objects.get(codename="view_order", content_type__app_label="nekassir"))
    member = User.objects.create_user("member", password="x")
    member.groups.add(managers)
    pages = ["/", "/orders/", f"/orders/{objects['order_id']}/", f"/shifts/{objects['shift_id']}/",
             "/kiosks/K1/shifts/", "/journal/", "/alerts/", f"/jobs/{objects['job_id']}/"]
    for user in (reader, member):
        client = _client(user)
        for url in pages:
            assert client.get(url, follow=True).status_code == 200, (user.username, url)
    # Reading is not acting: the actions keep their own permissions.
    assert _client(reader).post("/kiosks/K1/shift/open/").status_code == 403


def test_a_refused_action_of_a_reader_is_the_same_russian_page_with_a_way_back(objects):
    reader = _client(make_user("reader-2"))
    answer = reader.post(f"/orders/{objects['order_id']}/refund/", {"full": "1", "to_card": "on", "after": "0"})
    html = answer.content.decode()
    assert answer.status_code == 403 and "Недостаточно прав" in html and 'href="/"' in html


def test_support_staff_check_a_kiosk_and_follow_the_check_but_read_nothing_else(objects, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)
    support = User.objects.create_user("support-only", password="x")
    support.user_permissions.add(*Permission.objects.filter(codename__in=["change_kiosk", "check_device"]))
    client = _client(support)
    started = client.post("/kiosks/K1/connection/")
    assert started.status_code == 302
    assert client.get(started["Location"]).status_code == 200  # its own check's job page
    assert client.get(f"/jobs/{objects['job_id']}/").status_code == 404  # not another kind of job
    for url in ("/", "/orders/", f"/orders/{objects['order_id']}/", "/journal/"):
        assert client.get(url).status_code == 403, url


# --- guests' contacts -------------------------------------------------------------------------------
@pytest.fixture
def guest_order(client, venue):
    """A pickup order (deliveries/create carries the phone to iiko) with an e-mail for the receipt."""
    Kiosk.objects.filter(code="K1").update(iiko_send_as_delivery=True)
    body = order_body((demo.PRODUCT_BURGER_ID, "1"), phone=PHONE, email_or_phone=EMAIL)
    answer = client.post("/api/v1/orders", body, content_type="application/json",
                         headers={"Authorization": f"Bearer {venue.tokens['K1']}"})
    assert answer.status_code == 201, answer.content
    return body["id"]


def test_guests_contacts_are_masked_without_the_refund_permission(guest_order):
    html = _client(make_user("looker")).get(f"/orders/{guest_order}/").content.decode()
    assert MASKED_PHONE in html and MASKED_EMAIL in html
    assert PHONE not in html and EMAIL not in html and "9161234567" not in html  # nor in the iiko request shown


def test_guests_contacts_are_shown_in_full_to_who_may_refund(guest_order):
    html = _client(make_user("refunder", "refund_order")).get(f"/orders/{guest_order}/").content.decode()
    assert PHONE in html and EMAIL in html and MASKED_PHONE not in html


def test_the_kiosk_embed_masks_contacts_unless_it_may_refund(guest_order, settings):
    embed = Client()
    assert embed.post("/kiosk/K1/service/", {"pin": PIN}).status_code == 302
    html = embed.get(f"/kiosk/K1/service/orders/{guest_order}/").content.decode()
    assert MASKED_PHONE in html and PHONE not in html and EMAIL not in html
    settings.KIOSK_SERVICE_REFUNDS = True
    assert PHONE in embed.get(f"/kiosk/K1/service/orders/{guest_order}/").content.decode()


@pytest.mark.parametrize(("raw", "masked"), [
    ("+79161234567", "+7 *** ***-**-67"), ("89161234567", "+7 *** ***-**-67"),
    ("guest@example.com", "g***@example.com"),
    ("a@b.ru", "a***@b.ru"), ("", ""), ("12", "***"),
])
def test_the_mask(raw, masked):
    from nekassir.panel.masking import mask_contact

    assert mask_contact(raw) == masked


def test_the_demo_manager_reads_the_panel(db):
    from nekassir.demo import seed_demo

    credentials = seed_demo()["manager"]
    manager = User.objects.get(username=credentials["username"])
    assert manager.has_perm("nekassir.view_order") and manager.has_perm("nekassir.refund_order")


def test_a_refusal_inside_the_kiosk_embed_leads_back_to_its_service_menu(objects):
    embed = Client()
    assert embed.post("/kiosk/K1/service/", {"pin": PIN}).status_code == 302
    answer = embed.post(f"/kiosk/K1/service/orders/{objects['order_id']}/refund/", {"full": "1", "to_card": "on"})
    html = answer.content.decode()
    assert answer.status_code == 403 and "Недостаточно прав" in html
    assert 'href="/kiosk/K1/service/"' in html and 'action="/logout/"' not in html
