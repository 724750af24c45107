"""Deployment (issue 16 item 6): the HTTPS settings come from the environment, strictly parsed; the data
directory and the embedded SQLite database are created readable by their owner only.

Settings are read once per process, so each case imports ``nekassir.settings`` in a fresh interpreter with
its own environment and data directory."""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.env import env_proxy_ssl_header, private_dir, private_file
from tests.processes import ROOT

READ_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({name: getattr(settings, name) for name in (
    "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER", "USE_X_FORWARDED_HOST", "SILENCED_SYSTEM_CHECKS")}))
"""


def _env(tmp_path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DJANGO_SETTINGS_MODULE", "NEKASSIR_USE_TEST_DB", "NEKASSIR_Q_SYNC", "DATABASE_URL"}
           and not k.startswith(("SECURE_", "SESSION_COOKIE", "CSRF_COOKIE", "USE_X_FORWARDED"))}
    env.update({"DJANGO_SETTINGS_MODULE": "nekassir.settings", "NEKASSIR_DATA_DIR": str(tmp_path / "data"),
                **variables})
    return env


def _python(tmp_path, code: str, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(tmp_path, **variables),
                          capture_output=True, text=True, timeout=120)


def _settings(tmp_path, **variables: str) -> dict:
    result = _python(tmp_path, READ_SETTINGS, **variables)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- HTTPS settings from the environment ----------------------------------------------------------------
def test_without_variables_the_panel_is_plain_http_on_the_lan(tmp_path):
    got = _settings(tmp_path)
    assert got["SESSION_COOKIE_SECURE"] is False and got["CSRF_COOKIE_SECURE"] is False
    assert got["SECURE_HSTS_SECONDS"] == 0 and got["SECURE_PROXY_SSL_HEADER"] is None
    assert got["USE_X_FORWARDED_HOST"] is False and got["SECURE_SSL_REDIRECT"] is False
    assert set(got["SILENCED_SYSTEM_CHECKS"]) == {"security.W004", "security.W008", "security.W012", "security.W016",
                                                  "security.W005", "security.W021"}


def test_behind_an_https_proxy_every_setting_comes_from_the_environment(tmp_path):
    got = _settings(tmp_path, SESSION_COOKIE_SECURE="true", CSRF_COOKIE_SECURE="1", SECURE_HSTS_SECONDS="31536000",
                    SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto,https", USE_X_FORWARDED_HOST="yes")
    assert got["SESSION_COOKIE_SECURE"] is True and got["CSRF_COOKIE_SECURE"] is True
    assert got["SECURE_HSTS_SECONDS"] == 31536000
    assert got["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert got["USE_X_FORWARDED_HOST"] is True
    # Behind HTTPS the HTTPS-only deploy checks are no longer silenced (but the redirect: kiosks use plain HTTP,
    # and HSTS subdomains/preload: the venue's domain decides).
    assert set(got["SILENCED_SYSTEM_CHECKS"]) == {"security.W008", "security.W005", "security.W021"}


@pytest.mark.parametrize(("name", "value"), [
    ("SESSION_COOKIE_SECURE", "maybe"), ("CSRF_COOKIE_SECURE", "2"), ("USE_X_FORWARDED_HOST", "да"),
    ("SECURE_HSTS_SECONDS", "-1"), ("SECURE_HSTS_SECONDS", "a year"), ("SECURE_HSTS_SECONDS", "1e9"),
    ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto"), ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto: https"),
    ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto,https,x"), ("SECURE_PROXY_SSL_HEADER", "X Forwarded,https"),
])
def test_a_bad_value_stops_the_start_naming_the_variable(tmp_path, name, value):
    result = _python(tmp_path, READ_SETTINGS, **{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and f"{name}=" in result.stderr, result.stderr[-1500:]


def test_the_proxy_header_is_read_strictly():
    assert env_proxy_ssl_header("H", {}) is None and env_proxy_ssl_header("H", {"H": " "}) is None
    assert env_proxy_ssl_header("H", {"H": "HTTP_X_FORWARDED_PROTO,https"}) == ("HTTP_X_FORWARDED_PROTO", "https")
    assert env_proxy_ssl_header("H", {"H": "x-forwarded-ssl, on"}) == ("HTTP_X_FORWARDED_SSL", "on")
    with pytest.raises(ImproperlyConfigured, match=r"^H="):
        env_proxy_ssl_header("H", {"H": ",https"})


def _deploy_check(tmp_path, **variables: str) -> subprocess.CompletedProcess:
    env = _env(tmp_path, DEBUG="false", SECRET_KEY=secrets.token_urlsafe(60), ALLOWED_HOSTS="nekassir.example",
               **variables)
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_behind_https_wants_the_secure_settings_and_is_clean_with_them(tmp_path):
    proxy = {"SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto,https"}
    missing = _deploy_check(tmp_path, **proxy)
    assert missing.returncode != 0
    assert set(re.findall(r"\((security\.W\d+)\)", missing.stderr + missing.stdout)) == {
        "security.W004", "security.W012", "security.W016"}
    clean = _deploy_check(tmp_path, **proxy, SESSION_COOKIE_SECURE="true", CSRF_COOKIE_SECURE="true",
                          SECURE_HSTS_SECONDS="31536000")
    assert clean.returncode == 0, clean.stderr[-3000:]


# --- owner-only data ----------------------------------------------------------------------------------
def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


WRITE_SQLITE = """
import json, os, django
from django.conf import settings
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE t (x integer)")
    cursor.execute("INSERT INTO t VALUES (1)")
    path = str(settings.SQLITE_PATH)
    print(json.dumps({p: oct(os.stat(p).st_mode & 0o777) for p in (path, path + "-wal", path + "-shm")
                      if os.path.exists(p)}))
"""


def test_the_data_directory_and_the_sqlite_database_are_created_owner_only(tmp_path):
    result = _python(tmp_path, WRITE_SQLITE)
    assert result.returncode == 0, result.stderr[-2000:]
    modes = json.loads(result.stdout.strip().splitlines()[-1])
    data = tmp_path / "data"
    assert _mode(data) == 0o700
    assert modes[str(data / "nekassir.sqlite3")] == "0o600"
    assert set(modes.values()) == {"0o600"} and len(modes) >= 2, modes  # the -wal (and -shm) follow


def test_an_existing_world_readable_data_directory_and_database_are_tightened(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    database = data / "nekassir.sqlite3"
    database.write_bytes(b"")
    database.chmod(0o644)
    result = _python(tmp_path, READ_SETTINGS, SECRET_KEY="x" * 50)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _mode(data) == 0o700 and _mode(database) == 0o600


def test_the_helpers_leave_owner_bits_alone(tmp_path):
    folder = private_dir(tmp_path / "a" / "b")
    assert _mode(folder) == 0o700
    file = private_file(folder / "f")
    assert _mode(file) == 0o600 and file.read_bytes() == b""
    file.write_bytes(b"keep")
    assert private_file(file).read_bytes() == b"keep"  # an existing file is never truncated
