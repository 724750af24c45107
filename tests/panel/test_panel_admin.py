"""The admin for support staff: orders read-mostly, secrets write-only, token hashes never shown."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from core.models import IikoConnection, KioskToken
from tests.panel_support import fake_completed_order, fake_shift

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("root", password="x"))
    return client


def test_order_pages_render_read_only_with_lines(admin_client, venue):
    order = fake_completed_order(venue.kiosks["K1"], fake_shift(venue.kiosks["K1"]))
    assert admin_client.get("/admin/nekassir/order/").status_code == 200
    page = admin_client.get(f"/admin/nekassir/order/{order.pk}/change/").content.decode()
    assert "Бургер" in page and 'name="phone"' in page and 'name="total"' not in page
    for url in ("/admin/nekassir/iikoattempt/", "/admin/nekassir/refund/", "/admin/core/kiosktoken/",
                "/admin/admin/logentry/", "/admin/core/iikoconnection/"):
        assert admin_client.get(url).status_code == 200, url


def test_token_hashes_and_iiko_secrets_are_never_shown(admin_client, venue):
    token = KioskToken.objects.filter(kiosk__code="K1").first()
    page = admin_client.get(f"/admin/core/kiosktoken/{token.pk}/change/").content.decode()
    assert token.token_hash not in page and token.prefix in page
    connection = IikoConnection.objects.first()
    page = admin_client.get(f"/admin/core/iikoconnection/{connection.pk}/change/").content.decode()
    assert connection.api_login not in page


def test_admin_changes_are_listed_on_the_journal_page(admin_client, venue):
    connection = IikoConnection.objects.first()
    form = admin_client.get(f"/admin/core/iikoconnection/{connection.pk}/change/")
    assert form.status_code == 200
    admin_client.post(f"/admin/core/iikoconnection/{connection.pk}/change/", {
        "name": "iiko зала", "base_url": connection.base_url, "api_login": "", "app_id": "", "client_secret": "",
        "api_key": "",
    })
    connection.refresh_from_db()
    assert connection.name == "iiko зала" and connection.api_login  # the secret was kept
    journal = admin_client.get("/journal/").content.decode()
    assert "iiko зала" in journal and "root" in journal
