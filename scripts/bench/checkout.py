"""Checkout benchmarks on a production-like stack: overhead at zero device delays, parallel kiosks, memory.

    python -m scripts.bench.checkout [--quick] [--out results.json]

One stack for the whole part (gunicorn gthread + the device cluster as ``manage.py devicecluster`` sizes it +
the default cluster, PostgreSQL, Redis broker; its own database ``nekassir_bench_checkout``, recreated each
run, and its own data folder under var/bench/), the emulators served in this process so the time spent in them
is known. The floor (scripts/bench/floor.py) runs side by side in the same run:

1. overhead: N orders on kiosk B01 alternating with N floor orders, device delays 0;
2. parallel: K kiosks × M orders at once with delays (receipt 1.5 s, card 5 s, iiko 1 s), and, at the
   same time, one floor lane doing M orders serially on its own devices: wall time ÷ that lane's time;
3. memory: peak RSS of the web server's and the clusters' processes after the parallel run;
4. job burst (scripts/bench/job_burst.py): kiosk B02's checkout, with the parallel run's delays, while 50
   panel job requests are sent for kiosk B01 (busy with its own guest) ÷ the same checkout alone.

``--parts`` runs only some of them (e.g. ``--parts burst``); the warm-up always runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from scripts.bench.common import (
    PG_URL,
    REDIS_URL,
    ROOT,
    clear_redis_queues,
    median,
    percentile,
    pg_reachable,
    recreate_database,
    redis_reachable,
    say,
    write_json,
)
from scripts.bench.stack import Stack, StackConfig

DB_NAME = "nekassir_bench_checkout"
FINAL = {"completed", "cancelled", "failed", "not_delivered"}
REALISTIC = {"print_delay": 1.5, "card_delay": 5.0, "iiko_delay": 1.0}
KIOSK_POLL = 0.25  # how often a bench kiosk asks for its order's status in the parallel run
PARTS = ("overhead", "parallel", "burst")


def order_body() -> dict[str, Any]:
    """A burger and two glasses of mors: 289.00 + 2 × 120.00."""
    from iiko import emulator as menu

    products = {p["id"]: p for p in menu.DEMO_PRODUCTS}
    lines = []
    for product_id, quantity in ((menu.PRODUCT_BURGER_ID, "1"), (menu.PRODUCT_MORS_ID, "2")):
        p = products[product_id]
        lines.append({"product_id": p["id"], "name": p["name"], "price": p["price"], "quantity": quantity,
                      "vat": p["vat"], "modifiers": []})
    return {"id": str(uuid.uuid4()), "lines": lines, "total": "529.00", "payment": "card", "order_type": "takeaway"}


def make_kiosks(count: int, emulators) -> tuple[list[tuple[Any, str]], Any]:
    """``count`` active kiosks (KKM Server terminals) and an inactive one for the floor, on the emulators."""
    from core.models import IikoConnection, Kiosk, KioskToken
    from iiko import emulator as menu

    connection = IikoConnection.objects.create(name="bench", base_url=emulators.url("iiko"),
                                               api_login=menu.DEMO_API_LOGIN)
    common = {
        "has_register": True, "atol_url": emulators.url("atol"), "terminal_transport": "kkm",
        "terminal_kind": "sberbank", "kkm_url": emulators.url("kkm"), "print_slips": False, "iiko": connection,
        "iiko_organization_id": menu.ORG_ID, "iiko_terminal_group_id": menu.TERMINAL_GROUP_ID,
        "iiko_payment_type_id": menu.CARD_PAYMENT_TYPE_ID,
        "iiko_order_type_takeaway_id": menu.ORDER_TYPE_TAKEAWAY_ID,
        "iiko_order_type_dine_in_id": menu.ORDER_TYPE_DINE_IN_ID,
    }
    kiosks = []
    for n in range(1, count + 1):
        kiosk = Kiosk.objects.create(code=f"B{n:02d}", name=f"Bench {n}", atol_device_id=f"B{n:02d}",
                                     kkm_device_number=n, **common)
        kiosks.append((kiosk, KioskToken.issue(kiosk)))
    # The floor sends its receipts without a register session, so its requisites are set here (the emulated
    # register is registered for an automatic device and refuses a receipt without a machine number).
    floor = Kiosk.objects.create(code="FLOOR", name="Floor (wire clients only)", active=False,
                                 atol_device_id="FLOOR", kkm_device_number=99, machine_number="KIOSK-FLOOR",
                                 **common)
    return kiosks, floor


def completion(order_id: str, timeout: float = 120.0, every: float = 0.01) -> tuple[str, float, float]:
    """Wait until the order is done; (status, monotonic time it was done by the server, when we saw it)."""
    from nekassir.models import Order

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = Order.objects.filter(pk=order_id, step=Order.Step.DONE).values_list("status", "updated_at").first()
        if row is not None:
            seen = time.monotonic()
            done = seen - (time.time() - row[1].timestamp())
            return row[0], done, seen
        time.sleep(every)
    raise TimeoutError(f"order {order_id} not done in {timeout}s")


def warm_up(stack: Stack, kiosks: list[tuple[Any, str]], floor, timeout: float) -> list[str]:
    """One order per kiosk and two at the floor, each waited for: every shift opened, every connection made, the
    requisites read, before anything is timed. Returns the kiosks' order ids (in the kiosks' order)."""
    from scripts.bench.floor import build_floor_order

    placed = []
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        for _, token in kiosks:
            body = order_body()
            http.post("/api/v1/orders", json=body, headers={"Authorization": f"Bearer {token}"}).raise_for_status()
            placed.append(body["id"])
    for order_id in placed:
        completion(order_id, timeout=timeout)
    for _ in range(2):
        floor.run(build_floor_order(floor.kiosk, order_body()))
    return placed


# --- 1. overhead -----------------------------------------------------------------------------------
def run_overhead(stack: Stack, emulators, kiosk_token: tuple[Any, str], floor, n: int) -> dict[str, Any]:
    from scripts.bench.floor import build_floor_order

    _, token = kiosk_token
    ours, ours_emulated, ours_seen, placed = [], [], [], []
    floors, floors_emulated = [], []
    failures = []
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        for i in range(n):
            body = order_body()
            t_wall = time.time()
            t0 = time.monotonic()
            answer = http.post("/api/v1/orders", json=body)
            if answer.status_code != 201:
                failures.append(f"POST {answer.status_code}: {answer.text[:200]}")
                continue
            status, done, seen = completion(body["id"])
            if status != "completed":
                failures.append(f"order {body['id']}: {status}")
            ours.append(done - t0)
            ours_seen.append(seen - t0)
            ours_emulated.append(emulators.recorder.busy(t0, done))
            placed.append((body["id"], t_wall))

            order = build_floor_order(floor.kiosk, order_body())  # payloads built before the clock starts
            t0 = time.monotonic()
            floor.run(order)
            t1 = time.monotonic()
            floors.append(t1 - t0)
            floors_emulated.append(emulators.recorder.busy(t0, t1))
            if (i + 1) % 10 == 0:
                say(f"  overhead: {i + 1}/{n} (ours median {median(ours) * 1000:.0f} ms, "
                    f"floor median {median(floors) * 1000:.0f} ms)")
    ours_overhead = [t - e for t, e in zip(ours, ours_emulated, strict=True)]
    floor_overhead = [t - e for t, e in zip(floors, floors_emulated, strict=True)]
    result = {
        "orders": n,
        "ours_median_s": median(ours), "ours_p95_s": percentile(ours, 95),
        "ours_seen_median_s": median(ours_seen),
        "floor_median_s": median(floors), "floor_p95_s": percentile(floors, 95),
        "ratio_median": median(ours) / median(floors),
        "ratio_p95": percentile(ours, 95) / percentile(floors, 95),
        "ours_in_emulators_median_s": median(ours_emulated),
        "floor_in_emulators_median_s": median(floors_emulated),
        "ours_overhead_median_s": median(ours_overhead), "ours_overhead_p95_s": percentile(ours_overhead, 95),
        "floor_overhead_median_s": median(floor_overhead),
        "failures": failures,
        "phases": phases(placed),
    }
    return result


def phases(placed: list[tuple[str, float]]) -> dict[str, float]:
    """Where an order's time goes, from the timestamps the checkout stores (medians, seconds)."""
    return {name: median(values) for name, values in phase_spans(placed).items()}


def phase_spans(placed: list[tuple[str, float]]) -> dict[str, list[float]]:
    """Every order's spans between the timestamps the checkout stores (seconds), by span; ``placed`` is
    (order id, wall-clock time of its POST)."""
    from nekassir.models import IikoAttempt, Order

    spans: dict[str, list[float]] = {k: [] for k in (
        "post_to_saved", "saved_to_receipt_sent", "receipt", "receipt_to_card", "card", "card_to_iiko_sent",
        "iiko", "iiko_to_completed")}
    posted = dict(placed)
    orders = Order.objects.filter(pk__in=list(posted)).select_related("sell_operation", "card_sale")
    for order in orders:
        sell, card = order.sell_operation, order.card_sale
        attempt = IikoAttempt.objects.filter(order=order).order_by("id").first()
        if not (sell and card and attempt and sell.finished_at and card.finished_at and attempt.finished_at):
            continue
        ts = [posted[str(order.pk)], order.created_at.timestamp(), (sell.sent_at or sell.created_at).timestamp(),
              sell.finished_at.timestamp(), (card.sent_at or card.created_at).timestamp(),
              card.finished_at.timestamp(), (attempt.sent_at or attempt.created_at).timestamp(),
              attempt.finished_at.timestamp(), order.updated_at.timestamp()]
        for values, a, b in zip(spans.values(), ts, ts[1:], strict=False):
            values.append(b - a)
    return spans


# --- 2. parallel kiosks ----------------------------------------------------------------------------
def run_parallel(stack: Stack, emulators, kiosks: list[tuple[Any, str]], floor, orders: int) -> dict[str, Any]:
    from scripts.bench.floor import build_floor_order

    emulators.set_delays(**REALISTIC)
    lanes: dict[str, list[tuple[float, float, str]]] = {}
    errors: list[str] = []
    floor_orders = [build_floor_order(floor.kiosk, order_body()) for _ in range(orders)]
    floor_times: list[float] = []

    def kiosk_lane(code: str, token: str) -> None:
        done = lanes.setdefault(code, [])
        try:
            with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
                for _ in range(orders):
                    body = order_body()
                    t0 = time.monotonic()
                    answer = http.post("/api/v1/orders", json=body)
                    if answer.status_code != 201:
                        errors.append(f"{code}: POST {answer.status_code}")
                        continue
                    status = answer.json()["status"]
                    while status not in FINAL and time.monotonic() - t0 < 300:
                        time.sleep(KIOSK_POLL)
                        status = http.get(f"/api/v1/orders/{body['id']}").json()["status"]
                    done.append((t0, time.monotonic(), status))
        except Exception as exc:
            errors.append(f"{code}: {exc!r}")

    def floor_lane() -> None:
        try:
            for order in floor_orders:
                t0 = time.monotonic()
                floor.run(order)
                floor_times.append((t0, time.monotonic()))
        except Exception as exc:
            errors.append(f"floor: {exc!r}")

    threads = [threading.Thread(target=kiosk_lane, args=(k.code, token)) for k, token in kiosks]
    threads.append(threading.Thread(target=floor_lane))
    say(f"  parallel: {len(kiosks)} kiosks × {orders} orders + a floor lane, delays {REALISTIC}")
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    emulators.set_delays(0.0, 0.0, 0.0)
    starts = [t0 for lane in lanes.values() for t0, _, _ in lane]
    ends = [t1 for lane in lanes.values() for _, t1, _ in lane]
    statuses: dict[str, int] = {}
    for lane in lanes.values():
        for _, _, status in lane:
            statuses[status] = statuses.get(status, 0) + 1
    wall = max(ends) - min(starts) if starts else float("nan")
    floor_serial = floor_times[-1][1] - floor_times[0][0] if floor_times else float("nan")
    nominal = orders * sum(REALISTIC.values())
    per_order = [t1 - t0 for lane in lanes.values() for t0, t1, _ in lane]
    return {
        "kiosks": len(kiosks), "orders_per_kiosk": orders, "delays": REALISTIC, "kiosk_poll_s": KIOSK_POLL,
        "wall_s": wall, "floor_serial_s": floor_serial, "nominal_serial_s": nominal,
        "ratio": wall / floor_serial, "ratio_nominal": wall / nominal,
        "order_median_s": median(per_order), "order_p95_s": percentile(per_order, 95),
        "floor_order_median_s": median(b - a for a, b in floor_times),
        "statuses": statuses, "errors": errors,
    }


def journal_check(emulators, kiosks: list[tuple[Any, str]]) -> dict[str, Any]:
    """Every completed order made exactly one sell receipt, one approved sale and one iiko order."""
    from nekassir.models import Order

    completed = Order.objects.filter(status="completed", kiosk__code__startswith="B").count()
    journals = emulators.journals()
    sells = [d for d in journals["atol"] if d["type"] == "sell" and d["device"].startswith("B")]
    sales = [e for e in journals["kkm"] if e["operation"] == "sale" and e["state"] == "approved"]
    ours_sales = [e for e in sales if str(e.get("device")) != "99"]
    return {"completed_orders": completed, "sell_receipts": len(sells), "approved_sales": len(ours_sales),
            "ok": completed == len(sells) == len(ours_sales)}


# --- the part --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller N: a smoke check of a few minutes")
    parser.add_argument("--orders", type=int, help="overhead: orders of ours (and as many at the floor)")
    parser.add_argument("--kiosks", type=int, default=10)
    parser.add_argument("--parallel-orders", type=int, help="orders per kiosk in the parallel run")
    parser.add_argument("--burst-repeats", type=int, help="job burst: pairs of orders (alone, under the burst)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "checkout.json")
    args = parser.parse_args(argv)
    n = args.orders or (20 if args.quick else 100)
    per_kiosk = args.parallel_orders or (3 if args.quick else 20)
    burst_repeats = args.burst_repeats or (1 if args.quick else 3)
    for problem in (pg_reachable(), redis_reachable()):
        if problem:
            say(problem)
            return 2

    data_dir = ROOT / "var" / "bench" / "checkout"
    shutil.rmtree(data_dir, ignore_errors=True)
    stack = Stack(StackConfig(data_dir=data_dir, database_url=recreate_database(PG_URL, DB_NAME),
                              broker="redis", redis_url=REDIS_URL))
    clear_redis_queues(REDIS_URL)
    os.environ.update(stack.env())
    import django

    django.setup()
    import logging

    logging.getLogger("nekassir").setLevel(logging.WARNING)  # this process only builds floor payloads
    from scripts.bench.emulated import Emulators
    from scripts.bench.floor import Floor

    say("checkout: migrating the bench database, collecting static files")
    stack.prepare()
    emulators = Emulators()
    kiosks, floor_kiosk = make_kiosks(args.kiosks, emulators)
    floor = Floor(floor_kiosk)
    results: dict[str, Any] = {}
    try:
        say(f"checkout: starting gunicorn + device cluster ({args.kiosks} kiosks) + default cluster")
        stack.start()
        say("checkout: warm-up (one order per kiosk, two at the floor: opens every shift, connects)")
        warm_up(stack, kiosks, floor, timeout=180)
        if "overhead" in args.parts:
            say(f"checkout: overhead, {n} orders of ours and {n} at the floor, device delays 0")
            emulators.recorder.forget_before(time.monotonic())
            results["overhead"] = run_overhead(stack, emulators, kiosks[0], floor, n)
        if "parallel" in args.parts:
            results["parallel"] = run_parallel(stack, emulators, kiosks, floor, per_kiosk)
            results["memory"] = stack.memory()
            results["journal"] = journal_check(emulators, kiosks)
        if "burst" in args.parts:
            from scripts.bench.job_burst import BURST, run_job_burst

            say(f"checkout: job burst, {burst_repeats} × ({kiosks[1][0].code} alone, then under {BURST} job "
                f"requests for {kiosks[0][0].code})")
            results["job_burst"] = run_job_burst(stack, emulators, kiosks, burst_repeats)
        results["stack"] = {"web": f"gunicorn gthread {stack.config.gunicorn_workers}×{stack.config.gunicorn_threads}",
                            "device_workers": "manage.py devicecluster's own rule",
                            "broker": "redis", "database": "postgresql",
                            "settings": _client_settings()}
    except Exception:
        say(stack.tail())
        raise
    finally:
        stack.stop()
        floor.close()
        emulators.stop()
    write_json(args.out, results)
    from scripts.bench.report import checkout_lines

    for line in checkout_lines(results):
        print(line, flush=True)
    return 0


def _client_settings() -> dict[str, float]:
    from django.conf import settings

    return {name: getattr(settings, name) for name in (
        "ATOL_POLL_INTERVAL", "IIKO_POLL_INTERVAL", "TERMINAL_POLL_INTERVAL")}


if __name__ == "__main__":
    sys.exit(main())
