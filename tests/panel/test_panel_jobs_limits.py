"""Device jobs started from the panel (issue 16 item 1): each kind needs its permission, a request for a kind
already queued or running on that kiosk answers with that job, a per-user (per kiosk screen) rate limit answers
429 in Russian, and a job whose device is busy gives its worker back and is queued again later instead of
waiting for the device's lock.

Jobs run inline (q2 sync) unless a test turns ``Conf.SYNC`` off: then a started job is only queued (an ``OrmQ``
row) and the test runs it itself, as a worker would, with ``jobs.run_job``.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

from core.locks import device_lock
from core.models import Event, Kiosk
from fiscal.register import register_lock_key
from nekassir.panel import jobs
from tests.panel_support import HX, PIN, make_user
from tests.threads import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _embed(code: str = "K1") -> Client:
    client = Client()
    assert client.post(f"/kiosk/{code}/service/", {"pin": PIN}).status_code == 302
    return client


def _starts(kind: str) -> list[Event]:
    return list(Event.objects.filter(action=f"panel.{kind}").order_by("id"))


@pytest.fixture
def queued_only(monkeypatch):
    """Started jobs stay in the queue (no worker): what a burst of requests leaves there is visible."""
    monkeypatch.setattr(Conf, "SYNC", False)


# --- permissions ----------------------------------------------------------------------------------------
def test_checking_the_register_needs_the_check_device_permission(venue):
    """Before: «Проверить ККТ» needed no permission, any account with a login could queue it."""
    reader = _client(make_user("reader"))
    answer = reader.post("/kiosks/K1/check/")
    assert answer.status_code == 403 and "Недостаточно прав" in answer.content.decode()
    assert not _starts("check")
    answer = _client(make_user("checker", "check_device")).post("/kiosks/K1/check/")
    assert answer.status_code == 302 and len(_starts("check")) == 1


def test_checking_the_connection_needs_the_check_device_permission_too(venue):
    """Before: «Проверить связь» needed only the kiosk's settings right."""
    answer = _client(make_user("settings-only", "change_kiosk", reads=False)).post("/kiosks/K1/connection/")
    assert answer.status_code == 403 and "Недостаточно прав" in answer.content.decode()
    assert not _starts("connection")
    support = _client(make_user("support", "change_kiosk", "check_device", reads=False))
    assert support.post("/kiosks/K1/connection/").status_code == 302
    assert len(_starts("connection")) == 1


def test_every_job_kind_has_a_permission():
    assert all(kind.permission for kind in jobs.KINDS.values())
    assert jobs.KINDS["check"].permission == jobs.KINDS["connection"].permission == "fiscal.check_device"


def test_the_demo_manager_may_check_devices(db):
    from nekassir.demo import _manager

    assert _manager().has_perm("fiscal.check_device")


def test_the_kiosk_screen_may_check_its_own_register(venue):
    answer = _embed().post("/kiosk/K1/service/check/")
    assert answer.status_code == 302 and len(_starts("check")) == 1


# --- one job per kind and kiosk -------------------------------------------------------------------------
def test_fifty_requests_for_one_kiosk_queue_at_most_one_job_per_kind(venue, queued_only, settings):
    """Before: each request queued a job of its own (150 checks of K1 stalled K2's checkout)."""
    settings.PANEL_JOB_RATE = 1000  # the rate limit has its own test: here only the merging counts
    users = [make_user(f"m{n}", "check_device", "print_xreport") for n in range(5)]
    clients = [_client(user) for user in users]
    requests = [(clients[n % 5], ("check", "xreport")[n % 2]) for n in range(50)]
    start = threading.Barrier(len(requests))

    def request(client, kind):
        start.wait(timeout=30)
        return kind, client.post(f"/kiosks/K1/{kind}/")

    answers, errors = run_in_threads(request, requests)
    assert not errors, errors
    checks, xreports = _starts("check"), _starts("xreport")
    assert len(checks) == 1 and len(xreports) == 1
    assert OrmQ.objects.count() == 2
    jobs_by_kind = {"check": checks[0].pk, "xreport": xreports[0].pk}
    for kind, answer in answers:  # every request leads to the one job of its kind
        assert answer.status_code == 302 and answer["Location"].endswith(f"job={jobs_by_kind[kind]}#kiosk-K1")


def test_a_second_request_gets_the_running_jobs_fragment_and_another_kiosk_gets_its_own(venue, queued_only):
    client = _client(make_user("checker", "check_device"))
    first = client.post("/kiosks/K1/check/", headers=HX).content.decode()
    again = client.post("/kiosks/K1/check/", headers=HX).content.decode()
    job = _starts("check")[0]
    assert f'id="job-{job.pk}"' in first and f'id="job-{job.pk}"' in again
    assert _embed().post("/kiosk/K1/service/check/").status_code == 302  # the kiosk's screen: the same job
    assert len(_starts("check")) == 1
    client.post("/kiosks/K2/check/")
    assert [e.kiosk.code for e in _starts("check")] == ["K1", "K2"]


def test_copies_are_merged_per_document_not_per_kiosk(venue, queued_only):
    from tests.panel_support import fake_completed_order, fake_shift

    kiosk = Kiosk.objects.get(code="K1")
    shift = fake_shift(kiosk)
    first, second = fake_completed_order(kiosk, shift), fake_completed_order(kiosk, shift)
    client = _client(make_user("printer", "print_copy"))
    for order in (first, first, second):
        document = order.sell_operation.document
        assert client.post(f"/kiosks/K1/print/receipt/{document.pk}/", {"order": str(order.pk)}).status_code == 302
    assert sorted(e.data["document_id"] for e in _starts("print_receipt")) == sorted(
        [first.sell_operation.document.pk, second.sell_operation.document.pk])


def test_a_finished_job_does_not_stop_the_next_one(venue):
    client = _client(make_user("checker", "check_device"))
    client.post("/kiosks/K1/check/")
    client.post("/kiosks/K1/check/")
    assert len(_starts("check")) == 2  # the first was done (inline) when the second came


# --- the rate limit -------------------------------------------------------------------------------------
def test_too_many_jobs_from_one_account_answer_429_in_russian(venue, settings):
    """Before: no limit; an account could start jobs as fast as it could send requests."""
    settings.PANEL_JOB_RATE = 3
    client = _client(make_user("busy", "check_device", "print_xreport"))
    for kind in ("check", "xreport", "check"):  # each done inline before the next: three jobs
        assert client.post(f"/kiosks/K1/{kind}/").status_code == 302
    page = client.post("/kiosks/K2/check/")
    assert page.status_code == 429
    html = page.content.decode()
    assert "Слишком много заданий" in html and "<html" in html and 'href="/"' in html
    fragment = client.post("/kiosks/K2/check/", headers=HX)
    assert fragment.status_code == 429 and "Слишком много заданий" in fragment.content.decode()
    assert "<html" not in fragment.content.decode()
    assert not Event.objects.filter(action="panel.check", kiosk__code="K2").exists()
    # Another account is not limited by this one's jobs.
    assert _client(make_user("other", "check_device")).post("/kiosks/K2/check/").status_code == 302


def test_the_kiosk_screen_goes_through_the_same_limit(venue, settings):
    settings.PANEL_JOB_RATE = 2
    embed = _embed()
    assert embed.post("/kiosk/K1/service/check/").status_code == 302
    assert embed.post("/kiosk/K1/service/xreport/").status_code == 302
    refused = embed.post("/kiosk/K1/service/check/")
    assert refused.status_code == 429 and "Слишком много заданий" in refused.content.decode()
    assert _embed().post("/kiosk/K1/service/check/").status_code == 429  # a new PIN session: the same kiosk
    assert len(_starts("check")) == 1


def test_the_job_rate_is_a_setting_from_the_environment():
    from django.conf import settings

    assert settings.PANEL_JOB_RATE >= 1


# --- a busy device: the worker is given back ------------------------------------------------------------
@pytest.fixture
def register_held(venue):
    """K1's register lock held by another thread (a checkout printing), until the test lets it go."""
    kiosk = Kiosk.objects.get(code="K1")
    taken, release = threading.Event(), threading.Event()

    def hold():
        from django.db import connections

        try:
            with device_lock(register_lock_key(kiosk), purpose="чек заказа K1-001"):
                taken.set()
                release.wait(timeout=60)
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(timeout=10)
    yield release
    release.set()
    thread.join()


def test_a_job_whose_device_is_busy_returns_at_once_and_is_queued_again(venue, queued_only, register_held):
    """Before: the job waited for the register's lock (30 s) holding its worker; every other kiosk's checkout
    queued behind such jobs."""
    client = _client(make_user("checker", "check_device"))
    client.post("/kiosks/K1/check/")
    job = _starts("check")[0]
    result = jobs.run_job(job.pk)  # what a worker would run
    assert result == "deferred"
    assert result.seconds < 5  # the job's own measure: it never waited out the register's 30 s
    assert "чек заказа K1-001" in result.busy
    assert not Event.objects.filter(object_ref=f"job:{job.pk}").exists()  # no outcome yet: it is still to do
    job.refresh_from_db()
    assert job.data["deferred"] == 1 and job.data["retry_at"]
    assert jobs.resume_due_jobs() == 0  # not before its time
    assert client.post("/kiosks/K1/check/")["Location"].endswith(f"job={job.pk}#kiosk-K1")  # still the one job
    register_held.set()
    queued = OrmQ.objects.count()
    assert jobs.resume_due_jobs(now=timezone.now() + timedelta(minutes=5)) == 1
    assert OrmQ.objects.count() == queued + 1
    assert jobs.resume_due_jobs(now=timezone.now() + timedelta(minutes=5)) == 0  # claimed once
    # The lock is free now (the holder's thread may take a moment to end): run it as the worker would.
    result = jobs.run_job(job.pk)
    assert result == "ok", result
    assert Event.objects.get(object_ref=f"job:{job.pk}").action == jobs.DONE
    assert jobs.run_job(job.pk) == "already done"  # the queue's second delivery, if any


def test_a_job_that_never_gets_its_device_fails_with_a_russian_message(venue, queued_only, register_held, settings):
    client = _client(make_user("checker", "check_device"))
    client.post("/kiosks/K1/check/")
    job = _starts("check")[0]
    Event.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.PANEL_JOB_DEVICE_WAIT + 1))
    result = jobs.run_job(job.pk)
    assert result == "failed"
    outcome = Event.objects.get(object_ref=f"job:{job.pk}")
    assert outcome.action == jobs.FAILED and outcome.message.startswith("Устройство было занято")
    assert "чек заказа K1-001" in outcome.message


def test_every_kind_claims_the_locks_its_workflow_takes_before_it_starts(venue):
    """A job takes every device lock of its workflow at once, without waiting, so nothing inside waits."""
    from core.locks import sale_lock_key
    from payments.terminal import terminal_lock_key

    kiosk = Kiosk.objects.get(code="K1")
    register, sale, terminal = register_lock_key(kiosk), sale_lock_key(kiosk), terminal_lock_key(kiosk)
    start = Event(kiosk=kiosk, data={})
    assert jobs.KINDS["check"].locks(start) == [register]
    assert set(jobs.KINDS["shift_close"].locks(start)) == {sale, register, terminal}
    assert set(jobs.KINDS["settle"].locks(start)) >= {terminal}
    assert set(jobs.KINDS["connection"].locks(start)) == {register, terminal}
    Kiosk.objects.filter(pk=kiosk.pk).update(terminal_transport="")
    kiosk.refresh_from_db()
    assert jobs.KINDS["connection"].locks(Event(kiosk=kiosk, data={})) == [register]  # no shared empty key
