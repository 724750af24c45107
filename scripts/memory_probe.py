"""Memory of the product at N device workers, in a few minutes (issue 15; not part of ``make bench``).

    .venv/bin/python -m scripts.memory_probe 11 [--rounds 3] [--settle 75] [--redis-url URL]
    .venv/bin/python -m scripts.memory_probe 31

N is the active kiosks + 1 (N-1 kiosks; the product's own sizing once made it the device worker count).
Starts the production-like stack of ``scripts/bench/stack.py`` (gunicorn + device cluster sized by
``manage.py devicecluster``'s own rule, or ``--device-workers`` + default cluster; PostgreSQL database
``--database``, recreated; Redis ``--redis-url``, default MEMPROBE_REDIS_URL, BENCH_REDIS_URL or database 12)
with N-1 kiosks on the bench emulators, runs ``rounds`` rounds of one checkout per kiosk at once (so every
worker does real work), waits ``settle`` seconds (75: the default cluster's one-minute schedules run too),
and prints the sum of PSS (``/proc/<pid>/smaps_rollup``) of each part and of the whole, idle and after the
work, with the device cluster's processes one by one, and each round's order latency (POST → ``completed``
as the kiosk's 250 ms status polling sees it). Everything it started is stopped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import threading
import time

import httpx

from scripts.bench.common import PG_URL, ROOT, clear_redis_queues, recreate_database, say
from scripts.bench.stack import Stack, StackConfig

REDIS_URL = os.environ.get("MEMPROBE_REDIS_URL") or os.environ.get("BENCH_REDIS_URL") or "redis://127.0.0.1:6379/12"
DELAYS = {"print_delay": 0.3, "card_delay": 1.5, "iiko_delay": 0.2}


def _total(memory: dict[str, dict]) -> float:
    return sum(part["pss_sum_mib"] for part in memory.values())


def _line(label: str, memory: dict[str, dict]) -> str:
    parts = ", ".join(f"{name}: {m['pss_sum_mib']:.1f} MiB/{m['processes']}p" for name, m in memory.items())
    return f"{label}: total PSS {_total(memory):.1f} MiB ({parts})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workers", type=int, help="active kiosks + 1 (kiosks = workers - 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=75.0)
    parser.add_argument("--device-workers", type=int, default=None,
                        help="Q_DEVICE_WORKERS (default: not set, manage.py devicecluster's own rule)")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--database", default="nekassir_memprobe", help="PostgreSQL database, recreated")
    args = parser.parse_args(argv)

    data_dir = ROOT / "var" / "memprobe"
    shutil.rmtree(data_dir, ignore_errors=True)
    stack = Stack(StackConfig(data_dir=data_dir, database_url=recreate_database(PG_URL, args.database),
                              broker="redis", redis_url=args.redis_url, device_workers=args.device_workers))
    clear_redis_queues(args.redis_url)
    os.environ.update(stack.env())
    import django

    django.setup()
    from scripts.bench.checkout import FINAL, make_kiosks, order_body
    from scripts.bench.emulated import Emulators

    stack.prepare()
    emulators = Emulators(**DELAYS)
    kiosks, _ = make_kiosks(args.workers - 1, emulators)
    errors: list[str] = []
    latencies: list[float] = []

    def lane(token: str) -> None:
        try:
            with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
                body = order_body()
                status = http.post("/api/v1/orders", json=body).raise_for_status().json()["status"]
                t0 = time.monotonic()
                while status not in FINAL and time.monotonic() - t0 < 300:
                    time.sleep(0.25)
                    status = http.get(f"/api/v1/orders/{body['id']}").json()["status"]
                if status != "completed":
                    errors.append(status)
                else:
                    latencies.append(time.monotonic() - t0)
        except Exception as exc:  # reported below, and the exit code says it
            errors.append(repr(exc))

    try:
        stack.start(timeout=180)
        idle = stack.memory()
        rounds: list[str] = []
        for n in range(args.rounds):
            threads = [threading.Thread(target=lane, args=(token,)) for _, token in kiosks]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            done, latencies[:] = sorted(latencies), []
            rounds.append(f"round {n + 1}: {len(done)} completed, POST → completed median "
                          f"{statistics.median(done or [0]):.2f} s, max {max(done or [0]):.2f} s")
            say(f"{rounds[-1]}; device cluster {stack.memory()['devices']['pss_sum_mib']:.1f} MiB PSS")
        time.sleep(args.settle)
        after = stack.memory()
        label = f"[{args.workers - 1} kiosks, {after['devices']['processes']} device cluster processes] "
        print(label + _line("idle", idle))
        print(label + _line("after work", after))
        devices = sorted(after["devices"]["detail"], key=lambda p: p["pid"])
        print("device cluster, PSS of each process (MiB):", [round(p["pss_mib"], 1) for p in devices])
        print(f"order latency ({args.workers - 1} kiosks, one order each at once, delays {DELAYS}):")
        for line in rounds:
            print("  " + line)
        if errors:
            print("errors:", errors[:5])
    except Exception:
        say(stack.tail())
        raise
    finally:
        stack.stop()
        emulators.stop()
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
