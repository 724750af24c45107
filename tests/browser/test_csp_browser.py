"""The Content-Security-Policy in a real browser (issue 14, item 8): Chromium enforces the policy django-csp sends,
and no page of the panel breaks it, while htmx and our scripts keep working.

Every page a manager, the kiosk and the admin open (the venue page with a shift opened through htmx and its job
polled until done, the orders list with its totals loaded by htmx, an order with its receipt QR code, the shift
page, the reports with their chart, a 404 page; the kiosk embed's PIN page unlocked by its own keypad, its kiosk
page, orders and shift; the admin's index and a kiosk's settings page) is watched for ``securitypolicyviolation``
events (reported from every frame through a binding), console errors and warnings, and uncaught script errors:
there must be none. The embed is then framed by a kiosk shell page: its configured origin sees the PIN page in
the frame, another origin gets nothing.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from iiko import emulator as demo
from tests.browser.steps import TIMEOUT, place_through_api
from tests.panel_support import ALL_PANEL_PERMISSIONS, PIN, make_user

pytestmark = pytest.mark.django_db(transaction=True)

# Runs in every frame before the page's own scripts; ``cspViolation`` is a binding of the whole context.
REPORT_VIOLATIONS = """document.addEventListener("securitypolicyviolation", e => window.cspViolation(
  [e.effectiveDirective, e.blockedURI || "inline", `${e.sourceFile}:${e.lineNumber}`, e.sample].join(" ")));"""


class Watched:
    """A browser context whose pages report what the policy refused, console errors and warnings, and uncaught
    script errors into ``problems`` (with the page's address)."""

    def __init__(self, browser, context_args):
        self.context = browser.new_context(**context_args)
        self.problems: list[str] = []
        self.missing: set[str] = set()  # addresses opened for their 404 page
        self.context.expose_binding(
            "cspViolation", lambda source, text: self.problems.append(f"{source['frame'].url}: violation {text}"))
        self.context.add_init_script(REPORT_VIOLATIONS)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT)
        self.page.on("dialog", lambda dialog: dialog.accept())
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"{self.page.url}: script error {error}"))

    def _console(self, message) -> None:
        source = message.location["url"]
        if "Failed to load resource" in message.text and (source.endswith("/favicon.ico") or source in self.missing):
            return  # the browser's own favicon.ico (the panel has none), a 404 page opened on purpose
        if message.type in ("error", "warning"):
            self.problems.append(f"{self.page.url}: console {message.type} {message.text} ({message.location['url']})")

    def visit(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_load_state("load")

    def log_in(self, base: str, username: str, password: str, login: str = "/login/") -> None:
        self.visit(f"{base}{login}")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", password)
        self.page.click("[type=submit]")
        self.page.wait_for_load_state("load")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser, browser_context_args):
    opened: list[Watched] = []

    def open_one() -> Watched:
        opened.append(Watched(browser, browser_context_args))
        return opened[-1]

    yield open_one
    for one in opened:
        one.close()


def test_no_page_breaks_the_policy_and_htmx_still_works(live_server, venue, watched):
    base = live_server.url
    make_user("anna", *ALL_PANEL_PERMISSIONS)
    manager = watched()
    page = manager.page
    manager.log_in(base, "anna", "pass-anna")
    expect(page.locator("#kiosk-K1")).to_be_visible()
    # htmx: the venue's alerts are fetched on load; a shift opened by an htmx POST, its job polled every second
    expect(page.locator("#alerts [data-testid^=alerts]")).to_be_visible()
    page.click('#kiosk-K1 [data-testid="open-shift"]')
    job = page.locator('#kiosk-K1-jobs [data-job-kind="shift_open"]').first
    expect(job).to_have_attribute("data-job-state", "ok", timeout=TIMEOUT)
    expect(page.locator('#kiosk-K1 [data-testid="shift-state"]')).to_contain_text("открыта")

    order = place_through_api(live_server, venue, (demo.PRODUCT_BURGER_ID, "1"), (demo.PRODUCT_CAPPUCCINO_ID, "2"))
    manager.visit(f"{base}/orders/")
    expect(page.locator("#order-totals [data-testid=order-totals]")).to_be_visible()  # fetched by htmx on load
    manager.visit(f"{base}/orders/{order.pk}/")
    expect(page.get_by_test_id("order-number")).to_have_text(order.number)
    expect(page.locator("figure.qr svg")).to_have_count(1)  # the receipt's QR code, inline SVG
    manager.visit(f"{base}/shifts/{order.shift.pk}/")
    expect(page.get_by_test_id("shift-title")).to_contain_text(f"№{order.shift.number}")
    manager.visit(f"{base}/reports/")
    expect(page.locator("svg.report-chart")).to_be_visible()
    assert page.locator("svg.report-chart [data-testid=day-bar]").count() >= 1
    missing = f"{base}/orders/00000000-0000-4000-8000-000000000000/"
    manager.missing.add(missing)
    manager.visit(missing)
    expect(page.get_by_test_id("way-back")).to_be_visible()
    assert manager.problems == []

    # --- the kiosk's own service screen: the keypad (our script) types the PIN, htmx polls its job -------------
    kiosk = watched()
    page = kiosk.page
    kiosk.visit(f"{base}/kiosk/K1/service/")
    for digit in PIN:
        page.get_by_test_id(f"key-{digit}").click()
    expect(page.get_by_test_id("pin")).to_have_value(PIN)
    page.get_by_test_id("unlock").click()
    expect(page.locator("#kiosk-K1")).to_be_visible()
    page.get_by_test_id("xreport").click()
    expect(page.locator('#kiosk-K1-jobs [data-job-kind="xreport"]').first).to_have_attribute(
        "data-job-state", "ok", timeout=TIMEOUT)
    kiosk.visit(f"{base}/kiosk/K1/service/orders/")
    expect(page.get_by_role("link", name=order.number).first).to_be_visible()
    kiosk.visit(f"{base}/kiosk/K1/service/shifts/{order.shift.pk}/")
    expect(page.get_by_test_id("shift-title")).to_contain_text(f"№{order.shift.number}")
    assert kiosk.problems == []

    # --- the admin -------------------------------------------------------------------------------------------
    User.objects.create_superuser("root", password="pass-root")
    admin = watched()
    admin.log_in(base, "root", "pass-root", login="/admin/login/?next=/admin/")
    expect(admin.page.locator("#site-name")).to_be_visible()
    admin.visit(f"{base}/admin/core/kiosk/{venue.kiosks['K1'].pk}/change/")
    expect(admin.page.get_by_role("button", name="Проверить связь")).to_be_visible()
    assert admin.problems == []


class KioskShell:
    """The kiosk's own page on another origin (another port of the loopback: a real HTTP server, local as the
    kiosk's is), showing the embed's PIN page in a frame."""

    def __init__(self, embed_url: str):
        body = f'<!doctype html><title>kiosk</title><iframe src="{embed_url}"></iframe>'.encode()

        class Page(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def shells(live_server):
    """Two kiosk shells framing the embed (at live_server's ``localhost``, another origin than 127.0.0.1)."""
    assert "//localhost:" in live_server.url
    opened = [KioskShell(f"{live_server.url}/kiosk/K1/service/") for _ in range(2)]
    yield opened
    for one in opened:
        one.close()


def test_the_embed_shows_in_the_frame_of_its_kiosk_origin_only(live_server, venue, watched, shells, settings):
    kiosk_shell, stranger_shell = shells
    settings.KIOSK_FRAME_ORIGINS = [kiosk_shell.origin]
    kiosk = watched()
    kiosk.visit(f"{kiosk_shell.origin}/")
    frame = kiosk.page.frame_locator("iframe")
    expect(frame.get_by_test_id("pin")).to_be_visible()
    expect(frame.get_by_test_id("keypad")).to_be_visible()
    # Chromium never autofocuses a field inside another origin's frame, and says so: not the policy's doing
    assert [problem for problem in kiosk.problems if "Blocked autofocusing" not in problem] == []
    stranger = watched()
    stranger.visit(f"{stranger_shell.origin}/")
    expect(stranger.page.frame_locator("iframe").get_by_test_id("pin")).to_have_count(0)
    assert [frame.url for frame in stranger.page.frames][1:] == ["chrome-error://chromewebdata/"]
    assert any("frame-ancestors" in problem for problem in stranger.problems), stranger.problems
