"""The soak's world: a throwaway database, the emulators in this process, and the project's real processes.

Used by ``scripts/soak.py`` only. Everything lives in a temporary data folder (``NEKASSIR_DATA_DIR``) and
its own database (a new PostgreSQL database, dropped afterwards, or a SQLite file in that folder): never
``make run``'s ``var/``. Every child process runs in its own session and is stopped or killed by its own
process group id.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from scripts.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
DEFAULT_PG_URL = os.environ.get("SOAK_PG_URL") or os.environ.get("PG_TEST_URL") or (
    "postgres://postgres@127.0.0.1:5432/postgres")
# django-q2's "Q Cluster <name> [<cluster>] running." (translated when LANGUAGE_CODE is ru).
CLUSTER_RUNNING = re.compile(r"\] (running|работает)\.")

# Short device and retry timings: a soak of minutes must see what a venue sees in days. Every one of
# these is a documented environment variable of nekassir/settings.py.
TIMINGS = {
    "ATOL_HTTP_TIMEOUT": "3",
    "ATOL_POLL_INTERVAL": "0.05",
    "ATOL_MAX_WAIT": "8",
    "TERMINAL_HTTP_TIMEOUT": "2",
    "TERMINAL_GUEST_TIMEOUT": "3",
    "TERMINAL_POLL_INTERVAL": "0.05",
    "TERMINAL_POLL_FOR": "3",
    "SETTLEMENT_ATTEMPTS": "2",
    "SETTLEMENT_RETRY_DELAY": "0.2",
    "CLOSE_WAIT_FOR_TERMINAL": "5",
    "CLOSE_WAIT_FOR_SALE": "10",
    "AUTO_CLOSE_WAIT_FOR_ORDER": "5",
    "SALE_LOCK_WAIT": "10",
    "CHECKOUT_RETRY_BASE": "0.5",
    "CHECKOUT_RETRY_MAX": "8",
    "CHECKOUT_STALE_AFTER": "20",
    # The guest's window, in the soak's compressed time: kills, blocked registers and queues push orders past it.
    "CHECKOUT_GUEST_WINDOW": "30",
    "TERMINAL_RESOLVE_RETRY_BASE": "2",
    "TERMINAL_RESOLVE_RETRY_MAX": "10",
    "IIKO_HTTP_TIMEOUT": "2",
    "IIKO_MAX_ATTEMPTS": "3",
    "IIKO_RETRY_DELAYS": "0.2,0.5",
    "IIKO_CREATE_WAIT": "3",
    "IIKO_POLL_INTERVAL": "0.05",
    "DEVICE_JOB_TIMEOUT": "120",
    "Q_POLL": "0.2",
    # Marked goods (issue 13): the check service's answer and the register's validation, in soak time.
    "MARKING_CHECK_TIMEOUT": "2",
    "MARKING_VALIDATION_WAIT": "8",
    "MARKING_VALIDATION_POLL": "0.05",
}


# --- databases -------------------------------------------------------------------------------------
def pg_problem(url: str) -> str:
    """'' when PostgreSQL at ``url`` answers, else why not."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return ""


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def create_pg_database(server_url: str, name: str) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_database(server_url, name)


def drop_pg_database(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- emulators (in this process: their fault queues and journals are read directly) -----------------
@dataclass
class Emulators:
    atol: Any
    kkm: Any
    dc: Any
    iiko: Any
    marking: Any  # the check service (marking.emulator), sharing its code table with the ATOL emulator
    servers: list[Any] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)  # "emulator:fault" -> times a fault hit an operation

    @property
    def apps(self) -> dict[str, Any]:
        return {"atol": self.atol, "kkm": self.kkm, "dualconnector": self.dc, "iiko": self.iiko,
                "marking": self.marking}

    def url(self, name: str) -> str:
        return next(s.url for s in self.servers if s.app is self.apps[name])

    def clear_faults(self) -> None:
        for app in self.apps.values():
            app.faults.clear()

    def pending_faults(self) -> int:
        return sum(len(app.faults.pending()) for app in self.apps.values())

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_emulators(print_delay: float, card_delay: float, iiko_delay: float, marking_port: int = 0) -> Emulators:
    """Every emulator on a free port (the check service on ``marking_port``, chosen before the settings were
    read: ``MARKING_CHECK_URL`` points at it); no state files (nothing restarts them, and a big JSON state
    rewritten on every change would make the emulators, not the product, the bottleneck). One marking
    operator (the code table) is shared by the register's validation and the check service, as in
    ``nekassir/emulators.py``."""
    from core.emulator_http import EmulatorServer
    from fiscal.atol_emulator import AtolWebServerEmulator
    from iiko.emulator import IikoEmulator
    from marking.emulator import MarkingCheckEmulator
    from marking.operator import OperatorRegistry
    from payments.dualconnector_emulator import DualConnectorEmulator
    from payments.kkm_emulator import KkmServerEmulator

    operator = OperatorRegistry()
    emulators = Emulators(
        atol=AtolWebServerEmulator(print_delay=print_delay, marking_operator=operator),
        kkm=KkmServerEmulator(card_delay=card_delay),
        dc=DualConnectorEmulator(card_delay=card_delay),
        iiko=IikoEmulator(creation_delay=iiko_delay),
        marking=MarkingCheckEmulator(operator),
    )
    for name, app in emulators.apps.items():
        _count_hits(name, app, emulators.hits)
        port = marking_port if name == "marking" else 0
        emulators.servers.append(EmulatorServer(app, port=port).start())
    return emulators


def fault_label(target: str, name: str, extra: dict[str, Any]) -> str:
    """``atol|terminal|iiko: fault(variant)``, the same for a fault armed and a fault that hit."""
    variant = ("(approved=false)" if extra.get("approved") is False else "(processed)" if extra.get("processed")
               else "(every attempt of an order)" if extra.get("burst")
               else f"(on the {extra['operation']})" if extra.get("operation") else "")
    return f"{target}: {name}{variant}"


TARGETS = {"atol": "atol", "kkm": "terminal", "dualconnector": "terminal", "iiko": "iiko", "marking": "marking"}


def _count_hits(name: str, app: Any, hits: dict[str, int]) -> None:
    """Wrap the fault queue so that every fault that actually hit an operation is counted."""
    queue = app.faults
    for method in ("take", "take_first"):
        original = getattr(queue, method, None)
        if original is None:
            continue

        def counted(*args: Any, _original=original, **kwargs: Any) -> Any:
            item = _original(*args, **kwargs)
            if item is not None:
                key = fault_label(TARGETS[name], item["fault"], item)
                hits[key] = hits.get(key, 0) + 1
            return item

        setattr(queue, method, counted)


# --- the project's processes --------------------------------------------------------------------------
class Processes:
    """gunicorn, the default q2 cluster and the device q2 cluster, each in its own session and log file."""

    def __init__(self, data_dir: Path, env: dict[str, str]):
        self.data_dir = data_dir
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.starts: dict[str, int] = {}
        (data_dir / "static").mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing folder

    def child_env(self) -> dict[str, str]:
        drop = {"DATABASE_URL", "NEKASSIR_USE_TEST_DB", "NEKASSIR_Q_SYNC", "Q_DEVICE_WORKERS"}
        return {**{k: v for k, v in os.environ.items() if k not in drop}, **self.env}

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(  # noqa: S603 - our own manage.py
            [PY, str(ROOT / "manage.py"), *args], cwd=ROOT, env=self.child_env(), capture_output=True, text=True,
            timeout=timeout, check=False,
        )

    def start(self, name: str) -> None:
        argv = {
            "web": [PY, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", "2",
                    "--worker-class", "gthread", "--threads", "4", "--timeout", "60", "nekassir.wsgi:application"],
            "default": [PY, str(ROOT / "manage.py"), "qcluster"],
            "devices": [PY, str(ROOT / "manage.py"), "devicecluster"],
        }[name]
        log = self.data_dir / f"{name}.log"
        self.logs[name] = log
        self.starts[name] = self.starts.get(name, 0) + 1
        with log.open("ab") as out:
            out.write(f"\n===== start #{self.starts[name]} at {time.strftime('%H:%M:%S')} =====\n".encode())
            out.flush()
            self.procs[name] = subprocess.Popen(  # noqa: S603
                argv, cwd=ROOT, env=self.child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def log_text(self, name: str) -> str:
        log = self.logs.get(name)
        return log.read_text(errors="replace") if log and log.exists() else ""

    def wait_cluster(self, name: str, timeout: float = 60) -> None:
        """Until the cluster says it runs (only the part of the log written since its last start)."""
        deadline = time.monotonic() + timeout
        marker = f"===== start #{self.starts[name]} "
        while time.monotonic() < deadline:
            self.raise_if_dead(name)
            text = self.log_text(name)
            if CLUSTER_RUNNING.search(text[text.rfind(marker):]):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{name} not running after {timeout}s\n{self.tail(name)}")

    def wait_web(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.raise_if_dead("web")
            try:
                if httpx.get(f"{self.url}/health/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"web server not answering after {timeout}s\n{self.tail('web')}")

    def raise_if_dead(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.tail(name)}")

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def kill(self, name: str) -> None:
        """SIGKILL to the whole process group (the cluster and every worker it forked)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def stop(self, name: str, timeout: float = 20) -> None:
        proc = self.procs.get(name)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # once: a q2 cluster that gets a second SIGTERM hangs
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its group
        except ProcessLookupError:
            pass
        if proc.poll() is None:
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def tail(self, name: str, chars: int = 3000) -> str:
        return f"--- {name} ({self.logs.get(name)}) ---\n{self.log_text(name)[-chars:]}"


def base_env(data_dir: Path, database_url: str, marking_url: str = "") -> dict[str, str]:
    """The settings of every process of the soak; ``marking_url``: the check-service emulator (issue 13), with
    ``MARKING_OFFLINE_SALE`` at its default (refuse: an unreachable service or operator fails the order)."""
    from marking.emulator import DEMO_TOKEN

    env = {
        "DJANGO_SETTINGS_MODULE": "nekassir.settings",
        "NEKASSIR_DATA_DIR": str(data_dir),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "Q_BROKER": "orm",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        "AXES_ENABLED": "false",
        **TIMINGS,
        "MARKING_CHECK_URL": marking_url,
        "MARKING_CHECK_TOKEN": DEMO_TOKEN if marking_url else "",
        "MARKING_OFFLINE_SALE": "refuse",
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    return env
