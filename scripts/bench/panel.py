"""The service pages at scale on PostgreSQL: server time and SQL queries per page.

    python -m scripts.bench.panel [--quick] [--out results.json]

Two databases, each generated once and kept between runs (scripts/bench/panel_data.py): the large one
(``nekassir_bench``: 1,000,000 orders over 3,000 shifts; ``--quick``: ``nekassir_bench_100k``, 100,000
over 300) and the small one (``nekassir_bench_10k``: 10,000 over 30), the same venue shape (~333 orders a
shift). Each scale is measured in its own process (Django is configured for one database per process):
Django's test client in-process, logged in as a superuser, DEBUG off, production static storage.
Pages: the venue page, a closed shift from the middle of the history, an order of that shift, the
Django admin changelist of that shift's orders, the order search and the journal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scripts.bench.common import (
    PG_URL,
    PY,
    ROOT,
    database_exists,
    database_url,
    median,
    percentile,
    pg_reachable,
    recreate_database,
    say,
    write_json,
)

SCALES = {
    "large": ("nekassir_bench", 1_000_000, 3_000),
    "large_quick": ("nekassir_bench_100k", 100_000, 300),
    "small": ("nekassir_bench_10k", 10_000, 30),
}
DATA_DIR = ROOT / "var" / "bench" / "panel"


def _env(url: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "nekassir.settings", "DATABASE_URL": url, "NEKASSIR_DATA_DIR": str(DATA_DIR),
        "SECRET_KEY": "bench-panel-not-secret", "DEBUG": "false", "ALLOWED_HOSTS": "testserver,127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }


def _meta(url: str) -> dict[str, Any] | None:
    import psycopg

    with psycopg.connect(url) as conn:
        if not conn.execute("SELECT to_regclass('bench_meta') IS NOT NULL").fetchone()[0]:
            return None
        row = conn.execute("SELECT value FROM bench_meta WHERE key = 'generated'").fetchone()
        return row[0] if row else None


def _manage(url: str, *args: str) -> None:
    subprocess.run([PY, str(ROOT / "manage.py"), *args], cwd=ROOT, env={**os.environ, **_env(url)},  # noqa: S603
                   check=True, capture_output=True, text=True, timeout=1800)


def ensure_data(name: str, orders: int, shifts: int) -> tuple[str, dict[str, Any], bool]:
    """The database's URL, its generation record, and whether it was generated now."""
    from scripts.bench.panel_data import GENERATOR_VERSION

    url = database_url(PG_URL, name)
    meta = _meta(url) if database_exists(PG_URL, name) else None
    fresh = not (meta and meta.get("version") == GENERATOR_VERSION and meta.get("orders") == orders
                 and meta.get("shifts") == shifts)
    if fresh:
        say(f"panel: generating {name}: {orders:,} orders over {shifts:,} shifts (once; kept for later runs)")
        recreate_database(PG_URL, name)
    _manage(url, "migrate", "--noinput")  # a no-op when the schema is current
    return url, meta or {}, fresh


def measure_scale(name: str, orders: int, shifts: int, repeat: int) -> dict[str, Any]:
    """Runs in its own process: ensure the data, then time every page."""
    url, meta, fresh = ensure_data(name, orders, shifts)
    os.environ.update(_env(url))
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    if not (DATA_DIR / "static" / "staticfiles.json").exists():
        _manage(url, "collectstatic", "--noinput")
    import django

    django.setup()
    if fresh:
        from scripts.bench.panel_data import generate, vacuum_analyze

        meta = generate(orders, shifts, say)
        t0 = time.monotonic()
        vacuum_analyze(url)
        meta["vacuum_s"] = round(time.monotonic() - t0, 1)
        say(f"panel: {name} generated in {meta['seconds']} s (+ VACUUM ANALYZE {meta['vacuum_s']} s), "
            f"{meta['size_mib']} MiB")
    return {"database": name, "orders": orders, "shifts": shifts, "meta": meta, "pages": time_pages(shifts, repeat)}


def time_pages(shifts: int, repeat: int) -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import NoReverseMatch, reverse

    from fiscal.models import Shift
    from nekassir.models import Order

    shift = Shift.objects.filter(state="closed", pk__gte=shifts // 2).order_by("pk").first()
    order = Order.objects.filter(shift=shift).order_by("created_at")[5]
    client = Client()
    client.force_login(User.objects.get(username="bench"))

    def url(name: str, *args: Any) -> str | None:
        try:
            return reverse(name, args=args)
        except NoReverseMatch:
            return None

    pages = {
        "venue": url("panel:home"),
        "shift": url("panel:shift", shift.pk),
        "order": url("panel:order", order.pk),
        "admin_shift_orders": f"/admin/nekassir/order/?shift__id__exact={shift.pk}",
        "orders": url("panel:orders"),
        "journal": url("panel:journal"),
    }
    results: dict[str, Any] = {}
    for page, path in pages.items():
        if path is None:
            results[page] = {"missing": "no such URL name in nekassir/panel/urls.py"}
            continue
        answer = client.get(path)
        if answer.status_code != 200:
            results[page] = {"path": path, "missing": f"HTTP {answer.status_code}"}
            continue
        for _ in range(2):
            client.get(path)
        with CaptureQueriesContext(connection) as captured:
            client.get(path)
        # Read now: the next request's request_started signal clears the connection's query log.
        queries = list(captured.captured_queries)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            client.get(path)
            times.append((time.perf_counter() - t0) * 1000)
        results[page] = {"path": path, "median_ms": median(times), "p95_ms": percentile(times, 95),
                         "min_ms": min(times), "queries": len(queries), "bytes": len(answer.content),
                         "slowest": [{"ms": round(float(q["time"]) * 1000, 1), "sql": q["sql"][:400]}
                                     for q in sorted(queries, key=lambda q: -float(q["time"]))[:3]]}
        say(f"  {page:20s} {results[page]['median_ms']:8.1f} ms median  {len(queries):3d} queries  {path}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 orders instead of 1,000,000; fewer repeats")
    parser.add_argument("--repeat", type=int, help="requests timed per page (after warm-up)")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "panel.json")
    parser.add_argument("--scale", choices=list(SCALES), help=argparse.SUPPRESS)  # one scale, in this process
    args = parser.parse_args(argv)
    repeat = args.repeat or (10 if args.quick else 30)
    problem = pg_reachable()
    if problem:
        say(problem)
        return 2
    if args.scale:
        name, orders, shifts = SCALES[args.scale]
        write_json(args.out, measure_scale(name, orders, shifts, repeat))
        return 0
    results: dict[str, Any] = {"repeat": repeat, "scales": {}}
    for label, key in (("large", "large_quick" if args.quick else "large"), ("small", "small")):
        out = args.out.with_name(f"{args.out.stem}-{key}.json")
        say(f"panel: {SCALES[key][1]:,} orders ({SCALES[key][0]})")
        subprocess.run(  # noqa: S603 - our own module
            [PY, "-m", "scripts.bench.panel", "--scale", key, "--repeat", str(repeat), "--out", str(out)],
            cwd=ROOT, check=True)
        results["scales"][label] = json.loads(out.read_text())
    results["generation"] = {s["database"]: {k: s["meta"].get(k) for k in ("seconds", "size_mib", "generated_at")}
                             for s in results["scales"].values()}
    write_json(args.out, results)
    from scripts.bench.report import panel_lines

    for line in panel_lines(results):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
