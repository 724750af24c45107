"""Security (issue 6): CSRF on every panel POST, the permission behind every action, secrets never in logs,
pages or admin lists, the kiosk embed's framing, and ``check --deploy`` with production settings."""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import sys
import uuid

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_q.conf import Conf
from django_q.models import OrmQ

import nekassir.panel.admin_registrations  # noqa: F401  (the service menu's admin pages)
from core.models import Event
from iiko import emulator as demo
from nekassir.models import Order, Refund
from tests.panel_support import PIN, fake_completed_order, fake_shift, make_user
from tests.processes import ROOT
from tests.urlwalk import concrete, walk
from tests.venue import build_venue, order_body, place_order

pytestmark = pytest.mark.django_db(transaction=True)

ATOL_USER, ATOL_PASSWORD = "kassa", "atol-" + secrets.token_hex(8)
KKM_USER, KKM_PASSWORD = "kkm", "kkm-" + secrets.token_hex(8)


@pytest.fixture
def world(serve_emulator, tmp_path, monkeypatch, settings):
    """Kiosks whose register and terminal need passwords, a shift and a paid order, a manager."""
    from fiscal.atol_emulator import AtolWebServerEmulator
    from iiko.emulator import IikoEmulator
    from payments.dualconnector_emulator import DualConnectorEmulator
    from payments.kkm_emulator import KkmServerEmulator

    settings.AXES_ENABLED = False
    atol = serve_emulator(AtolWebServerEmulator(state_path=str(tmp_path / "a.json"), print_delay=0.01,
                                                users={ATOL_USER: ATOL_PASSWORD}))
    kkm = serve_emulator(KkmServerEmulator(state_path=str(tmp_path / "k.json"), users={KKM_USER: KKM_PASSWORD}))
    dc = serve_emulator(DualConnectorEmulator(state_path=str(tmp_path / "d.json")))
    iiko = serve_emulator(IikoEmulator(state_path=str(tmp_path / "i.json"), creation_delay=0.01))
    venue = build_venue(atol, kkm, dc, iiko)
    for kiosk in venue.kiosks.values():
        kiosk.atol_username, kiosk.atol_password = ATOL_USER, ATOL_PASSWORD
        kiosk.kkm_username, kiosk.kkm_password = KKM_USER, KKM_PASSWORD
        kiosk.save()
        kiosk.set_service_pin(PIN)
    return venue


def _post_order(client, venue, kiosk="K1", *lines):
    return place_order(client, venue, *lines, kiosk=kiosk)


@pytest.fixture
def objects(world):
    kiosk = world.kiosks["K1"]
    shift = fake_shift(kiosk, number=99)
    order = fake_completed_order(kiosk, shift)
    job = Event.objects.create(action="panel.check", kiosk=kiosk, data={"job": "check"})
    # Finished: a check still running would be the answer to the matrix's own «Проверить ККТ» (one per kiosk).
    Event.objects.create(action="panel.job.done", kiosk=kiosk, object_ref=f"job:{job.pk}", message="ККТ в порядке")
    return {"code": "K1", "order_id": str(order.pk), "shift_id": str(shift.pk), "job_id": str(job.pk),
            "document_id": str(order.sell_operation.document.pk), "operation_id": str(order.card_sale.pk),
            "order": order}


def _panel_urls(values: dict[str, str]) -> list[str]:
    from nekassir.panel import urls

    return [concrete(route, values) for route, _ in walk(urls.urlpatterns)]


def _effects() -> tuple[int, int, int]:
    return Event.objects.count(), OrmQ.objects.count(), Refund.objects.count()


# --- CSRF ------------------------------------------------------------------------------------------
def test_every_panel_post_without_a_csrf_token_is_refused_and_changes_nothing(objects, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)
    manager = make_user("csrf-manager", "refund_order", "manage_shift", "print_xreport", "print_copy", "change_order")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(manager)
    embed = Client(enforce_csrf_checks=True)
    pin_page = embed.get("/kiosk/K1/service/")
    token = pin_page.cookies["csrftoken"].value
    assert embed.post("/kiosk/K1/service/", {"pin": PIN}).status_code == 403  # no token: not even the PIN
    assert embed.post("/kiosk/K1/service/", {"pin": PIN, "csrfmiddlewaretoken": token}).status_code == 302
    form = {"full": "1", "to_card": "on", "after": "0", "pin": PIN}
    checked = 0
    for url in [*_panel_urls(objects), "/login/", "/logout/"]:
        for who, client in (("manager", browser), ("embed", embed)):
            before = _effects()
            answer = client.post(url, form)
            assert answer.status_code == 403, f"{who} POST {url} without a CSRF token: {answer.status_code}"
            assert _effects() == before, f"{who} POST {url} without a CSRF token changed something"
            checked += 1
    assert checked >= 60
    # With the token the same request goes through (the CSRF check is what refused it above).
    page = browser.get("/")
    with_token = browser.post("/kiosks/K1/shift/open/", {"csrfmiddlewaretoken": page.cookies["csrftoken"].value})
    assert with_token.status_code in (200, 302)
    assert OrmQ.objects.count() == 1


# --- permissions ------------------------------------------------------------------------------------
ACTIONS = {
    # url template, the permission it needs (a tuple: all of them), what a POST carries
    "shift_open": ("/kiosks/K1/shift/open/", "manage_shift", {}),
    "shift_close": ("/kiosks/K1/shift/close/", "manage_shift", {}),
    "settle": ("/kiosks/K1/settle/", "manage_shift", {}),
    "xreport": ("/kiosks/K1/xreport/", "print_xreport", {}),
    "print_receipt": ("/kiosks/K1/print/receipt/{document_id}/", "print_copy", {}),
    "print_slip": ("/kiosks/K1/print/slip/{operation_id}/", "print_copy", {}),
    "refund": ("/orders/{order_id}/refund/", "refund_order", {"full": "1", "to_card": "on", "after": "0"}),
    "resend": ("/orders/{order_id}/resend/", "change_order", {}),
    "check": ("/kiosks/K1/check/", "check_device", {}),
    # the admin's «Проверить связь»: the kiosk's settings page, and a device job
    "connection": ("/kiosks/K1/connection/", ("change_kiosk", "check_device"), {}),
}
PERMISSIONS = ["manage_shift", "print_xreport", "print_copy", "refund_order", "change_order", "change_kiosk",
               "check_device"]


def test_every_action_needs_its_permission_and_nothing_else(objects, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)  # what an action starts is queued, never run
    order = objects["order"]
    Order.objects.filter(pk=order.pk).update(status=Order.Status.NOT_DELIVERED)  # so that resend applies
    users = {"none": make_user("perm-none")} | {perm: make_user(f"perm-{perm}", perm) for perm in PERMISSIONS}
    users["change_kiosk+check_device"] = make_user("perm-support", "change_kiosk", "check_device")
    anonymous = Client()
    for name, (template, needed, form) in ACTIONS.items():
        url = template.format(**objects)
        before = _effects()
        answer = anonymous.post(url, form)
        assert answer.status_code == 302 and answer["Location"].startswith("/login/"), (name, answer.status_code)
        assert _effects() == before, f"anonymous {name} changed something"
        started = False
        for holder, user in users.items():
            client = Client()
            client.force_login(user)
            before = _effects()
            answer = client.post(url, form)
            allowed = {needed} if isinstance(needed, str) else set(needed)
            if allowed <= set(holder.split("+")):
                assert answer.status_code in (200, 302), f"{holder} may {name}: {answer.status_code}"
                # A second holder's request answers with the job the first one queued (one per kind and kiosk).
                assert _effects() != before or started, f"{holder}'s {name} did nothing"
                started = True
            else:
                assert answer.status_code == 403, f"{holder} may not {name}: got {answer.status_code}"
                assert _effects() == before, f"{holder}'s refused {name} changed something"
        if name == "resend":
            Order.objects.filter(pk=order.pk).update(status=Order.Status.NOT_DELIVERED)


def test_the_embed_acts_on_its_own_kiosk_only_and_refunds_only_when_enabled(objects, world, client, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)
    other = fake_completed_order(world.kiosks["K2"], fake_shift(world.kiosks["K2"], number=98))
    embed = Client()
    assert embed.post("/kiosk/K1/service/", {"pin": PIN}).status_code == 302
    before = _effects()
    for url in (f"/kiosk/K1/service/orders/{other.pk}/refund/", f"/kiosk/K1/service/orders/{other.pk}/resend/",
                f"/kiosk/K1/service/print/receipt/{other.sell_operation.document.pk}/",
                f"/kiosk/K1/service/print/slip/{other.card_sale.pk}/"):
        # 404 (not this kiosk's) or 403 (refunds off in the embed): never done.
        assert embed.post(url, {"full": "1", "to_card": "on", "after": "0"}).status_code in (403, 404), url
    for url in ("/kiosk/K2/service/shift/open/", "/kiosks/K1/shift/open/", f"/orders/{objects['order_id']}/refund/"):
        assert embed.post(url).status_code == 302, url  # another kiosk's embed, the manager pages: locked
    assert embed.post(f"/kiosk/K1/service/orders/{objects['order_id']}/refund/",
                      {"full": "1", "to_card": "on", "after": "0"}).status_code == 403
    assert _effects() == before


def test_the_embed_may_be_framed_by_the_configured_kiosk_origins_only(world, settings):
    settings.KIOSK_FRAME_ORIGINS = ["http://192.168.1.21:8080"]
    manager = make_user("frame-manager")
    client = Client()
    client.force_login(manager)
    assert client.get("/")["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in client.get("/")["Content-Security-Policy"].split("; ")
    pin = Client().get("/kiosk/K1/service/")
    # the whole policy: tests/panel/test_csp.py
    assert "frame-ancestors 'self' http://192.168.1.21:8080" in pin["Content-Security-Policy"].split("; ")
    assert "X-Frame-Options" not in pin


# --- secrets ----------------------------------------------------------------------------------------
def _secrets(world) -> list[str]:
    iiko_tokens = list(world.iiko.app._state["tokens"])
    return [*world.tokens.values(), ATOL_PASSWORD, KKM_PASSWORD, demo.DEMO_API_LOGIN, *iiko_tokens]


def test_tokens_and_device_passwords_never_reach_the_logs(world, client, caplog):
    from core.models import Kiosk
    from fiscal.shifts import x_report
    from nekassir.refunds import refundable, request_refund
    from nekassir.shift_closing import close_shift

    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "django", "django.request", "django-q", "nekassir", "fiscal", "payments"):
        caplog.set_level(logging.DEBUG, logger=name)
    paid = _post_order(client, world, "K1")
    _post_order(client, world, "K2")
    request_refund(paid, refundable(paid), to_card=True, cancel_in_iiko=True)
    x_report(world.kiosks["K1"])
    close_shift(world.kiosks["K1"])
    # Failures log too: a wrong password at the register and the terminal, bad and revoked kiosk tokens.
    Kiosk.objects.filter(code="K1").update(atol_password=ATOL_PASSWORD + "x", kkm_password=KKM_PASSWORD + "x")
    body = order_body((demo.PRODUCT_BURGER_ID, "1"))
    client.post("/api/v1/orders", body, content_type="application/json",
                headers={"Authorization": f"Bearer {world.tokens['K1']}"})
    for header in (f"Bearer {world.tokens['K1']}x", f"Basic {world.tokens['K1']}", world.tokens["K2"]):
        client.post("/api/v1/orders", body, content_type="application/json", headers={"Authorization": header})
        client.get(f"/api/v1/orders/{uuid.uuid4()}", headers={"Authorization": header})
    assert Order.objects.get(pk=body["id"]).status == Order.Status.FAILED  # the register refused the password
    text = "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert len(caplog.records) > 50, "the checkout logged (nearly) nothing: the test would prove nothing"
    leaked = [s for s in _secrets(world) if s in text or s.rstrip("x") + "x" in text]
    assert not leaked, f"secrets in the logs: {[s[:6] + '…' for s in leaked]}"


def test_tokens_and_device_passwords_are_never_shown_in_pages_or_admin_lists(world, client):
    from fiscal.models import FiscalDocument, Shift
    from nekassir.refunds import refundable, request_refund

    paid = _post_order(client, world, "K1")
    request_refund(paid, refundable(paid), to_card=True, cancel_in_iiko=False)
    _post_order(client, world, "K2")
    admin = User.objects.create_superuser("root", password="x")
    browser = Client()
    browser.force_login(admin)
    shift = Shift.objects.filter(kiosk__code="K1").first()
    pages = ["/", "/orders/", f"/orders/{paid.pk}/", "/kiosks/K1/shifts/", f"/shifts/{shift.pk}/", "/journal/",
             "/kiosk/K1/service/", "/api/v1/openapi.json"]
    from django.contrib import admin as django_admin

    for model in django_admin.site._registry:
        opts = model._meta
        pages.append(f"/admin/{opts.app_label}/{opts.model_name}/")
        first = model.objects.order_by("pk").first()
        if first is not None:
            pages.append(f"/admin/{opts.app_label}/{opts.model_name}/{first.pk}/change/")
    seen = 0
    for url in pages:
        answer = browser.get(url)
        assert answer.status_code in (200, 302), (url, answer.status_code)
        html = answer.content.decode()
        seen += len(html)
        for secret in _secrets(world):
            assert secret not in html, f"{url} shows a secret ({secret[:6]}…)"
    assert seen > 100_000 and FiscalDocument.objects.exists()


# --- check --deploy ---------------------------------------------------------------------------------
def _deploy_check(tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DJANGO_SETTINGS_MODULE", "NEKASSIR_USE_TEST_DB", "NEKASSIR_Q_SYNC", "DATABASE_URL"}}
    env.update({"DJANGO_SETTINGS_MODULE": "nekassir.settings", "DEBUG": "false",
                "SECRET_KEY": secrets.token_urlsafe(60), "ALLOWED_HOSTS": "nekassir.venue.lan,192.168.1.10",
                "NEKASSIR_DATA_DIR": str(tmp_path)})
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = _deploy_check(tmp_path)
    failing = sorted(set(re.findall(r"\((security\.\w+|\w+\.\w\d+)\)", result.stderr + result.stdout)))
    assert result.returncode == 0, f"check --deploy failed: {failing}\n{result.stderr[-3000:]}"


def test_check_deploy_finds_nothing_but_the_plain_http_warnings(tmp_path):
    """Until the settings silence them: nothing else than the four HTTPS-only checks may show up."""
    result = _deploy_check(tmp_path)
    failing = set(re.findall(r"\((\w+\.\w\d+)\)", result.stderr + result.stdout))
    assert failing <= {"security.W004", "security.W008", "security.W012", "security.W016"}, (
        f"{failing}\n{result.stderr[-3000:]}")
