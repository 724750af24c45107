"""Issue 14, «Why»: the X report only said «X-отчёт напечатан». Its figures are on the job's result
(tests/panel/test_xreport_screen.py) and, once printed, on the page of its shift: the latest X report of that
shift (panel, kiosk embed or the ``kkt`` command: what ``fiscal.shifts.print_x_report`` journaled), its time in
the venue's TIME_ZONE, receipts, income, returns, net and by payment type; nothing for a shift without one."""

from __future__ import annotations

import re
from datetime import UTC

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from core.models import Event
from core.money import rub
from fiscal import shifts
from fiscal.models import Shift
from tests.panel_support import HX, PIN, place

pytestmark = pytest.mark.django_db(transaction=True)

XREPORT = "fiscal.shift.xreport"


def section(html: str) -> str:
    found = re.search(r'<section class="paper" data-testid="shift-xreport">(.*?)</section>', html, re.S)
    assert found, "the shift page shows no X report"
    return found.group(1)


def text(html: str, testid: str) -> str:
    found = re.search(r'data-testid="' + testid + r'"[^>]*>(.*?)</(?:dd|td|span)>', html, re.S)
    assert found, testid
    return re.sub(r"[ \t\r\n]+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()  # the money's NBSP kept


def test_the_shift_page_shows_the_latest_x_report_of_the_shift_in_the_venues_time(client, manager_client, venue):
    manager_client.post("/kiosks/K1/shift/open/")
    shift = Shift.objects.get(kiosk__code="K1", state="open")
    first = place(client, venue)
    assert 'data-testid="shift-xreport"' not in manager_client.get(f"/shifts/{shift.pk}/").content.decode()

    assert 'data-job-state="ok"' in manager_client.post("/kiosks/K1/xreport/", headers=HX).content.decode()
    second = place(client, venue)
    assert 'data-job-state="ok"' in manager_client.post("/kiosks/K1/xreport/", headers=HX).content.decode()
    latest = Event.objects.filter(action=XREPORT).order_by("-id").first()

    paper = section(manager_client.get(f"/shifts/{shift.pk}/").content.decode())
    assert text(paper, "xreport-receipts") == "2"  # the latest report's counters, not the first one's
    assert text(paper, "totals-sells") == f"2 · {rub(first.total + second.total)}"
    assert text(paper, "totals-returns") == f"0 · {rub(0)}"
    assert 'data-testid="xreport-payment" data-type="electronically"' in paper
    assert django_settings.TIME_ZONE == "Europe/Moscow"
    shown = text(paper, "shift-xreport-at")
    assert shown == timezone.localtime(latest.created_at).strftime("%d.%m.%Y %H:%M")
    assert shown != latest.created_at.astimezone(UTC).strftime("%d.%m.%Y %H:%M")  # not UTC: Moscow is +3

    kiosk = Client()  # the kiosk's own screen shows it too
    assert kiosk.post("/kiosk/K1/service/", {"pin": PIN}).status_code == 302
    assert text(section(kiosk.get(f"/kiosk/K1/service/shifts/{shift.pk}/").content.decode()),
                "xreport-receipts") == "2"


def test_an_x_report_belongs_to_its_shift_only_and_the_kkt_commands_counts_too(manager_client, venue):
    kiosk = venue.kiosks["K1"]
    shifts.open_shift(kiosk)
    earlier = Shift.objects.get(kiosk=kiosk, state="open")
    shifts.print_x_report(kiosk)  # as the kkt command prints it
    manager_client.post("/kiosks/K1/shift/close/")
    manager_client.post("/kiosks/K1/shift/open/")
    later = Shift.objects.get(kiosk=kiosk, state="open")
    assert later.pk != earlier.pk
    assert text(section(manager_client.get(f"/shifts/{earlier.pk}/").content.decode()), "xreport-receipts") == "0"
    assert 'data-testid="shift-xreport"' not in manager_client.get(f"/shifts/{later.pk}/").content.decode()
