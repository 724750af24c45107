"""The support commands: demo --json, iiko check, simulate."""

from __future__ import annotations

import json
import socket
import threading
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from core.gs1 import GS, parse_code
from core.models import Kiosk, KioskToken
from iiko import emulator as menu
from marking.client import MarkingCheckClient
from marking.emulator import DEMO_TOKEN
from marking.models import MarkedProduct
from nekassir.demo import DEMO_MARKED_PRODUCTS
from nekassir.models import OrderMark
from tests.processes import run_manage
from tests.venue import build_venue

pytestmark = pytest.mark.django_db(transaction=True)


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_demo_json_prints_working_credentials_only(settings):
    first = run_manage("demo", "--json", MARKING_CHECK_URL=_dead_url())
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)  # stdout is nothing but the JSON document
    assert set(data) == {"manager", "kiosks", "products", "marking_codes", "marking_codes_error"}
    assert set(data["manager"]) == {"username", "password"}
    assert [k["code"] for k in data["kiosks"]] == ["K1", "K2"]
    assert all(set(p) == {"id", "name", "price", "vat"} for p in data["products"]) and data["products"]
    second = json.loads(run_manage("demo", "--json", MARKING_CHECK_URL=_dead_url()).stdout)  # idempotent, works
    assert Kiosk.objects.count() == 2
    assert User.objects.get(username="manager").check_password(second["manager"]["password"])
    for kiosk in second["kiosks"]:
        assert KioskToken.authenticate(kiosk["token"]).code == kiosk["code"]
    assert Kiosk.objects.get(code="K1").terminal_transport == "kkm"
    assert Kiosk.objects.get(code="K2").terminal_transport == "dualconnector"


def test_demo_seeds_the_marked_products_and_mints_codes_in_the_stated_states(marking_emulator):
    env = {"MARKING_CHECK_URL": marking_emulator.url, "MARKING_CHECK_TOKEN": DEMO_TOKEN}
    first = run_manage("demo", "--json", **env)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["marking_codes_error"] is None
    marked = {str(m.product_id): m for m in MarkedProduct.objects.all()}
    assert set(marked) == set(data["marking_codes"]) == {menu.PRODUCT_WATER_ID, menu.PRODUCT_ICE_CREAM_ID}
    assert marked[menu.PRODUCT_WATER_ID].group == "water" and marked[menu.PRODUCT_ICE_CREAM_ID].group == "dairy"
    expected = {"valid": "", "sold": "уже продан", "expired": "срок годности"}
    with MarkingCheckClient(marking_emulator.url, DEMO_TOKEN, 5.0) as client:
        for product_id, states in data["marking_codes"].items():
            assert set(states) == set(expected) and len(states["valid"]) == 200
            assert 1 <= len(states["sold"]) <= 10 and 1 <= len(states["expired"]) <= 10
            for status, codes in states.items():
                for raw in codes:  # as a scanner reads them: the product's GTIN, GS and the crypto tail
                    assert parse_code(raw).gtin in marked[product_id].gtins and GS in raw
                sample = codes[:5]
                verdicts = client.check(sample).codes  # the check service answers so for them now
                for raw in sample:
                    assert verdicts[raw].sellable == (status == "valid")
                    assert expected[status] in verdicts[raw].reason
    second = json.loads(run_manage("demo", "--json", **env).stdout)  # fresh codes each run
    assert MarkedProduct.objects.count() == 2
    for product_id, states in second["marking_codes"].items():
        assert not set(states["valid"]) & set(data["marking_codes"][product_id]["valid"])


def test_demo_says_why_there_are_no_codes_when_the_emulator_does_not_answer():
    answer = run_manage("demo", "--json", MARKING_CHECK_URL=_dead_url())
    assert answer.returncode == 0, answer.stderr
    data = json.loads(answer.stdout)
    assert data["marking_codes"] is None
    assert "недоступен" in data["marking_codes_error"]
    assert MarkedProduct.objects.count() == 2  # the venue is seeded all the same


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


def test_simulate_puts_marked_items_with_fresh_codes_in_some_orders(venue, live_server, settings, marking_emulator):
    settings.MARKING_CHECK_URL, settings.MARKING_CHECK_TOKEN = marking_emulator.url, DEMO_TOKEN
    for marked in DEMO_MARKED_PRODUCTS:
        MarkedProduct.objects.create(**marked)
    out = StringIO()
    thread = threading.Thread(target=call_command, args=("simulate",),
                              kwargs={"orders": 8, "kiosks": 1, "url": live_server.url, "timeout": 60, "stdout": out})
    thread.start()
    thread.join(180)
    assert "completed: 8" in out.getvalue(), out.getvalue()
    sold = OrderMark.objects.filter(state=OrderMark.State.SOLD)
    assert sold.exists() and sold.count() == sold.values("code").distinct().count()
    assert {str(m.line.product_id) for m in sold} <= {menu.PRODUCT_WATER_ID, menu.PRODUCT_ICE_CREAM_ID}
