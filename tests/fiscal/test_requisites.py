"""Requisites of an automatic device (FFD 1.2 tags 1036, 1009, 1187): each kiosk's machine number, address and
place of settlement, read from the register's registration when empty (and again after an FN change), sent in
every sell and sellReturn, and checked by ``kkt <kiosk> check`` and «Проверить связь» (PROTOCOLS.md §1)."""

from __future__ import annotations

import io
import json
import uuid
from decimal import Decimal

import pytest
from django.core.management import call_command

from core.models import Kiosk
from fiscal.atol_client import AtolClient
from fiscal.checks import check_register
from fiscal.models import FiscalOperation
from nekassir.models import Order
from nekassir.refunds import refundable, request_refund
from tests.panel_support import check
from tests.venue import build_venue, place_order

pytestmark = pytest.mark.django_db(transaction=True)

WIRE = ("machineNumber", "paymentsAddress", "paymentsPlace")
KAZAN = {"machineNumber": "A-17", "paymentsAddress": "г. Казань, ул. Баумана, д. 5",
         "paymentsPlace": "Фудкорт, киоск у входа"}


@pytest.fixture
def venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator, settings):
    settings.TERMINAL_HTTP_TIMEOUT = 0.5
    settings.TERMINAL_GUEST_TIMEOUT = 0.5
    settings.TERMINAL_POLL_FOR = 0.4
    return build_venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator)


def register_as(emulator, device: str, **registration) -> dict:
    """How the emulated register ``device`` is registered (automatic mode, machine number, address, place)."""
    answer = emulator.control.post("/_emulator/registration", json={"device": device, **registration})
    answer.raise_for_status()
    return answer.json()


def receipts(venue, device: str = "K1") -> list[dict]:
    return [d for d in venue.atol.journal() if d["device"] == device and d["type"] in ("sell", "sellReturn")]


def requisites(entry: dict) -> dict:
    return {name: entry.get(name) for name in WIRE}


def kiosk_requisites(code: str = "K1") -> dict:
    kiosk = Kiosk.objects.get(code=code)
    return {"machineNumber": kiosk.machine_number, "paymentsAddress": kiosk.payments_address,
            "paymentsPlace": kiosk.payments_place}


# --- read from the registration, sent in every receipt ------------------------------------------------------


def test_empty_requisites_are_read_from_the_registration_before_the_first_receipt(client, venue):
    register_as(venue.atol, "K1", **KAZAN)
    order = place_order(client, venue)
    assert order.status == Order.Status.COMPLETED
    assert kiosk_requisites() == KAZAN
    (sell,) = receipts(venue)
    assert requisites(sell) == KAZAN  # the journal entry carries them at top level, as sent
    task = order.sell_operation.request[0]
    assert requisites(task) == KAZAN


def test_the_registration_is_read_once_per_fn(client, venue):
    place_order(client, venue)
    place_order(client, venue)
    kiosk = Kiosk.objects.get(code="K1")
    assert FiscalOperation.objects.filter(kiosk=kiosk, task_type="getRegistrationInfo").count() == 1
    assert kiosk.requisites_fn_number == kiosk.fn_number != ""


def test_an_annulment_and_a_refund_carry_the_requisites_too(client, venue):
    register_as(venue.atol, "K1", **KAZAN)
    venue.kkm.fault("decline")
    declined = place_order(client, venue)
    assert declined.status == Order.Status.CANCELLED
    paid = place_order(client, venue)
    request_refund(paid, refundable(paid), to_card=True, cancel_in_iiko=False)
    kinds = [d["type"] for d in receipts(venue)]
    assert kinds == ["sell", "sellReturn", "sell", "sellReturn"]
    assert all(requisites(entry) == KAZAN for entry in receipts(venue))


def test_requisites_set_in_the_admin_are_sent_as_set(client, venue):
    Kiosk.objects.filter(code="K1").update(machine_number="M-1", payments_address="", payments_place="Зал 2")
    register_as(venue.atol, "K1", **KAZAN)
    place_order(client, venue)
    expected = {"machineNumber": "M-1", "paymentsAddress": KAZAN["paymentsAddress"], "paymentsPlace": "Зал 2"}
    assert kiosk_requisites() == expected  # only the empty one was filled from the registration
    assert requisites(receipts(venue)[0]) == expected


def test_requisites_are_read_again_after_an_fn_change(client, venue):
    """The requisites were read for the old FN; the register now reports another one (the FN was replaced and
    the register re-registered): the first receipt on the new FN carries the new registration's requisites."""
    Kiosk.objects.filter(code="K1").update(fn_number="9999000000000001", requisites_fn_number="9999000000000001",
                                           machine_number="OLD-1", payments_address="г. Москва, старый адрес",
                                           payments_place="Старое место")
    register_as(venue.atol, "K1", **KAZAN)
    place_order(client, venue)
    kiosk = Kiosk.objects.get(code="K1")
    assert kiosk.fn_number != "9999000000000001" and kiosk.requisites_fn_number == kiosk.fn_number
    assert kiosk_requisites() == KAZAN
    assert requisites(receipts(venue)[0]) == KAZAN


# --- the emulator, for a register registered in automatic mode ------------------------------------------------


def sell_task(**extra) -> dict:
    price = Decimal("189.00")
    item = {"type": "position", "name": "Капучино", "price": price, "quantity": 1, "amount": price,
            "tax": {"type": "vat22"}, "paymentMethod": "fullPayment", "paymentObject": "commodity"}
    return {"type": "sell", "taxationType": "osn", "items": [item],
            "payments": [{"type": "electronically", "sum": price}], "total": price, **extra}


def test_an_automatic_register_refuses_a_receipt_without_machine_number(atol_emulator):
    client = AtolClient(atol_emulator.url, device_id="A1", poll_interval=0.01, max_wait=5)
    refused = client.execute(str(uuid.uuid4()), [sell_task()]).error()
    assert refused is not None and refused.code == 501 and "machineNumber" in str(refused)
    assert client.execute(str(uuid.uuid4()), [sell_task(**KAZAN)]).error() is None
    assert [requisites(d) for d in atol_emulator.journal() if d["type"] == "sell"] == [KAZAN]
    register_as(atol_emulator, "A1", autoMode=False)
    assert client.execute(str(uuid.uuid4()), [sell_task()]).error() is None  # a cashier's register needs none
    registration = client.run(str(uuid.uuid4()), {"type": "getRegistrationInfo"})
    assert registration["device"]["autoMode"] is False


# --- kkt check and «Проверить связь» --------------------------------------------------------------------------


def kkt_check(code: str = "K1") -> dict:
    out = io.StringIO()
    call_command("kkt", code, "check", stdout=out)
    return json.loads(out.getvalue())


def test_kkt_check_fills_empty_requisites_and_finds_nothing_to_warn_about(venue):
    register_as(venue.atol, "K1", **KAZAN)
    report = kkt_check()
    assert report["ok"] is True and report["warnings"] == []
    assert kiosk_requisites() == KAZAN and report["requisites"] == KAZAN


def test_kkt_check_warns_when_the_register_is_not_registered_for_an_automatic_device(venue):
    register_as(venue.atol, "K1", autoMode=False, machineNumber="")
    report = kkt_check()
    assert any("не для автоматического устройства" in w for w in report["warnings"]), report["warnings"]


def test_kkt_check_warns_when_the_registration_differs_from_the_kiosk_settings(venue):
    Kiosk.objects.filter(code="K1").update(machine_number="M-1", payments_address="г. Москва, ул. Тверская, д. 1",
                                           payments_place="Зал 2")
    register_as(venue.atol, "K1", **KAZAN)
    warnings = check_register(Kiosk.objects.get(code="K1"))["warnings"]
    assert len(warnings) == 3, warnings
    assert "Номер автомата" in warnings[0] and "«A-17»" in warnings[0] and "«M-1»" in warnings[0]
    assert "Адрес расчётов" in warnings[1] and "Место расчётов" in warnings[2]


def test_connection_check_warns_in_russian(support, venue):
    register_as(venue.atol, "K1", autoMode=False, machineNumber="")
    _, html = check(support, venue.kiosks["K1"])
    assert "не для автоматического устройства" in html
    Kiosk.objects.filter(code="K2").update(machine_number="M-2")
    outcome, html = check(support, venue.kiosks["K2"])
    register = outcome.data["devices"][0]
    assert "Номер автомата в регистрации ККТ «KIOSK-K2» не совпадает с настройкой киоска «M-2»" in register["text"]


# --- the admin ----------------------------------------------------------------------------------------------


def test_the_requisites_are_edited_in_the_admin_and_a_cleared_one_is_read_again(admin_client, venue):
    from tests.factories import form_data

    kiosk = Kiosk.objects.get(code="K1")
    Kiosk.objects.filter(pk=kiosk.pk).update(fn_number="1", requisites_fn_number="1", machine_number="A-1")
    page = admin_client.get(f"/admin/core/kiosk/{kiosk.pk}/change/").content.decode()
    assert "Номер автомата (тег 1036)" in page and "Место расчётов (тег 1187)" in page
    changed = form_data(kiosk, machine_number="A-2", payments_address="г. Казань", payments_place="Зал")
    assert admin_client.post(f"/admin/core/kiosk/{kiosk.pk}/change/", changed).status_code == 302
    assert kiosk_requisites() == {"machineNumber": "A-2", "paymentsAddress": "г. Казань", "paymentsPlace": "Зал"}
    assert Kiosk.objects.get(pk=kiosk.pk).requisites_fn_number == "1"  # nothing emptied: nothing to read again
    cleared = form_data(kiosk, machine_number="", payments_address="г. Казань", payments_place="Зал")
    assert admin_client.post(f"/admin/core/kiosk/{kiosk.pk}/change/", cleared).status_code == 302
    assert Kiosk.objects.get(pk=kiosk.pk).requisites_fn_number == ""  # the next receipt reads the registration


def test_kkt_check_warns_when_no_machine_number_is_known_for_an_automatic_register(venue):
    register_as(venue.atol, "K1", machineNumber="")
    report = kkt_check()
    assert any("Номера автомата нет" in w for w in report["warnings"]), report["warnings"]
