"""A production-like Nekassir as real processes: gunicorn (gthread) + q2 device cluster(s) + default cluster.

Used by the benchmarks and by ``tests/long/test_production.py``. Each stack has its own data folder, its
own database (PostgreSQL or SQLite) and its own Redis database index, so it never touches
``make run``'s data. Every process is started in its own session and stopped by its own id.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from scripts.bench.common import PY, ROOT, memory_of_session
from scripts.ports import free_port

GUNICORN_CONFIG = ROOT / "deploy" / "gunicorn.conf.py"
# django-q2's "Q Cluster <name> [django_q:<cluster>:q] running." (translated when LANGUAGE_CODE is ru)
_CLUSTER_RUNNING = re.compile(r"\[django_q:[^\]]+\] (running|работает)\.")


@dataclass
class StackConfig:
    data_dir: Path
    database_url: str = ""  # "" = SQLite in data_dir
    broker: str = "redis"  # or "orm"
    redis_url: str = "redis://127.0.0.1:6379/14"
    device_clusters: int = 1
    device_workers: int | None = None  # None: devicecluster's own rule (Q_DEVICE_WORKERS, 4)
    default_cluster: bool = True
    gunicorn_workers: int = 2
    gunicorn_threads: int = 4
    log_level: str = "INFO"
    extra_env: dict[str, str] = field(default_factory=dict)


class Stack:
    def __init__(self, config: StackConfig):
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self._secret = secrets.token_urlsafe(40)
        config.data_dir.mkdir(parents=True, exist_ok=True)

    # --- environment -------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment of every process of this stack (and of a driver that opens its database)."""
        c = self.config
        env = {
            "DJANGO_SETTINGS_MODULE": "nekassir.settings",
            "NEKASSIR_DATA_DIR": str(c.data_dir),
            "SECRET_KEY": self._secret,
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "Q_BROKER": c.broker,
            "REDIS_URL": c.redis_url,
            "LOG_LEVEL": c.log_level,
            "PYTHONUNBUFFERED": "1",
            "GUNICORN_WORKERS": str(c.gunicorn_workers),
            "GUNICORN_THREADS": str(c.gunicorn_threads),
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            **c.extra_env,
        }
        if c.database_url:
            env["DATABASE_URL"] = c.database_url
        if c.device_workers:
            env["Q_DEVICE_WORKERS"] = str(c.device_workers)
        return env

    def child_env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items()
                if k not in {"DATABASE_URL", "Q_DEVICE_WORKERS", "NEKASSIR_USE_TEST_DB", "NEKASSIR_Q_SYNC"}}
        return {**base, **self.env()}

    def manage(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([PY, str(ROOT / "manage.py"), *args], cwd=ROOT, env=self.child_env(),  # noqa: S603
                              capture_output=True, text=True, timeout=timeout, check=True)

    def prepare(self) -> None:
        """Migrate the database and collect the static files (whitenoise's manifest storage needs them)."""
        self.manage("migrate", "--noinput")
        self.manage("collectstatic", "--noinput")

    # --- processes ---------------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str]) -> None:
        log = self.config.data_dir / f"{name}.log"
        self.logs[name] = log
        with log.open("ab") as out:
            self.processes[name] = subprocess.Popen(  # noqa: S603
                argv, cwd=ROOT, env=self.child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def start(self, timeout: float = 60) -> None:
        manage = [PY, str(ROOT / "manage.py")]
        for n in range(self.config.device_clusters):
            name = f"devices{n + 1}" if self.config.device_clusters > 1 else "devices"
            self._start(name, [*manage, "devicecluster"])
        if self.config.default_cluster:
            self._start("default", [*manage, "qcluster"])
        self._start("web", [PY, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG), "nekassir.wsgi:application"])
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = {name for name in self.processes if name != "web"}
        web_ok = False
        while time.monotonic() < deadline:
            self.raise_if_dead()
            if not web_ok:
                try:
                    web_ok = httpx.get(f"{self.url}/health/", timeout=2).status_code == 200
                except httpx.HTTPError:
                    pass
            for name in list(pending):
                if _CLUSTER_RUNNING.search(self.logs[name].read_text(errors="replace")):
                    pending.discard(name)
            if web_ok and not pending:
                return
            time.sleep(0.2)
        raise RuntimeError(f"stack not ready in {timeout}s (web ok: {web_ok}, clusters waiting: {sorted(pending)})\n"
                           + self.tail())

    def raise_if_dead(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        parts = []
        for name, log in self.logs.items():
            text = log.read_text(errors="replace") if log.exists() else ""
            parts.append(f"--- {name} ---\n{text[-chars:]}")
        return "\n".join(parts)

    def memory(self) -> dict[str, dict]:
        """Peak and current RSS of every process of each part of the stack (web = gunicorn master + workers)."""
        return {name: memory_of_session(proc.pid) for name, proc in self.processes.items() if proc.poll() is None}

    def stop(self, timeout: float = 20) -> None:
        # One SIGTERM to each leader (a q2 cluster that gets a second one while stopping hangs), then
        # whatever is left of each process group is killed.
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.processes.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if proc.poll() is None:
                proc.wait(timeout=10)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
