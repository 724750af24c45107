"""Device passwords are never shown: not in the admin list, not in the change form, not in repr."""

from __future__ import annotations

import pytest

from core.models import Kiosk
from tests.factories import form_data, make_kiosk

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-device-password"


@pytest.fixture
def kiosk():
    return make_kiosk("http://127.0.0.1:16732", atol_username="web", atol_password=SECRET, kkm_password=SECRET)


def test_secrets_are_not_in_admin_pages(admin_client, kiosk):
    listing = admin_client.get("/admin/core/kiosk/")
    change = admin_client.get(f"/admin/core/kiosk/{kiosk.pk}/change/")
    assert listing.status_code == change.status_code == 200
    assert SECRET not in listing.content.decode()
    assert SECRET not in change.content.decode()
    assert SECRET not in repr(kiosk) and SECRET not in str(kiosk)


def test_blank_password_keeps_the_stored_one(admin_client, kiosk):
    answer = admin_client.post(f"/admin/core/kiosk/{kiosk.pk}/change/", form_data(kiosk, name="Новое имя"))
    assert answer.status_code == 302, answer.content.decode()[:3000]
    kiosk.refresh_from_db()
    assert kiosk.name == "Новое имя" and kiosk.atol_password == SECRET


def test_a_password_can_be_changed_and_cleared(admin_client, kiosk):
    admin_client.post(f"/admin/core/kiosk/{kiosk.pk}/change/", form_data(kiosk, atol_password="new"))
    assert Kiosk.objects.get().atol_password == "new"
    admin_client.post(f"/admin/core/kiosk/{kiosk.pk}/change/", form_data(kiosk, clear_kkm_password="on"))
    assert Kiosk.objects.get().kkm_password == ""


def test_the_service_pin_is_set_in_the_admin_and_stored_hashed(admin_client, kiosk):
    answer = admin_client.post(f"/admin/core/kiosk/{kiosk.pk}/change/", form_data(kiosk, service_pin="4321"))
    assert answer.status_code == 302
    kiosk.refresh_from_db()
    assert kiosk.check_service_pin("4321") and "4321" not in kiosk.service_pin_hash
    assert "4321" not in admin_client.get(f"/admin/core/kiosk/{kiosk.pk}/change/").content.decode()
    bad = admin_client.post(f"/admin/core/kiosk/{kiosk.pk}/change/", form_data(kiosk, service_pin="12ab"))
    assert bad.status_code == 200 and "только цифры" in bad.content.decode()
