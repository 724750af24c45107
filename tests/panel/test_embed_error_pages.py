"""Issue 14, «Why»: the error pages seen from the kiosk embed (a wrong order id, another kiosk's shift, a refund
while refunds are off on kiosks, a refused form, a server error) are drawn for the kiosk's portrait touch screen
like the embed's own pages: the body class ``embed`` and static/panel/embed.css (18 px text, 48 px and larger
controls; measured in Chromium by tests/browser/test_kiosk_screen.py), with the big «Вернуться в сервисное меню».
A manager's error pages keep the panel's own look."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from fiscal.models import Shift
from nekassir.models import Order
from nekassir.panel.access import Scope
from tests.panel_support import PIN, place

pytestmark = pytest.mark.django_db(transaction=True)

EMBED_CSS = re.compile(r'<link rel="stylesheet" href="/static/panel/embed\.css[^"]*">')


def embed_client(code: str = "K1") -> Client:
    kiosk = Client(raise_request_exception=False)
    assert kiosk.post(f"/kiosk/{code}/service/", {"pin": PIN}).status_code == 302
    return kiosk


def body_classes(html: str) -> set[str]:
    found = re.search(r'<body class="([^"]*)"', html)
    assert found, html[:300]
    return set(found.group(1).split())


def assert_embed_page(html: str, testid: str) -> None:
    assert {"embed", "error-page"} <= body_classes(html), body_classes(html)
    assert EMBED_CSS.search(html), "embed.css"
    assert f'data-testid="{testid}"' in html
    assert re.search(r'class="btn primary big" href="/kiosk/K1/service/" data-testid="way-back">'
                     r"Вернуться в сервисное меню<", html)


def test_the_embeds_404_pages_are_drawn_for_the_kiosks_screen(venue):
    kiosk = embed_client()
    other = Shift.objects.create(kiosk=venue.kiosks["K2"], fn_number="9999078900000002", number=1,
                                 opened_at=timezone.now(), expires_at=timezone.now() + timedelta(hours=24))
    for url in (f"/kiosk/K1/service/orders/{uuid.uuid4()}/", f"/kiosk/K1/service/shifts/{other.pk}/",
                "/kiosk/K1/service/no-such-page/"):
        answer = kiosk.get(url)
        assert answer.status_code == 404, url
        assert_embed_page(answer.content.decode(), "not-found")


def test_the_embeds_403_pages_are_drawn_for_the_kiosks_screen(client, venue, settings):
    settings.KIOSK_SERVICE_REFUNDS = False
    order = place(client, venue)
    assert order.status == Order.Status.COMPLETED
    kiosk = embed_client()
    refused = kiosk.post(f"/kiosk/K1/service/orders/{order.pk}/refund/", {"full": "1", "to_card": "on", "after": "0"})
    assert refused.status_code == 403
    html = refused.content.decode()
    assert_embed_page(html, "forbidden")
    assert 'data-testid="refunds-off"' in html
    kiosk.enforce_csrf_checks = kiosk.handler.enforce_csrf_checks = True
    stale = kiosk.post(f"/kiosk/K1/service/orders/{order.pk}/resend/")
    assert stale.status_code == 403
    assert_embed_page(stale.content.decode(), "forbidden")


def test_the_embeds_500_page_is_drawn_for_the_kiosks_screen(venue, monkeypatch):
    def broken(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(Scope, "orders", broken)
    answer = embed_client().get("/kiosk/K1/service/orders/")
    assert answer.status_code == 500
    assert_embed_page(answer.content.decode(), "server-error")


def test_a_managers_error_pages_keep_the_panels_look(manager_client, venue):
    for url in (f"/orders/{uuid.uuid4()}/", "/no-such-page/"):
        html = manager_client.get(url).content.decode()
        assert "embed" not in body_classes(html) and not EMBED_CSS.search(html), url
        assert 'data-testid="way-back"' in html and "Вернуться в сервисное меню" not in html, url
