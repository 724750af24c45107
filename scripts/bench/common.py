"""Helpers shared by the benchmark parts: databases, ports, statistics, process memory, output lines."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


# --- PostgreSQL and Redis -------------------------------------------------------------------------
def database_url(base_url: str, name: str) -> str:
    """``base_url`` (any database on the server) pointed at database ``name``."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def pg_reachable(url: str = PG_URL) -> str:
    """'' when PostgreSQL at ``url`` answers, else why not."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {safe_url(url)} not reachable: {exc}".strip()
    return ""


def redis_reachable(url: str = REDIS_URL) -> str:
    import redis

    try:
        redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        return f"Redis at {safe_url(url)} not reachable: {exc}"
    return ""


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def _admin(base_url: str):
    import psycopg

    return psycopg.connect(base_url, autocommit=True, connect_timeout=5)


def database_exists(base_url: str, name: str) -> bool:
    with _admin(base_url) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def drop_database(base_url: str, name: str) -> None:
    from psycopg import sql

    with _admin(base_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def recreate_database(base_url: str, name: str) -> str:
    """A new empty database ``name`` (dropped first if it exists); returns its URL."""
    from psycopg import sql

    drop_database(base_url, name)
    with _admin(base_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(base_url, name)


def clear_redis_queues(url: str) -> None:
    """Drop the django-q2 queues left in this Redis database by an earlier (killed) run."""
    import redis

    connection = redis.from_url(url)
    keys = list(connection.scan_iter(match="django_q:*"))
    if keys:
        connection.delete(*keys)


# --- ports, statistics, lines ----------------------------------------------------------------------
def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else math.nan


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile (p95 of 100 values is the 95th smallest)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio_line(name: str, value: float, target: str) -> str:
    return f"ratio {name}: {value:.2f} (target {target})"


def figure_line(name: str, value: float | str, unit: str = "", target: str = "") -> str:
    shown = f"{value:.1f}" if isinstance(value, float) else str(value)
    suffix = f" (target {target})" if target else ""
    return f"figure {name}: {shown}{(' ' + unit) if unit else ''}{suffix}"


def say(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str))


# --- processes and memory --------------------------------------------------------------------------
def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def session_pids(sid: int) -> list[int]:
    """Every live process of session ``sid`` (a child started with ``start_new_session``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return sorted(pids)


def memory_of_session(sid: int) -> dict[str, Any]:
    """Peak (VmHWM), current (VmRSS) and proportional (PSS) memory of each process of a session, in MiB."""
    processes = []
    for pid in session_pids(sid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        processes.append({"pid": pid, "peak_mib": _status_kb(pid, "VmHWM") / 1024,
                          "rss_mib": _status_kb(pid, "VmRSS") / 1024, "pss_mib": _pss_kb(pid) / 1024,
                          "cmd": cmdline.strip()[:80]})
    return {
        "processes": len(processes),
        "peak_max_mib": max((p["peak_mib"] for p in processes), default=0.0),
        "peak_sum_mib": sum(p["peak_mib"] for p in processes),
        "rss_sum_mib": sum(p["rss_mib"] for p in processes),
        # PSS shares each page among the processes that map it (forked workers share a lot): the real total.
        "pss_sum_mib": sum(p["pss_mib"] for p in processes),
        "detail": processes,
    }


# --- the machine -----------------------------------------------------------------------------------
def probe() -> dict[str, float]:
    """Three costs that explain why the same code is faster or slower on another machine of the same label
    (seen here: two "AMD EPYC, 2 cores" machines whose panel pages differed 2x while pure Python differed 1.3x):
    a pure-Python loop, one system call (``getppid``: virtualisation and kernel mitigations make it 0.1-1 us),
    and one round trip to PostgreSQL (``SELECT 1``: process wake-ups). Best of 5 rounds each."""
    def best(run: Callable[[], float]) -> float:
        return min(run() for _ in range(5))

    def python_ns() -> float:
        t0 = time.perf_counter()
        for _ in range(2000):
            sum(range(50))
        return (time.perf_counter() - t0) / 2000 * 1e9

    def syscall_ns() -> float:
        t0 = time.perf_counter()
        for _ in range(20000):
            os.getppid()
        return (time.perf_counter() - t0) / 20000 * 1e9

    found = {"python_sum_range_50_ns": round(best(python_ns)), "syscall_getppid_ns": round(best(syscall_ns))}
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            def select_1_us() -> float:
                t0 = time.perf_counter()
                for _ in range(200):
                    conn.execute("SELECT 1").fetchone()
                return (time.perf_counter() - t0) / 200 * 1e6
            found["pg_select_1_us"] = round(best(select_1_us))
    except Exception:  # noqa: S110 - no PostgreSQL: the probe has no round trip, the bench says why elsewhere
        pass
    return found


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = _meminfo_kb("MemTotal")
    pg = ""
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            pg = conn.execute("SHOW server_version").fetchone()[0]
    except Exception:
        pg = "not reachable"
    redis_version = ""
    try:
        import redis

        redis_version = redis.from_url(REDIS_URL, socket_connect_timeout=3).info("server")["redis_version"]
    except Exception:
        redis_version = "not reachable"
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1), "probe": probe(),
        "os": platform.platform(), "python": platform.python_version(), "postgresql": pg, "redis": redis_version,
        "git": _git_head(),
    }


def _meminfo_kb(field: str) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _git_head() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,  # noqa: S607
                             text=True, timeout=5)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
