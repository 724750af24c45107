"""A kiosk's checkout while a burst of panel jobs is requested for another kiosk (issue 16 item 1).

Part of the checkout bench (same stack, same run). Before issue 16, 150 «Проверить ККТ» requests for K1 from
one account queued 150 jobs on the device cluster; each waited for K1's register lock holding a worker, and a
K2 order went from 5 s to 49 s. Here, with the realistic device delays of the parallel run:

* alone: an order on kiosk B02, POST → done (the time the server finished it);
* under a burst: kiosk B01 has a guest's order in progress (its register and terminal busy), one manager
  account sends ``BURST`` job requests for B01 at once (check, X report, settlement in turn), and as soon
  as they are answered (whatever they started is queued) the same B02 order is placed.

``ratio checkout_under_job_burst_vs_alone`` = median under the burst ÷ median alone (target ≤ 1.2). Between
repeats every job of the burst is let finish (a job deferred while B01 is busy is queued again by the
recovery schedule, up to a minute later), so that "alone" is alone.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from typing import Any

import httpx

from scripts.bench.common import median, say

BURST = 50
KINDS = ("check", "xreport", "settle")
MANAGER = "bench-manager"


def login(stack) -> tuple[dict[str, str], str]:
    """A manager with every panel right, logged in through the login form: (its cookies, its CSRF token)."""
    from django.contrib.auth.models import Group, Permission, User

    password = secrets.token_urlsafe(16)
    group, _ = Group.objects.get_or_create(name="bench managers")
    apps = ["core", "nekassir", "fiscal", "payments"]
    group.permissions.set(Permission.objects.filter(content_type__app_label__in=apps))
    user, _ = User.objects.get_or_create(username=MANAGER)
    user.set_password(password)
    user.save()
    user.groups.add(group)
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        http.get("/login/").raise_for_status()
        answer = http.post("/login/", data={"username": MANAGER, "password": password,
                                            "csrfmiddlewaretoken": http.cookies["csrftoken"]})
        if answer.status_code != 302:
            raise RuntimeError(f"bench manager login: {answer.status_code} {answer.text[:300]}")
        cookies = dict(http.cookies)
    return cookies, cookies["csrftoken"]


def checkout_time(stack, token: str) -> tuple[float, str]:
    """One order (POST → done by the server, seconds) and its final status."""
    from scripts.bench.checkout import completion, order_body

    body = order_body()
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        t0 = time.monotonic()
        http.post("/api/v1/orders", json=body).raise_for_status()
    status, done, _ = completion(body["id"], timeout=300)
    return done - t0, status


def wait_jobs_finished(timeout: float = 240.0) -> int:
    """Wait until no panel job is queued, waiting or running; returns how many still were at the timeout."""
    from nekassir.panel import jobs

    deadline = time.monotonic() + timeout
    while True:
        pending = sum(len(starts) for starts in jobs.running_jobs(tuple(jobs.KINDS)).values())
        if not pending or time.monotonic() > deadline:
            return pending
        time.sleep(0.5)


def burst(stack, code: str, cookies: dict[str, str], csrf: str, answers: Counter) -> list[threading.Thread]:
    """``BURST`` job requests for kiosk ``code``, all at once (threads started, not joined)."""
    gate = threading.Barrier(BURST)
    lock = threading.Lock()

    def request(kind: str) -> None:
        with httpx.Client(base_url=stack.url, cookies=cookies, timeout=60) as http:
            gate.wait(timeout=30)
            try:
                status = http.post(f"/kiosks/{code}/{kind}/", headers={"X-CSRFToken": csrf}).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
        with lock:
            answers[str(status)] += 1

    threads = [threading.Thread(target=request, args=(KINDS[n % len(KINDS)],)) for n in range(BURST)]
    for thread in threads:
        thread.start()
    return threads


def run_job_burst(stack, emulators, kiosks: list[tuple[Any, str]], repeats: int) -> dict[str, Any]:
    from core.models import Event
    from scripts.bench.checkout import REALISTIC, completion, order_body

    (busy_kiosk, busy_token), (measured, measured_token) = kiosks[0], kiosks[1]
    emulators.set_delays(**REALISTIC)
    cookies, csrf = login(stack)
    alone, under, statuses, answers = [], [], Counter(), Counter()
    first_event = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    unfinished = 0
    try:
        for n in range(repeats):
            unfinished += wait_jobs_finished()
            seconds, status = checkout_time(stack, measured_token)
            alone.append(seconds)
            statuses[status] += 1
            # B01's guest: an order in progress on the kiosk the jobs are for.
            guest = order_body()
            with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {busy_token}"}, timeout=30) as h:
                h.post("/api/v1/orders", json=guest).raise_for_status()
            for thread in burst(stack, busy_kiosk.code, cookies, csrf, answers):
                thread.join()
            seconds, status = checkout_time(stack, measured_token)
            under.append(seconds)
            statuses[status] += 1
            completion(guest["id"], timeout=300)
            say(f"  job burst {n + 1}/{repeats}: {measured.code} alone {alone[-1]:.2f} s, "
                f"under {BURST} job requests for {busy_kiosk.code} {under[-1]:.2f} s; answers {dict(answers)}")
        unfinished += wait_jobs_finished()
    finally:
        emulators.set_delays(0.0, 0.0, 0.0)
    started = Event.objects.filter(id__gt=first_event, kiosk=busy_kiosk, action__in=[f"panel.{k}" for k in KINDS])
    outcomes = Counter(Event.objects.filter(id__gt=first_event, object_ref__in=[
        f"job:{pk}" for pk in started.values_list("pk", flat=True)]).values_list("action", flat=True))
    deferred = sum(1 for data in started.values_list("data", flat=True) if data.get("deferred"))
    return {
        "repeats": repeats, "burst_requests": BURST, "kinds": list(KINDS), "delays": REALISTIC,
        "alone_s": alone, "under_burst_s": under,
        "alone_median_s": median(alone), "under_burst_median_s": median(under),
        "ratio": median(under) / median(alone),
        "answers": dict(answers), "order_statuses": dict(statuses),
        "jobs_started": started.count(), "jobs_deferred": deferred, "job_outcomes": dict(outcomes),
        "jobs_unfinished": unfinished,
    }
