"""Starting real processes of the project (management commands, q2 clusters) from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def project_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that shares this test run's database and data folder."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "nekassir.settings_test",
        "NEKASSIR_USE_TEST_DB": "1",
        "NEKASSIR_Q_SYNC": "0",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def start_manage(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT, env=project_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


def run_manage(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT, env=project_env(**env), capture_output=True, text=True, timeout=timeout,
    )
