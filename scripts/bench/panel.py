"""The service pages at scale on PostgreSQL: server time and SQL queries per page.

    python -m scripts.bench.panel [--quick] [--out results.json]

Two databases, each generated once and kept between runs (scripts/bench/panel_data.py): the large one
(``nekassir_bench``: 1,000,000 orders over 3,000 shifts; ``--quick``: ``nekassir_bench_100k``, 100,000
over 300) and the small one (``nekassir_bench_10k``: 10,000 over 30), the same venue shape (~333 orders a
shift). Each scale is measured in its own process (Django is configured for one database per process):
Django's test client in-process, logged in as a superuser, DEBUG off, production static storage.
Pages: the venue page, a closed shift from the middle of the history, an order of that shift, the
Django admin changelist of that shift's orders, the order search, the journal and the accountant's report of
the last 30 days (issue 14; its kept day figures are dropped first, so its first request, also reported, fills
them). Then, in a fresh process of its own, the XLSX export of a year's orders (the
whole history of the data: 300 days) read to the end, and that process's peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
    pages = time_pages(shifts, repeat)
    return {"database": name, "orders": orders, "shifts": shifts, "meta": meta, "pages": pages,
            "export_year_xlsx": export_in_own_process(name)}


def export_in_own_process(name: str) -> dict[str, Any]:
    """The year's XLSX export measured in a fresh process, so its peak RSS is the export's and Django's only."""
    scale = next(key for key, (db, _, _) in SCALES.items() if db == name)
    out = ROOT / "var" / "bench" / f"panel-export-{scale}.json"
    out.unlink(missing_ok=True)
    done = subprocess.run([PY, "-m", "scripts.bench.panel", "--export-xlsx", scale, "--out", str(out)],  # noqa: S603
                          cwd=ROOT, check=False, timeout=3600)
    if done.returncode != 0 or not out.exists():
        return {"missing": f"exit {done.returncode}"}
    return json.loads(out.read_text())


def _rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def export_year_xlsx(name: str) -> dict[str, Any]:
    """Runs in its own process: GET /reports/export.xlsx?kind=orders for the 365 days up to today, the body
    read block by block (never held whole), then the process's peak RSS."""
    url = database_url(PG_URL, name)
    os.environ.update(_env(url))
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from nekassir.models import Order

    client = Client()
    client.force_login(User.objects.get(username="bench"))
    client.get(reverse("panel:home"))  # Django, the templates and the connection warmed up: the base line
    before = _rss_mib()
    today = timezone.localdate()
    start = today - timezone.timedelta(days=364)
    path = f"{reverse('panel:report_xlsx')}?kind=orders&from={start.isoformat()}&to={today.isoformat()}"
    rows = Order.objects.filter(created_at__date__gte=start).count()
    t0 = time.monotonic()
    answer = client.get(path)
    size = 0
    if answer.status_code == 200:
        for block in answer.streaming_content:
            size += len(block)
        answer.close()
    seconds = time.monotonic() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result = {"path": path, "status": answer.status_code, "orders": rows, "bytes": size,
              "seconds": round(seconds, 1), "rss_before_mib": before, "peak_rss_mib": round(peak, 1)}
    say(f"  export_year_xlsx: {rows:,} orders, {size / 1024 / 1024:.1f} MiB in {seconds:.0f} s, "
        f"peak RSS {peak:.0f} MiB (before {before:.0f} MiB)")
    return result


def _report_month(path: str | None) -> str | None:
    """The accountant's report of the last 30 days (the data's last day is today): ~1/10 of the history."""
    from django.utils import timezone

    if path is None:
        return None
    today = timezone.localdate()
    return f"{path}?from={(today - timezone.timedelta(days=29)).isoformat()}&to={today.isoformat()}"


def time_pages(shifts: int, repeat: int) -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import NoReverseMatch, reverse

    from fiscal.models import Shift
    from nekassir.models import Order, ReportDay

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
        "report_month": _report_month(url("panel:reports")),
    }
    results: dict[str, Any] = {}
    for page, path in pages.items():
        if path is None:
            results[page] = {"missing": "no such URL name in nekassir/panel/urls.py"}
            continue
        if page == "report_month":
            # The report keeps past days' figures (nekassir.report_summary), filled by the first report that
            # needs them: forgotten here, so the first request below is the cold one, and it is reported too.
            ReportDay.objects.all().delete()
        t0 = time.perf_counter()
        answer = client.get(path)
        first_ms = (time.perf_counter() - t0) * 1000
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
                         "min_ms": min(times), "first_ms": round(first_ms, 1), "queries": len(queries),
                         "bytes": len(answer.content),
                         "slowest": [{"ms": round(float(q["time"]) * 1000, 1), "sql": q["sql"][:400]}
                                     for q in sorted(queries, key=lambda q: -float(q["time"]))[:3]]}
        say(f"  {page:20s} {results[page]['median_ms']:8.1f} ms median  {len(queries):3d} queries  "
            f"(first {first_ms:.0f} ms)  {path}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 orders instead of 1,000,000; fewer repeats")
    parser.add_argument("--repeat", type=int, help="requests timed per page (after warm-up)")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "panel.json")
    parser.add_argument("--scale", choices=list(SCALES), help=argparse.SUPPRESS)  # one scale, in this process
    parser.add_argument("--export-xlsx", choices=list(SCALES), help=argparse.SUPPRESS)  # the export's own process
    args = parser.parse_args(argv)
    if args.export_xlsx:
        write_json(args.out, export_year_xlsx(SCALES[args.export_xlsx][0]))
        return 0
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
