"""The first run (issue 14, item 7): ``demo`` leaves a running venue as it is unless asked (``--reset``) and
prints the same working credentials every time; ``simulate`` talks to the server ``make run`` serves (``PORT``)
and says in one Russian line what is wrong when nothing answers there."""

from __future__ import annotations

import json
import re
import socket
import stat

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.forms.models import model_to_dict
from django.test import Client

from core.models import IikoConnection, Kiosk, KioskToken
from nekassir.demo import CREDENTIALS_FILE
from tests.processes import run_manage

pytestmark = pytest.mark.django_db(transaction=True)

# Emulator ports of "another" environment: what a second terminal without make run's variables would use.
OTHER_PORTS = {"ATOL_EMULATOR_PORT": "17001", "KKM_EMULATOR_PORT": "17002", "DC_EMULATOR_PORT": "17003",
               "IIKO_EMULATOR_PORT": "17004", "MARKING_EMULATOR_PORT": "17005"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _demo(*args: str, **env: str) -> dict:
    answer = run_manage("demo", "--json", *args, MARKING_CHECK_URL=f"http://127.0.0.1:{_free_port()}", **env)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def _venue() -> dict:
    """Everything of the venue the running stack uses: the kiosks' rows (addresses, device passwords, PIN hash),
    their tokens, the iiko connection, the manager's password hash."""
    return {
        "kiosks": {k.code: model_to_dict(k) for k in Kiosk.objects.all()},
        "tokens": sorted((t.kiosk_id, t.token_hash, t.revoked_at) for t in KioskToken.objects.all()),
        "iiko": [model_to_dict(c) for c in IikoConnection.objects.all()],
        "manager": User.objects.get(username="manager").password,
    }


def _logged_in(client: Client) -> bool:
    return client.get("/").status_code == 200


@pytest.fixture
def fresh_data_dir():
    """No credentials kept from another test of this run (the data folder outlives each test's database)."""
    (settings.DATA_DIR / CREDENTIALS_FILE).unlink(missing_ok=True)
    yield
    (settings.DATA_DIR / CREDENTIALS_FILE).unlink(missing_ok=True)


def test_demo_twice_prints_the_same_credentials_and_changes_nothing(fresh_data_dir):
    first = _demo()
    Kiosk.objects.filter(code="K1").update(atol_password="set-by-the-venue")  # a device password set by hand
    manager = Client()
    assert manager.login(username="manager", password=first["manager"]["password"])
    assert _logged_in(manager)
    before = _venue()

    second = _demo(**OTHER_PORTS)  # another terminal, other emulator ports: the running venue stays as it is

    assert second["manager"] == first["manager"] and second["kiosks"] == first["kiosks"]
    assert _venue() == before
    assert Kiosk.objects.get(code="K1").atol_url.endswith(":16732")  # not rewritten to 17001
    assert _logged_in(manager)  # the manager using the panel is not logged out
    for kiosk in first["kiosks"]:
        assert KioskToken.authenticate(kiosk["token"]).code == kiosk["code"]
    kept = settings.DATA_DIR / CREDENTIALS_FILE
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600  # like the secret key: the owner's only


def test_demo_keeps_the_credentials_of_a_venue_seeded_afresh(fresh_data_dir):
    """A new database beside the kept credentials (the data folder kept, the database recreated): the demo
    venue is made again with the same password and tokens."""
    first = _demo()
    User.objects.all().delete()
    KioskToken.objects.all().delete()
    second = _demo()
    assert second["manager"] == first["manager"] and second["kiosks"] == first["kiosks"]
    assert User.objects.get(username="manager").check_password(first["manager"]["password"])
    for kiosk in first["kiosks"]:
        assert KioskToken.authenticate(kiosk["token"]).code == kiosk["code"]


def test_demo_does_not_reset_a_password_changed_by_hand(fresh_data_dir):
    _demo()
    manager = User.objects.get(username="manager")
    manager.set_password("chosen-by-the-manager")
    manager.save()
    again = run_manage("demo", MARKING_CHECK_URL=f"http://127.0.0.1:{_free_port()}")
    assert again.returncode == 0, again.stderr
    assert User.objects.get(username="manager").check_password("chosen-by-the-manager")
    assert "--reset" in again.stdout  # says how to get a demo password again
    assert _demo()["manager"]["password"] is None


def test_demo_reset_resets_the_venue(fresh_data_dir):
    first = _demo()
    manager = Client()
    assert manager.login(username="manager", password=first["manager"]["password"])
    reset = _demo("--reset", **OTHER_PORTS)
    assert reset["manager"]["password"] != first["manager"]["password"]
    assert User.objects.get(username="manager").check_password(reset["manager"]["password"])
    assert not _logged_in(manager)
    for old, new in zip(first["kiosks"], reset["kiosks"], strict=True):
        assert KioskToken.authenticate(old["token"]) is None
        assert KioskToken.authenticate(new["token"]).code == new["code"]
    k1 = Kiosk.objects.get(code="K1")
    assert k1.atol_url.endswith(":17001") and k1.kkm_url.endswith(":17002")
    assert IikoConnection.objects.get().base_url.endswith(":17004")
    again = _demo(**OTHER_PORTS)  # and from now on the reset's credentials are the ones printed
    assert again["manager"] == reset["manager"] and again["kiosks"] == reset["kiosks"]


def test_demo_warns_when_the_kiosks_point_elsewhere_than_this_environment(fresh_data_dir):
    _demo()
    answer = run_manage("demo", "--json", MARKING_CHECK_URL=f"http://127.0.0.1:{_free_port()}", **OTHER_PORTS)
    assert answer.returncode == 0 and json.loads(answer.stdout)
    assert "--reset" in answer.stderr and "K1" in answer.stderr


@pytest.fixture
def demo_venue(fresh_data_dir):
    return _demo()


def _one_russian_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and re.search("[а-яА-Я]", lines[0]), stderr
    return lines[0]


def test_simulate_says_in_one_line_that_nothing_answers(demo_venue):
    port = _free_port()
    answer = run_manage("simulate", "--orders", "2", "--url", f"http://127.0.0.1:{port}", timeout=60)
    assert answer.returncode != 0
    line = _one_russian_line(answer.stderr)
    assert f"127.0.0.1:{port}" in line and "не отвечает" in line


def test_simulate_goes_to_the_port_make_run_serves(demo_venue):
    port = _free_port()
    answer = run_manage("simulate", "--orders", "1", PORT=str(port), timeout=60)
    assert answer.returncode != 0
    assert f"http://127.0.0.1:{port}" in _one_russian_line(answer.stderr)


def test_simulate_names_a_bad_port(demo_venue):
    answer = run_manage("simulate", "--orders", "1", PORT="eighty", timeout=60)
    assert answer.returncode != 0
    assert "PORT" in _one_russian_line(answer.stderr)
