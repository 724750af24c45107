"""The support commands: demo --json, iiko check, simulate."""

from __future__ import annotations

import json
import threading
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from core.models import Kiosk, KioskToken
from tests.processes import run_manage
from tests.venue import build_venue

pytestmark = pytest.mark.django_db(transaction=True)


def test_demo_json_prints_working_credentials_only(settings):
    first = run_manage("demo", "--json")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)  # stdout is nothing but the JSON document
    assert set(data) == {"manager", "kiosks", "products"}
    assert set(data["manager"]) == {"username", "password"}
    assert [k["code"] for k in data["kiosks"]] == ["K1", "K2"]
    assert all(set(p) == {"id", "name", "price", "vat"} for p in data["products"]) and data["products"]
    second = json.loads(run_manage("demo", "--json").stdout)  # idempotent, and its credentials work
    assert Kiosk.objects.count() == 2
    assert User.objects.get(username="manager").check_password(second["manager"]["password"])
    for kiosk in second["kiosks"]:
        assert KioskToken.authenticate(kiosk["token"]).code == kiosk["code"]
    assert Kiosk.objects.get(code="K1").terminal_transport == "kkm"
    assert Kiosk.objects.get(code="K2").terminal_transport == "dualconnector"


@pytest.fixture
def venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator):
    return build_venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator)


def test_iiko_check_passes_on_the_demo_setup_and_names_what_is_wrong(venue):
    good = run_manage("iiko", "K1", "check")
    assert good.returncode == 0, good.stdout
    assert json.loads(good.stdout)["terminal_group_alive"] is True
    Kiosk.objects.filter(code="K1").update(iiko_payment_type_id="7d99af94-0cb1-4d85-928c-ece12b85ddaa")  # cash
    venue.iiko.fault("front_offline", count=5)
    bad = run_manage("iiko", "K1", "check")
    assert bad.returncode == 1
    problems = " ".join(json.loads(bad.stdout)["problems"])
    assert "не в сети" in problems and "не карточный" in problems


def test_simulate_places_orders_through_the_api(venue, live_server):
    out = StringIO()
    thread = threading.Thread(target=call_command, args=("simulate",),
                              kwargs={"orders": 3, "kiosks": 2, "url": live_server.url, "timeout": 60, "stdout": out})
    thread.start()
    thread.join(120)
    assert "completed: 3" in out.getvalue(), out.getvalue()
