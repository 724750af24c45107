"""Memory of the product at N device workers, in a few minutes (issue 15; not part of ``make bench``).

    .venv/bin/python -m scripts.memory_probe 11 [--rounds 3] [--settle 75]
    .venv/bin/python -m scripts.memory_probe 31

Starts the production-like stack of ``scripts/bench/stack.py`` (gunicorn + device cluster with
``Q_DEVICE_WORKERS=N`` + default cluster; PostgreSQL database ``nekassir_memprobe``, recreated; Redis
database 12) with N-1 kiosks on the bench emulators, runs ``rounds`` rounds of one checkout per kiosk at
once (so every worker does real work), waits ``settle`` seconds (75: the default cluster's one-minute
schedules run too), and prints the sum of PSS (``/proc/<pid>/smaps_rollup``) of each part and of the whole,
idle and after the work, with the device cluster's processes one by one. Everything it started is stopped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time

import httpx

from scripts.bench.common import PG_URL, ROOT, clear_redis_queues, recreate_database, say
from scripts.bench.stack import Stack, StackConfig

REDIS_URL = os.environ.get("MEMPROBE_REDIS_URL", "redis://127.0.0.1:6379/12")
DELAYS = {"print_delay": 0.3, "card_delay": 1.5, "iiko_delay": 0.2}


def _total(memory: dict[str, dict]) -> float:
    return sum(part["pss_sum_mib"] for part in memory.values())


def _line(label: str, memory: dict[str, dict]) -> str:
    parts = ", ".join(f"{name}: {m['pss_sum_mib']:.1f} MiB/{m['processes']}p" for name, m in memory.items())
    return f"{label}: total PSS {_total(memory):.1f} MiB ({parts})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workers", type=int, help="Q_DEVICE_WORKERS (kiosks = workers - 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=75.0)
    args = parser.parse_args(argv)

    data_dir = ROOT / "var" / "memprobe"
    shutil.rmtree(data_dir, ignore_errors=True)
    stack = Stack(StackConfig(data_dir=data_dir, database_url=recreate_database(PG_URL, "nekassir_memprobe"),
                              broker="redis", redis_url=REDIS_URL, device_workers=args.workers))
    clear_redis_queues(REDIS_URL)
    os.environ.update(stack.env())
    import django

    django.setup()
    from scripts.bench.checkout import FINAL, make_kiosks, order_body
    from scripts.bench.emulated import Emulators

    stack.prepare()
    emulators = Emulators(**DELAYS)
    kiosks, _ = make_kiosks(args.workers - 1, emulators)
    errors: list[str] = []

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
        except Exception as exc:  # reported below, and the exit code says it
            errors.append(repr(exc))

    try:
        stack.start(timeout=180)
        idle = stack.memory()
        for n in range(args.rounds):
            threads = [threading.Thread(target=lane, args=(token,)) for _, token in kiosks]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            say(f"round {n + 1}: device cluster {stack.memory()['devices']['pss_sum_mib']:.1f} MiB PSS")
        time.sleep(args.settle)
        after = stack.memory()
        print(f"[{args.workers} device workers] " + _line("idle", idle))
        print(f"[{args.workers} device workers] " + _line("after work", after))
        devices = sorted(after["devices"]["detail"], key=lambda p: p["pid"])
        print("device cluster, PSS of each process (MiB):", [round(p["pss_mib"], 1) for p in devices])
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
