"""Secrets in addresses (issue 16 item 4): a login and password typed into a device or iiko address.

The address fields refuse them with a Russian message saying where credentials go; a row stored before that
is reported by ``manage.py check`` and by the kiosk's «Проверить связь»; and no lock key, admin list, change
form, device line or log line ever carries the password.
"""

from __future__ import annotations

import io
import logging
import secrets

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.forms import modelform_factory

from core.addresses import has_credentials, without_credentials
from core.models import DeviceLock, IikoConnection, Kiosk

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-" + secrets.token_hex(6)


def _with_password(url: str, user: str = "kassa") -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{PASSWORD}@{rest}"


# --- the helper ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "stripped", "shown"), [
    ("http://u:p@192.168.1.21:16732", "http://192.168.1.21:16732", "http://***@192.168.1.21:16732"),
    ("http://user@host/x?y=a@b", "http://host/x?y=a@b", "http://***@host/x?y=a@b"),
    ("https://u:p@ss@api-ru.iiko.services/", "https://api-ru.iiko.services/", "https://***@api-ru.iiko.services/"),
    ("atol:http://u:p@h:1#dev", "atol:http://h:1#dev", "atol:http://***@h:1#dev"),
    ("http://192.168.1.21:5893", "http://192.168.1.21:5893", "http://192.168.1.21:5893"),
    ("", "", ""),
])
def test_credentials_are_cut_out_of_an_address_or_a_text(url, stripped, shown):
    assert without_credentials(url) == stripped
    assert without_credentials(url, mark="***") == shown
    assert has_credentials(url) == (url != stripped)


# --- the forms refuse them ---------------------------------------------------------------------------
def test_a_device_address_with_a_password_is_refused_saying_where_credentials_go():
    form_class = modelform_factory(Kiosk, fields=["code", "name", "atol_url", "kkm_url", "dc_url"])
    form = form_class(data={"code": "K9", "name": "Киоск", "atol_url": f"kassa:{PASSWORD}@192.168.1.21:16732",
                            "kkm_url": _with_password("http://192.168.1.21:5893"),
                            "dc_url": "http://operator@127.0.0.1:9015/"})
    assert not form.is_valid()
    for field in ("atol_url", "kkm_url", "dc_url"):
        message = " ".join(form.errors[field])
        assert "логин и пароль" in message and "пользовател" in message, (field, message)
    assert not Kiosk.objects.exists()
    # Without them the same form saves (the check is not a general URL refusal).
    ok = form_class(data={"code": "K9", "name": "Киоск", "atol_url": "192.168.1.21:16732", "kkm_url": "",
                          "dc_url": ""})
    assert ok.is_valid(), ok.errors
    assert ok.save().atol_url == "http://192.168.1.21:16732"


def test_an_iiko_address_with_a_password_is_refused_saying_where_the_keys_go():
    form_class = modelform_factory(IikoConnection, fields=["name", "base_url", "api_login"])
    form = form_class(data={"name": "iiko", "base_url": _with_password("https://api-ru.iiko.services"),
                            "api_login": "x"})
    assert not form.is_valid()
    message = " ".join(form.errors["base_url"])
    assert "логин и пароль" in message and "apiLogin" in message
    assert not IikoConnection.objects.exists()


# --- a row stored before: reported, never shown ------------------------------------------------------------
@pytest.fixture
def stored(venue):
    """K1's register and terminal and the iiko connection with a login and password in their addresses (as a
    row saved before the fields refused them: an update, not a form)."""
    Kiosk.objects.filter(code="K1").update(atol_url=_with_password(venue.atol.url),
                                           kkm_url=_with_password(venue.kkm.url))
    IikoConnection.objects.update(base_url=_with_password(venue.iiko.url, user="cloud"))
    return venue


def test_manage_py_check_reports_a_stored_password_without_showing_it(stored):
    out, err = io.StringIO(), io.StringIO()
    call_command("check", stdout=out, stderr=err)
    text = out.getvalue() + err.getvalue()
    assert "nekassir.W001" in text, text
    assert "K1" in text and "адрес ATOL Web Server" in text and "адрес KKM Server" in text
    assert "подключения iiko" in text
    assert "K2" not in text  # K2's addresses are clean
    assert PASSWORD not in text


def test_a_clean_venue_passes_the_check(venue):
    out, err = io.StringIO(), io.StringIO()
    call_command("check", stdout=out, stderr=err)
    assert "nekassir.W001" not in out.getvalue() + err.getvalue()


def test_the_lock_keys_never_carry_the_password(stored):
    from fiscal.register import register_lock_key
    from payments.terminal import terminal_lock_key

    k1 = Kiosk.objects.get(code="K1")
    assert PASSWORD not in register_lock_key(k1) and PASSWORD not in terminal_lock_key(k1)
    # The same device with and without credentials in its address is one lock (two kiosks, one register).
    clean = Kiosk(atol_url=stored.atol.url, atol_device_id=k1.atol_device_id, terminal_transport="kkm",
                  kkm_url=stored.kkm.url, kkm_device_number=k1.kkm_device_number)
    assert register_lock_key(k1) == register_lock_key(clean)
    assert terminal_lock_key(k1) == terminal_lock_key(clean)


def test_the_admin_lists_and_change_forms_never_show_the_password(stored, client):
    from fiscal.register import register_lock_key

    k1 = Kiosk.objects.get(code="K1")
    # A lock row from before the keys were cleaned still shows without the password.
    DeviceLock.objects.create(key=f"atol:{k1.atol_url}#K1", holder="")
    client.force_login(User.objects.create_superuser("root", password="x"))
    connection = IikoConnection.objects.get()
    lock = DeviceLock.objects.get()
    pages = ["/admin/core/kiosk/", f"/admin/core/kiosk/{k1.pk}/change/", "/admin/core/iikoconnection/",
             f"/admin/core/iikoconnection/{connection.pk}/change/", "/admin/core/devicelock/",
             f"/admin/core/devicelock/{lock.pk}/change/"]
    for url in pages:
        answer = client.get(url)
        assert answer.status_code == 200, (url, answer.status_code)
        assert PASSWORD not in answer.content.decode(), f"{url} shows the password"
    change = client.get(f"/admin/core/kiosk/{k1.pk}/change/").content.decode()
    assert "http://***@127.0.0.1" in change  # the engineer sees that something is there
    assert PASSWORD not in register_lock_key(k1)


def test_saving_the_change_form_as_shown_is_refused_until_the_address_is_clean(stored, client):
    """The form shows ``***`` instead of the credentials: saved as is, it is refused with the message (it never
    silently drops credentials the device may need)."""
    from tests.factories import form_data

    client.force_login(User.objects.create_superuser("root", password="x"))
    k1 = Kiosk.objects.get(code="K1")
    shown = without_credentials(k1.atol_url, mark="***")
    answer = client.post(f"/admin/core/kiosk/{k1.pk}/change/", form_data(k1, atol_url=shown))
    assert answer.status_code == 200 and "логин и пароль" in answer.content.decode()
    assert PASSWORD not in answer.content.decode()
    assert Kiosk.objects.get(code="K1").atol_url == k1.atol_url


def test_check_connection_reports_the_password_in_an_address_and_never_shows_it(stored, caplog):
    from nekassir.connection_check import BAD, check_connection

    caplog.set_level(logging.DEBUG)
    lines = {line.device: line for line in check_connection(Kiosk.objects.get(code="K1"))}
    for device in ("ККТ", "Терминал", "iiko"):
        assert lines[device].state == BAD, (device, lines[device].text)
        assert "логин и пароль" in lines[device].text, (device, lines[device].text)
        assert PASSWORD not in lines[device].text
    clean = {line.device: line.state for line in check_connection(Kiosk.objects.get(code="K2"))}
    assert clean == {"ККТ": "ok", "Терминал": "ok", "iiko": "bad"}  # iiko is shared: its address is K2's too
    assert PASSWORD not in caplog.text


def test_a_terminal_that_does_not_answer_is_named_without_the_password(stored):
    from nekassir.connection_check import check_connection

    Kiosk.objects.filter(code="K1").update(kkm_url=f"http://kassa:{PASSWORD}@127.0.0.1:9",
                                           atol_url=f"http://kassa:{PASSWORD}@127.0.0.1:9")
    lines = {line.device: line.text for line in check_connection(Kiosk.objects.get(code="K1"))}
    assert "127.0.0.1:9" in lines["Терминал"] and "127.0.0.1:9" in lines["ККТ"]
    assert PASSWORD not in lines["Терминал"] + lines["ККТ"]
