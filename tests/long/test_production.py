"""A production-like run, end to end: PostgreSQL, the Redis broker, gunicorn (gthread) serving the static
files through whitenoise from ``collectstatic``'s manifest, two device q2 clusters and the default
cluster, all as real processes (scripts/bench/stack.py), against the emulators over HTTP.

The kiosks are the demo venue (``manage.py demo``) pointed at this test's emulators. Orders are posted
through gunicorn on both kinds of terminal at once; each must reach ``completed`` and leave exactly one
sell receipt, one approved card sale and one iiko order in the emulators' journals, whichever of the two
device clusters ran it.

Runs in the PostgreSQL pass of the suite (``make test-postgres``, CI) or with
``NEKASSIR_PRODUCTION_TEST=1`` (``make test-production``); skipped cleanly when PostgreSQL or Redis is
unreachable. It has its own database (dropped afterwards) and its own Redis database index.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from iiko import emulator as menu
from scripts.bench.common import drop_database, pg_reachable, recreate_database, redis_reachable
from scripts.bench.stack import Stack, StackConfig

pytestmark = [pytest.mark.slow]

FINAL = {"completed", "cancelled", "failed", "not_delivered"}
ORDERS_PER_KIOSK = 3


def _server_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url
    return os.environ.get("PG_TEST_URL", "postgres://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def servers():
    on_postgres = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
    if not on_postgres and os.environ.get("NEKASSIR_PRODUCTION_TEST") != "1":
        pytest.skip("runs in the PostgreSQL pass (make test-postgres) or with NEKASSIR_PRODUCTION_TEST=1")
    pg = _server_url()
    redis_url = f"{os.environ.get('PRODUCTION_TEST_REDIS', 'redis://127.0.0.1:6379')}/{random.randint(1, 12)}"
    for problem in (pg_reachable(pg), redis_reachable(redis_url)):
        if problem:
            pytest.skip(problem)
    name = f"nekassir_production_{os.getpid()}"
    url = recreate_database(pg, name)
    yield url, redis_url
    drop_database(pg, name)


@pytest.fixture
def stack(servers, tmp_path, atol_emulator, kkm_emulator, dc_emulator, iiko_emulator):
    url, redis_url = servers
    ports = {"ATOL_EMULATOR_PORT": atol_emulator.server.port, "KKM_EMULATOR_PORT": kkm_emulator.server.port,
             "DC_EMULATOR_PORT": dc_emulator.server.port, "IIKO_EMULATOR_PORT": iiko_emulator.server.port}
    config = StackConfig(
        data_dir=tmp_path / "stack", database_url=url, broker="redis", redis_url=redis_url,
        device_clusters=2, device_workers=3, default_cluster=True,
        extra_env={"EMULATOR_HOST": "127.0.0.1", **{k: str(v) for k, v in ports.items()},
                   "ATOL_POLL_INTERVAL": "0.05", "IIKO_POLL_INTERVAL": "0.1"},
    )
    running = Stack(config)
    try:
        running.prepare()
        demo = json.loads(running.manage("demo", "--json").stdout)
        running.start(timeout=90)
        running.demo = demo
        yield running
    finally:
        running.stop()


def _order(number: int) -> dict:
    burger = next(p for p in menu.DEMO_PRODUCTS if p["id"] == menu.PRODUCT_BURGER_ID)
    quantity = 1 + number % 3
    total = f"{int(float(burger['price'])) * quantity}.00"
    return {"id": str(uuid.uuid4()), "payment": "card", "order_type": "takeaway", "total": total,
            "lines": [{"product_id": burger["id"], "name": burger["name"], "price": burger["price"],
                       "quantity": str(quantity), "vat": burger["vat"], "modifiers": []}]}


def _checkout(base_url: str, token: str, body: dict) -> dict:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        answer = http.post("/api/v1/orders", json=body)
        assert answer.status_code == 201, answer.text
        deadline = time.monotonic() + 90
        status = answer.json()
        while status["status"] not in FINAL and time.monotonic() < deadline:
            time.sleep(0.2)
            status = http.get(f"/api/v1/orders/{body['id']}").json()
        return status


def test_checkout_end_to_end_on_a_production_stack(stack, atol_emulator, kkm_emulator, dc_emulator, iiko_emulator):
    base = stack.url
    # The web server answers: health, a page rendered with manifest static names, a static file from whitenoise.
    health = httpx.get(f"{base}/health/", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    if "broker" in health.json():  # the extended health (database, broker, scheduler), once it is in views.py
        assert health.json()["broker"]["kind"] == "redis" and health.json()["database"]["ok"]
    login = httpx.get(f"{base}/login/", timeout=10)
    assert login.status_code == 200
    manifest = json.loads((stack.config.data_dir / "static" / "staticfiles.json").read_text())
    hashed = next(iter(manifest["paths"].values()))
    static = httpx.get(f"{base}/static/{hashed}", timeout=10)
    assert static.status_code == 200
    assert "max-age" in static.headers.get("cache-control", "")

    tokens = {k["code"]: k["token"] for k in stack.demo["kiosks"]}
    jobs = [(code, _order(n)) for n in range(ORDERS_PER_KIOSK) for code in ("K1", "K2")]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        answers = list(pool.map(lambda job: (job[0], _checkout(base, tokens[job[0]], job[1])), jobs))
    for code, answer in answers:
        assert answer["status"] == "completed", (code, answer, stack.tail())
        assert answer["receipt"]["fd"] and answer["card"]["rrn"] and answer["iiko"]["state"]

    # Exactly once in every journal, per kiosk.
    sells = [d for d in atol_emulator.journal() if d["type"] == "sell"]
    assert sorted((d["device"], d["fiscalDocumentNumber"]) for d in sells) == sorted(
        (code, a["receipt"]["fd"]) for code, a in answers)
    assert not [d for d in atol_emulator.journal() if d["type"] == "sellReturn"]
    kkm_sales = [e for e in kkm_emulator.journal() if e["operation"] == "sale"]
    dc_sales = [e for e in dc_emulator.journal() if e["operation"] == "sale"]
    assert [e["state"] for e in kkm_sales] == ["approved"] * ORDERS_PER_KIOSK
    assert [e["state"] for e in dc_sales] == ["approved"] * ORDERS_PER_KIOSK
    assert sorted(e["rrn"] for e in kkm_sales + dc_sales) == sorted(a["card"]["rrn"] for _, a in answers)
    created = [o for o in iiko_emulator.journal() if o["creationStatus"] == "Success"]
    assert sorted(o["externalNumber"] for o in created) == sorted(a["number"] for _, a in answers)
    assert len(iiko_emulator.journal()) == len(answers)

    # Both device clusters were up and serving the same queue; nothing crashed.
    stack.raise_if_dead()
    assert set(stack.processes) == {"devices1", "devices2", "default", "web"}


# --- /health/ for monitoring (the database, the broker and the schedules) ---------------------------------
def _extended_health() -> bool:
    from nekassir import views

    return hasattr(views, "_broker")


@pytest.mark.django_db
def test_health_answers_with_the_database_the_broker_and_the_schedules(client):
    if not _extended_health():
        pytest.skip("nekassir/views.py has the plain health check (database only)")
    from nekassir.schedules import ensure_schedules

    ensure_schedules()
    answer = client.get("/health/")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["status"] == "ok" and body["database"]["ok"] and body["scheduler"]["ok"]
    assert body["broker"] == {"ok": True, "kind": "orm", "queued": {"default": 0, "devices": 0}}


@pytest.mark.django_db
def test_health_is_503_when_the_broker_is_down(client, monkeypatch):
    if not _extended_health():
        pytest.skip("nekassir/views.py has the plain health check (database only)")
    import django_q.brokers

    def unreachable(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(django_q.brokers, "get_broker", unreachable)
    answer = client.get("/health/")
    assert answer.status_code == 503
    assert answer.json()["status"] == "fail" and answer.json()["broker"]["error"] == "ConnectionError"
