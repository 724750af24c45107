"""Thirty kiosks on one venue server (issue 15 item 1), and the product's memory with them (item 2).

    python -m scripts.bench.kiosks30 [--quick] [--kiosks 30] [--orders 10] [--slow-card 120]
                                     [--clients process|inline] [--out results.json]

Its own production-like stack (scripts/bench/stack.py: gunicorn gthread 2 × 4, PostgreSQL, Redis broker,
the default cluster, and the device cluster as ``manage.py devicecluster`` sizes it: 4 worker processes
whose threads run the 30 kiosks' checkouts), its own database ``nekassir_bench_kiosks30`` (recreated each run) and
the emulators in this process, with the parallel run's delays (receipt 1.5 s, card 5 s, iiko 1 s):

1. idle: after a warm-up (one order per kiosk), ``--idle-polls`` GETs of a kiosk's status URL, one every
   ``--idle-every`` s, on the idle server: the reference latency;
2. load: every kiosk posts ``--orders`` orders one after another and polls each one's status every 0.25 s
   until final; one kiosk has a slow guest (its first card takes ``--slow-card`` s: the KKM emulator's
   ``busy`` fault on that terminal); a manager, logged in, keeps the venue page open (its htmx fragments
   polled at the page's own intervals). At the same time a floor lane (scripts/bench/floor.py) does
   ``--orders`` orders serially on devices of its own: one kiosk's serial device time, in the same run;
3. the sum of PSS over every process of the stack (scripts/bench/memory.py), then the emulators' journals.

The kiosks and the manager run in a process of their own (scripts/bench/kiosk_clients.py): see
docs/BENCHMARKS.md for why (``--clients inline`` runs them in this process instead, to compare).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from scripts.bench.common import (
    PG_URL,
    PY,
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

DB_NAME = "nekassir_bench_kiosks30"
KIOSK_POLL = 0.25
START_MARGIN = 5.0  # seconds for the clients' process to start before the kiosks and the floor lane begin


def run_clients(spec: dict[str, Any], mode: str, work_dir: Path) -> subprocess.Popen | dict[str, Any]:
    """Start the clients: a process of their own (returns it), or, ``inline``, in a thread of this process."""
    if mode == "inline":
        from scripts.bench.kiosk_clients import Load, run_idle

        box: dict[str, Any] = {}

        def go() -> None:
            box.update(run_idle(spec) if spec["mode"] == "idle" else Load(spec).run())

        thread = threading.Thread(target=go)
        thread.start()
        box["_thread"] = thread
        return box
    spec_path, out_path = work_dir / f"clients-{spec['mode']}.json", work_dir / f"clients-{spec['mode']}-out.json"
    out_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps(spec))
    return subprocess.Popen([PY, "-m", "scripts.bench.kiosk_clients", "--spec", str(spec_path),  # noqa: S603
                             "--out", str(out_path)], cwd=ROOT)


def clients_result(handle: subprocess.Popen | dict[str, Any], mode: str, work_dir: Path, timeout: float
                   ) -> dict[str, Any]:
    if isinstance(handle, dict):
        handle.pop("_thread").join(timeout)
        return handle
    try:
        code = handle.wait(timeout)
    except subprocess.TimeoutExpired:
        handle.kill()
        handle.wait()
        raise
    if code != 0:
        raise RuntimeError(f"kiosk clients exited with {code}")
    return json.loads((work_dir / f"clients-{mode}-out.json").read_text())


def idle_polls(stack: Stack, token: str, order_id: str, count: int, every: float, mode: str, work: Path
               ) -> dict[str, Any]:
    spec = {"mode": "idle", "url": stack.url, "token": token, "order_id": order_id, "count": count, "every": every}
    result = clients_result(run_clients(spec, mode, work), "idle", work, timeout=count * every + 300)
    lat = result["latencies"]
    return {"count": len(lat), "every_s": every, "p50_ms": median(lat) * 1000, "p95_ms": percentile(lat, 95) * 1000,
            "max_ms": max(lat, default=float("nan")) * 1000, "errors": result["errors"],
            "reconnects": result["reconnects"]}


def run_load(stack: Stack, emulators, kiosks: list[tuple[Any, str]], floor, orders: int, slow_card: float,
             cookies: dict[str, str], mode: str, work: Path, manager: bool = True) -> dict[str, Any]:
    from scripts.bench.checkout import REALISTIC, order_body
    from scripts.bench.floor import build_floor_order

    emulators.set_delays(**REALISTIC)
    slow = kiosks[-1][0] if slow_card > 0 else None
    if slow is not None:
        # The guest holds the PIN pad slow_card seconds in all on this kiosk's first sale (card_delay + busy).
        emulators.kkm.faults.add("busy", count=1, device=str(slow.kkm_device_number), operation="sale",
                                 seconds=slow_card - REALISTIC["card_delay"])
    floor_orders = [build_floor_order(floor.kiosk, order_body()) for _ in range(orders)]
    start_at = time.monotonic() + START_MARGIN
    spec = {"mode": "load", "url": stack.url, "start_at": start_at, "poll": KIOSK_POLL, "stagger": KIOSK_POLL,
            "manager": manager,
            "order_timeout": 300.0 + slow_card, "cookies": cookies,
            "kiosks": [{"code": k.code, "token": token, "bodies": [order_body() for _ in range(orders)]}
                       for k, token in kiosks]}
    floor_times: list[tuple[float, float]] = []
    floor_errors: list[str] = []

    def floor_lane() -> None:
        time.sleep(max(0.0, start_at - time.monotonic()))
        try:
            for order in floor_orders:
                t0 = time.monotonic()
                floor.run(order)
                floor_times.append((t0, time.monotonic()))
        except Exception as exc:
            floor_errors.append(f"floor: {exc!r}")

    say(f"  kiosks30: {len(kiosks)} kiosks × {orders} orders + a floor lane, delays {REALISTIC}, slow guest "
        f"{f'{slow_card:.0f} s on {slow.code}' if slow else 'none'}, clients {mode}")
    cpu0 = os.times()
    handle = run_clients(spec, mode, work)
    lane = threading.Thread(target=floor_lane)
    lane.start()
    load = clients_result(handle, "load", work, timeout=START_MARGIN + orders * 60 + slow_card + 600)
    lane.join()
    cpu1 = os.times()
    emulators.set_delays(0.0, 0.0, 0.0)
    result = analyse(load, floor_times, floor_errors, slow.code if slow else None, len(kiosks), orders, slow_card,
                     cpu=(cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), mode=mode)
    result["phases"] = order_phases(load, slow.code if slow else None)
    return result


def order_phases(load: dict[str, Any], slow_code: str | None) -> dict[str, dict[str, float]]:
    """Where the 29 normal kiosks' orders spent their time, span by span (median, p95, max in ms), from the
    timestamps the checkout stores: what a kiosk waits for beyond the devices' own time. The clients' POST
    times are CLOCK_MONOTONIC, shared by every process of the machine, turned into wall-clock time here."""
    from scripts.bench.checkout import phase_spans

    offset = time.time() - time.monotonic()
    placed = [(o["id"], o["t_post"] + offset) for o in load["orders"] if o["kiosk"] != slow_code]
    return {name: {"median_ms": median(v) * 1000, "p95_ms": percentile(v, 95) * 1000,
                   "max_ms": max(v, default=float("nan")) * 1000}
            for name, v in phase_spans(placed).items()}


def analyse(load: dict[str, Any], floor_times: list[tuple[float, float]], floor_errors: list[str],
            slow_code: str | None, kiosks: int, orders: int, slow_card: float, cpu: float, mode: str
            ) -> dict[str, Any]:
    from scripts.bench.checkout import REALISTIC

    normal = [o for o in load["orders"] if o["kiosk"] != slow_code]
    slow = [o for o in load["orders"] if o["kiosk"] == slow_code]
    start = min(o["t_post"] for o in normal)
    finished = [o["t_final"] for o in normal if o["t_final"] is not None]
    end = max(finished) if finished else float("nan")
    wall = end - start
    floor_serial = floor_times[-1][1] - floor_times[0][0] if floor_times else float("nan")
    statuses: dict[str, int] = {}
    for o in load["orders"]:
        statuses[str(o["status"])] = statuses.get(str(o["status"]), 0) + 1
    per_order = [o["t_final"] - o["t_post"] for o in normal if o["t_final"] is not None]
    slow_done = [o["t_final"] for o in slow if o["t_final"] is not None]
    # The status GETs while the 29 normal kiosks were at work (after that only the slow one polls).
    in_window = [s for t, s, _ in load["polls"] if start <= t <= end]
    every = [s for _, s, _ in load["polls"]]
    panel = [s for _, s, _, _ in load["panel"]]
    counts = dict(load["counts"])
    counts["missing_orders"] = kiosks * orders - sum(1 for o in load["orders"] if o["t_final"] is not None)
    counts["floor_errors"] = len(floor_errors)
    run_wall = load["wall_s"]
    return {
        "kiosks": kiosks, "orders_per_kiosk": orders, "delays": REALISTIC, "kiosk_poll_s": KIOSK_POLL,
        "slow_kiosk": slow_code, "slow_card_s": slow_card, "clients": mode,
        "wall_s": wall, "floor_serial_s": floor_serial, "nominal_serial_s": orders * sum(REALISTIC.values()),
        "ratio": wall / floor_serial,
        "order_median_s": median(per_order), "order_p95_s": percentile(per_order, 95),
        "floor_order_median_s": median(b - a for a, b in floor_times),
        "slow_kiosk_wall_s": (max(slow_done) - min(o["t_post"] for o in slow)) if slow_done else float("nan"),
        "statuses": statuses,
        "status_poll": {"count": len(in_window), "count_all": len(every),
                        "p50_ms": median(in_window) * 1000, "p95_ms": percentile(in_window, 95) * 1000,
                        "p99_ms": percentile(in_window, 99) * 1000, "max_ms": max(in_window, default=0.0) * 1000,
                        "p95_all_ms": percentile(every, 95) * 1000,
                        "per_second": len(in_window) / wall if wall > 0 else float("nan")},
        "panel": {"fragments": [list(f) for f in load["fragments"]], "requests": len(panel),
                  "p50_ms": median(panel) * 1000, "p95_ms": percentile(panel, 95) * 1000,
                  "max_ms": max(panel, default=0.0) * 1000,
                  "statuses": dict(Counter(str(s) for *_, s in load["panel"]))},
        "errors": counts, "error_samples": (load["errors"] + floor_errors)[:20], "reconnects": load["reconnects"],
        "cpu": {"emulators_process_pct": 100 * cpu / run_wall if run_wall else float("nan"),
                "clients_process_pct": 100 * load["cpu_s"] / run_wall if run_wall else float("nan"),
                "clients_process": mode == "process"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 kiosks × 2 orders, a 15 s slow guest, quick idle")
    parser.add_argument("--kiosks", type=int, default=30)
    parser.add_argument("--orders", type=int, help="orders per kiosk (10; quick 2)")
    parser.add_argument("--slow-card", type=float, help="seconds of the slow guest's card (120; quick 15; 0 = none)")
    parser.add_argument("--idle-polls", type=int, help="status GETs on the idle server (240; quick 200)")
    parser.add_argument("--idle-every", type=float, help="seconds between them (0.25 as a kiosk; quick 0.05)")
    parser.add_argument("--clients", choices=("process", "inline"), default="process",
                        help="kiosks and manager in a process of their own (default) or in the emulators' one")
    parser.add_argument("--no-manager", action="store_true",
                        help="no manager's venue page during the load (its share of the kiosks' latency)")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "kiosks30.json")
    args = parser.parse_args(argv)
    orders = args.orders or (2 if args.quick else 10)
    slow_card = args.slow_card if args.slow_card is not None else (15.0 if args.quick else 120.0)
    idle_count = args.idle_polls or (200 if args.quick else 240)
    idle_every = args.idle_every or (0.05 if args.quick else KIOSK_POLL)
    for problem in (pg_reachable(), redis_reachable()):
        if problem:
            say(problem)
            return 2

    data_dir = ROOT / "var" / "bench" / "kiosks30"
    shutil.rmtree(data_dir, ignore_errors=True)
    stack = Stack(StackConfig(data_dir=data_dir, database_url=recreate_database(PG_URL, DB_NAME),
                              broker="redis", redis_url=REDIS_URL))
    clear_redis_queues(REDIS_URL)
    os.environ.update(stack.env())
    import django

    django.setup()
    import logging

    logging.getLogger("nekassir").setLevel(logging.WARNING)
    from scripts.bench.checkout import _client_settings, journal_check, make_kiosks, warm_up
    from scripts.bench.emulated import Emulators
    from scripts.bench.floor import Floor
    from scripts.bench.job_burst import login
    from scripts.bench.memory import product_processes, product_pss_mib

    say("kiosks30: migrating the bench database, collecting static files")
    stack.prepare()
    emulators = Emulators()
    kiosks, floor_kiosk = make_kiosks(args.kiosks, emulators)
    floor = Floor(floor_kiosk)
    results: dict[str, Any] = {}
    try:
        say("kiosks30: starting gunicorn + device cluster (devicecluster's own size) + default cluster")
        stack.start(timeout=240)
        say("kiosks30: warm-up (one order per kiosk, two at the floor: opens every shift, connects)")
        warm = warm_up(stack, kiosks, floor, timeout=300)
        cookies, _ = login(stack)
        time.sleep(2.0)
        say(f"kiosks30: idle server, {idle_count} status GETs, one every {idle_every} s")
        idle = idle_polls(stack, kiosks[0][1], warm[0], idle_count, idle_every, args.clients, data_dir)
        run = run_load(stack, emulators, kiosks, floor, orders, slow_card, cookies, args.clients, data_dir,
                       manager=not args.no_manager)
        run["status_poll_idle"] = idle
        run["errors"]["idle_errors"] = len(idle["errors"])
        run["ratio_poll"] = run["status_poll"]["p95_ms"] / idle["p95_ms"]
        memory = stack.memory()
        journal = journal_check(emulators, kiosks)
        run["errors"]["journal_mismatch"] = 0 if journal["ok"] else 1
        run["errors_total"] = sum(run["errors"].values())
        results = {
            "kiosks30": run, "memory": memory, "memory_pss_mib": product_pss_mib(memory),
            "memory_processes": product_processes(memory), "journal": journal,
            "stack": {"web": f"gunicorn gthread {stack.config.gunicorn_workers}×{stack.config.gunicorn_threads}",
                      "device_processes": memory.get("devices", {}).get("processes"), "broker": "redis",
                      "database": "postgresql", "settings": _client_settings()},
        }
    except Exception:
        say(stack.tail())
        raise
    finally:
        stack.stop()
        floor.close()
        emulators.stop()
    write_json(args.out, results)
    from scripts.bench.report import kiosks30_lines

    for line in kiosks30_lines(results):
        print(line, flush=True)
    for name, span in results.get("kiosks30", {}).get("phases", {}).items():
        say(f"  span {name:22s} median {span['median_ms']:8.1f} ms  p95 {span['p95_ms']:8.1f}  "
            f"max {span['max_ms']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
