"""The Content-Security-Policy of every page (issue 14, item 8), sent by django-csp 4 (``CONTENT_SECURITY_POLICY`` in
nekassir/settings.py): scripts and styles only from our own static files, nothing framed but the kiosk embed,
which its kiosk origins (``KIOSK_FRAME_ORIGINS``) may frame. Manager pages, the login form, the admin and the error
pages (404, 403, CSRF, 500) carry the panel's policy; the embed's pages, and its error pages, the embed's.

The directives are compared as a whole (django-csp writes them in no fixed order): nothing more, nothing less.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

from nekassir.panel.access import Scope
from tests.panel_support import PIN, make_user

pytestmark = pytest.mark.django_db(transaction=True)

KIOSK_ORIGIN = "http://192.168.1.21:8080"
PANEL = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
EMBED = {**PANEL, "frame-ancestors": ["'self'", KIOSK_ORIGIN]}
TEMPLATES = Path(django_settings.BASE_DIR) / "templates"


def policy(answer) -> dict[str, list[str]]:
    """The response's policy as {directive: sources}; one header, each directive once."""
    header = answer.headers.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {answer.status_code} {answer.get('Location', '')}"
    directives = [part.split() for part in header.split(";") if part.strip()]
    parsed = {name: sources for name, *sources in directives}
    assert len(parsed) == len(directives), header
    return parsed


def assert_panel(answer) -> None:
    assert policy(answer) == PANEL
    assert answer["X-Frame-Options"] == "DENY"


def assert_embed(answer) -> None:
    assert policy(answer) == EMBED
    assert "X-Frame-Options" not in answer  # frame-ancestors says who may frame it


@pytest.fixture
def kiosk_origin(settings):
    settings.KIOSK_FRAME_ORIGINS = [KIOSK_ORIGIN]


def unlocked() -> Client:
    kiosk = Client()
    assert kiosk.post("/kiosk/K1/service/", {"pin": PIN}).status_code == 302
    return kiosk


def test_manager_pages_and_the_login_form_carry_the_panel_policy(venue, manager_client, kiosk_origin):
    for url in ("/", "/orders/", "/journal/", "/reports/", "/kiosks/K1/shifts/"):
        answer = manager_client.get(url, follow=True)
        assert answer.status_code == 200, url
        assert_panel(answer)
    login = Client().get("/login/")
    assert login.status_code == 200
    assert_panel(login)
    assert_panel(Client().get("/"))  # the redirect to the login form too


def test_the_admin_carries_the_panel_policy(venue, support, kiosk_origin):
    for url in ("/admin/", f"/admin/core/kiosk/{venue.kiosks['K1'].pk}/change/"):
        answer = support.get(url)
        assert answer.status_code == 200, url
        assert_panel(answer)


def test_the_embed_may_be_framed_by_its_kiosk_origins_only(venue, kiosk_origin):
    pin_page = Client().get("/kiosk/K1/service/")
    assert pin_page.status_code == 200 and 'name="pin"' in pin_page.content.decode()
    assert_embed(pin_page)
    assert_embed(Client().get("/kiosk/K1/service/orders/"))  # locked: the redirect to the PIN page
    kiosk = Client()
    answer = kiosk.post("/kiosk/K1/service/", {"pin": PIN})
    assert answer.status_code == 302
    assert_embed(answer)
    for url in ("/kiosk/K1/service/", "/kiosk/K1/service/orders/", "/kiosk/K1/service/shifts/"):
        answer = kiosk.get(url)
        assert answer.status_code == 200, url
        assert_embed(answer)
    assert_embed(kiosk.post("/kiosk/K1/service/lock/", follow=False))


def test_without_kiosk_origins_only_the_panel_itself_may_frame_the_embed(venue, settings):
    settings.KIOSK_FRAME_ORIGINS = []
    assert policy(Client().get("/kiosk/K1/service/")) == {**PANEL, "frame-ancestors": ["'self'"]}


def test_error_pages_carry_the_panel_policy(venue, manager, manager_client, kiosk_origin, monkeypatch):
    missing = manager_client.get(f"/orders/{uuid.uuid4()}/")
    assert missing.status_code == 404
    assert_panel(missing)
    assert_panel(Client().get("/no-such-page/"))
    refused = Client()
    refused.force_login(make_user("nobody", reads=False))
    forbidden = refused.get("/orders/")
    assert forbidden.status_code == 403
    assert_panel(forbidden)
    csrf = Client(enforce_csrf_checks=True).post("/login/", {"username": "x", "password": "y"})
    assert csrf.status_code == 403 and "Форма не принята" in csrf.content.decode()
    assert_panel(csrf)

    def broken(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(Scope, "orders", broken)
    failing = Client(raise_request_exception=False)
    failing.force_login(manager)
    error = failing.get("/orders/")
    assert error.status_code == 500
    assert_panel(error)


def test_the_embed_error_pages_may_be_framed_by_the_kiosk(venue, kiosk_origin, monkeypatch, settings):
    """The Russian error pages with «Вернуться в сервисное меню» are shown inside the kiosk's frame: a page the
    frame may not show (X-Frame-Options: DENY) would leave the kiosk screen blank, with no way back."""
    kiosk = unlocked()
    missing = kiosk.get(f"/kiosk/K1/service/orders/{uuid.uuid4()}/")
    assert missing.status_code == 404 and "Вернуться в сервисное меню" in missing.content.decode()
    assert_embed(missing)
    assert_embed(Client().get("/kiosk/K1/service/no-such-page/"))
    settings.KIOSK_SERVICE_REFUNDS = False
    refund = kiosk.post(f"/kiosk/K1/service/orders/{uuid.uuid4()}/refund/", {"full": "1"})
    assert refund.status_code in (403, 404)
    assert_embed(refund)
    csrf_kiosk = unlocked()
    csrf_kiosk.handler.enforce_csrf_checks = True  # a form without its token, as after a long pause
    csrf = csrf_kiosk.post("/kiosk/K1/service/shift/open/")
    assert csrf.status_code == 403 and "Форма не принята" in csrf.content.decode()
    assert_embed(csrf)

    def broken(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(Scope, "orders", broken)
    kiosk.raise_request_exception = False
    error = kiosk.get("/kiosk/K1/service/orders/")
    assert error.status_code == 500 and "Вернуться в сервисное меню" in error.content.decode()
    assert_embed(error)


def test_no_template_has_an_inline_script_style_or_event_handler():
    """What the policy would refuse in the browser, found in the source: <script> without src, <style>, style=,
    on…= handlers and javascript: links (the browser test finds what a template tag or a script would add)."""
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|javascript:", re.IGNORECASE)
    found = [f"{path.relative_to(TEMPLATES)}: {match.group(0)}"
             for path in sorted(TEMPLATES.rglob("*.html")) for match in inline.finditer(path.read_text())]
    assert found == []
