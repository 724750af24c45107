"""Strict readers for settings that come from environment variables.

A wrong value stops the start with a message naming the variable, instead of a surprise later.

Floor: bottom (``core``, shared by every room); imports nothing of ``fiscal``, ``payments``, ``iiko`` or
``nekassir`` (import-linter, pyproject.toml).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str, environ: Mapping[str, str] = os.environ) -> str:
    return environ.get(name, default)


def env_bool(name: str, default: bool, environ: Mapping[str, str] = os.environ) -> bool:
    raw = environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def env_int(
    name: str, default: int, environ: Mapping[str, str] = os.environ, *, minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value}: must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value}: must be at most {maximum}")
    return value


def env_float(
    name: str, default: float, environ: Mapping[str, str] = os.environ, *, minimum: float | None = None
) -> float:
    """For durations in seconds only (never money)."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected a number of seconds") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value}: must be at least {minimum}")
    return value


def env_list(name: str, default: list[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    raw = environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: set[str], environ: Mapping[str, str] = os.environ) -> str:
    value = environ.get(name, default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: expected one of {', '.join(sorted(choices))}")
    return value


_HEADER = re.compile(r"^[A-Za-z0-9_-]+$")
_HEADER_VALUE = re.compile(r"^[A-Za-z0-9._-]+$")


def env_proxy_ssl_header(name: str, environ: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """Django's ``SECURE_PROXY_SSL_HEADER`` from ``"<header>,<value>"`` (e.g. ``X-Forwarded-Proto,https``):
    the header the HTTPS reverse proxy sets, and its value for a request that came in over HTTPS.

    Set it only behind such a proxy (which must replace the header, never pass a client's own through):
    with it, a request carrying that header counts as HTTPS."""
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) != 2 or not _HEADER.match(parts[0]) or not _HEADER_VALUE.match(parts[1]):
        raise ImproperlyConfigured(f"{name}={raw!r}: expected '<header>,<value>', e.g. 'X-Forwarded-Proto,https'")
    header = parts[0].upper().replace("-", "_")
    return (header if header.startswith("HTTP_") else f"HTTP_{header}", parts[1])


def private_dir(path: Path) -> Path:
    """``path`` created if missing, readable by its owner only (0700): it holds the database (device
    passwords, guests' contacts) and the generated secret key. An existing one of ours loses its group and
    other bits; one owned by another user is left as it is (its owner decides)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _owner_only(path)
    return path


def private_file(path: Path) -> Path:
    """``path`` created empty if missing (an empty file is an empty SQLite database), owner-only (0600).
    SQLite gives its -wal and -shm files the database file's mode, so they follow."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    _owner_only(path)
    return path


def _owner_only(path: Path) -> None:
    info = path.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(stat.S_IMODE(info.st_mode) & 0o700)
