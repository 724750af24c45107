"""The check of an order's codes (marking/checks.py): the row is saved before the call, the outcome is its state;
the settings refuse a bad MARKING_OFFLINE_SALE at startup."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from django.core.exceptions import ValidationError

from core.gs1 import GS, make_code
from marking.checks import MarkingCheckDisabled, check_codes
from marking.emulator import DEMO_TOKEN
from marking.models import MarkedProduct, MarkingCheck
from tests.factories import make_kiosk
from tests.processes import ROOT

GTIN = "04600000000013"


@pytest.fixture
def marking_settings(settings, marking_emulator):
    settings.MARKING_CHECK_URL = marking_emulator.url
    settings.MARKING_CHECK_TOKEN = DEMO_TOKEN
    settings.MARKING_CHECK_TIMEOUT = 1.0
    return settings


@pytest.mark.django_db
def test_an_answer_is_kept_with_its_req_id_timestamp_and_a_verdict_per_code(marking_settings, marking_emulator):
    kiosk = make_kiosk("http://127.0.0.1:9")
    good = make_code(GTIN, "abc123", "ab" + GS + "cd")
    sold = marking_emulator.app.operator.mint(GTIN, "sold", 1)[0]
    check = check_codes(kiosk, [good, sold])
    check.refresh_from_db()
    assert check.state == MarkingCheck.State.ANSWERED and check.error == ""
    assert check.codes == [good, sold]
    assert check.req_id == marking_emulator.journal()[-1]["reqId"] and check.req_timestamp > 0
    assert check.sent_at and check.finished_at
    verdicts = check.verdicts
    assert verdicts[good].sellable and not verdicts[sold].sellable
    assert "уже продан" in verdicts[sold].reason
    assert check.industry_attribute == f"UUID={check.req_id}&Time={check.req_timestamp}"


@pytest.mark.django_db
@pytest.mark.parametrize("fault", ["unavailable", "slow", "lost_answer"])
def test_no_verdict_is_state_unavailable_never_an_exception(marking_settings, marking_emulator, fault):
    marking_emulator.fault(fault, seconds=3)
    check = check_codes(make_kiosk("http://127.0.0.1:9"), [make_code(GTIN, "abc123", "abcd")])
    check.refresh_from_db()
    assert check.state == MarkingCheck.State.UNAVAILABLE
    assert check.error and check.req_id == "" and check.verdicts == {} and check.industry_attribute == ""


@pytest.mark.django_db
def test_a_refused_key_is_state_refused_and_the_key_is_not_kept(marking_settings):
    marking_settings.MARKING_CHECK_TOKEN = "wrong-secret-key"
    check = check_codes(make_kiosk("http://127.0.0.1:9"), [make_code(GTIN, "abc123", "abcd")])
    check.refresh_from_db()
    assert check.state == MarkingCheck.State.REFUSED and "401" in check.error
    assert "wrong-secret-key" not in check.error


@pytest.mark.django_db
def test_off_when_the_url_is_empty(settings):
    settings.MARKING_CHECK_URL = ""
    with pytest.raises(MarkingCheckDisabled):
        check_codes(make_kiosk("http://127.0.0.1:9"), [make_code(GTIN, "abc123", "abcd")])
    assert not MarkingCheck.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_row_is_saved_before_the_call(marking_settings, marking_emulator):
    """While the service hangs, the row is already in the database, marked sent: a killed process leaves it."""
    marking_settings.MARKING_CHECK_TIMEOUT = 5.0
    marking_emulator.fault("slow", seconds=3)
    kiosk = make_kiosk("http://127.0.0.1:9")
    raw = make_code(GTIN, "abc123", "abcd")
    done: list[MarkingCheck] = []
    worker = threading.Thread(target=lambda: done.append(check_codes(kiosk, [raw])))
    worker.start()
    try:
        deadline = time.monotonic() + 2.5
        seen = None
        while time.monotonic() < deadline and seen is None:
            seen = MarkingCheck.objects.filter(kiosk=kiosk, state=MarkingCheck.State.SENT).first()
            time.sleep(0.02)
        assert seen is not None and seen.codes == [raw] and not done  # in the database, the call still out
        assert seen.sent_at is not None and seen.finished_at is None
    finally:
        worker.join(timeout=10)
    assert done and done[0].id == seen.id and done[0].state == MarkingCheck.State.ANSWERED


@pytest.mark.django_db
def test_a_marked_product_keeps_its_group_and_gtins_and_refuses_bad_gtins():
    product = MarkedProduct(product_id="5345c509-46c6-454f-89e4-9bcc77a5463b", name="Вода", group="water",
                            gtins=[GTIN])
    product.full_clean()
    product.save()
    product.gtins = ["123"]
    with pytest.raises(ValidationError):
        product.full_clean()


def _env(tmp_path, **variables: str) -> dict[str, str]:
    """This environment without the test settings and any MARKING_* of the caller's, plus ``variables``."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"DJANGO_SETTINGS_MODULE", "NEKASSIR_USE_TEST_DB", "DATABASE_URL"}
           and not k.startswith("MARKING_")}
    return {**env, "DJANGO_SETTINGS_MODULE": "nekassir.settings", "NEKASSIR_DATA_DIR": str(tmp_path / "data"),
            **variables}


@pytest.mark.parametrize("value", ["maybe", "on"])
def test_a_bad_offline_sale_setting_stops_the_start(tmp_path, value):
    env = _env(tmp_path, MARKING_OFFLINE_SALE=value)
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "MARKING_OFFLINE_SALE" in result.stderr


def test_the_offline_sale_setting_takes_both_values(tmp_path):
    env = _env(tmp_path, MARKING_OFFLINE_SALE="Offline")
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.MARKING_OFFLINE_SALE, settings.MARKING_FOIS, settings.MARKING_DOC_DATE, "
            "settings.MARKING_DOC_NUMBER, settings.MARKING_EMULATOR_PORT, repr(settings.MARKING_CHECK_URL))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["offline", "030", "21.11.2023", "1944", "8766", "''"]
