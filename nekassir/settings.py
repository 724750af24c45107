"""Settings for Nekassir, read from environment variables (see README, "Configuration").

With no variables at all this is the embedded default that ``make run`` uses: SQLite under
``var/``, the django-q2 ORM broker, the device emulators on 127.0.0.1.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from core.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_proxy_ssl_header,
    env_str,
    private_dir,
    private_file,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("NEKASSIR_DATA_DIR", str(BASE_DIR / "var")))


def _secret_key() -> str:
    """SECRET_KEY from the environment, or one generated once and kept in the data folder."""
    key = env_str("SECRET_KEY", "")
    if key:
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        _private_data_dir()
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def _private_data_dir() -> None:
    try:
        private_dir(DATA_DIR)
    except OSError as exc:
        raise ImproperlyConfigured(f"NEKASSIR_DATA_DIR={str(DATA_DIR)!r}: cannot create it owner-only: {exc}") from None


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "django_q",
    "core",
    "nekassir",
    "fiscal",
    "payments",
    "iiko",
    "marking",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",  # CONTENT_SECURITY_POLICY below
    "django_htmx.middleware.HtmxMiddleware",
]

# Content-Security-Policy on every answer (django-csp 4): the panel, the kiosk embed, the login form, the admin, the
# error pages. Scripts and styles come only from our own static files (no inline <script>, <style> or style=;
# htmx's own indicator <style> is off through <meta name="htmx-config"> in templates/panel/_layout.html), the
# receipt QR codes and the reports' chart are inline SVG (no data: images). No page may be framed, as
# X_FRAME_OPTIONS says, except the kiosk embed: nekassir.panel.access.frame_for_kiosk replaces frame-ancestors on
# its answers with 'self' and KIOSK_FRAME_ORIGINS (settings_panel.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

ROOT_URLCONF = "nekassir.urls"
WSGI_APPLICATION = "nekassir.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
# SQLite by default. IMMEDIATE transactions take the write lock at BEGIN, so the web server and the
# q2 workers queue up for it instead of failing with "database is locked" (STACK_NOTES.md).
SQLITE_PATH = DATA_DIR / "nekassir.sqlite3"
_database_url = env_str("DATABASE_URL", "")
if _database_url:
    try:
        DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)}
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL: {exc}") from None
else:
    # The embedded database holds device passwords and guests' contacts: its folder 0700, the file 0600 (made
    # here, before SQLite would create it world-readable under the usual umask; its -wal/-shm follow its mode).
    _private_data_dir()
    for _path in (SQLITE_PATH, SQLITE_PATH.with_name(SQLITE_PATH.name + "-wal"),
                  SQLITE_PATH.with_name(SQLITE_PATH.name + "-shm")):
        if _path == SQLITE_PATH or _path.exists():
            private_file(_path)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            # Django takes a Path here (its own project template does); django-stubs 5.2 types NAME as str.
            "NAME": SQLITE_PATH,  # type: ignore[typeddict-item]
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Language and time ----------------------------------------------------------------------------
LANGUAGE_CODE = env_str("LANGUAGE_CODE", "ru")
LANGUAGES = [("ru", "Русский"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "Europe/Moscow")
USE_I18N = True
USE_TZ = True

# --- Static files (whitenoise: no separate web server needed on a venue LAN) -----------------------
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# The panel is served over plain HTTP on the venue LAN (no certificate to be had for a LAN address). A venue
# that puts it behind an HTTPS reverse proxy says so with SECURE_PROXY_SSL_HEADER and turns on the secure
# cookies and HSTS from the environment (docs/PRODUCTION.md, «HTTPS»).
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
# A refused form (an old page, cookies not sent) answers with the Russian 403 page and a way back (issue 14).
CSRF_FAILURE_VIEW = "nekassir.views.csrf_failure"
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0, maximum=2 * 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST", False)
# On plain HTTP the HTTPS-only deploy checks are silenced on purpose, each for that reason; behind HTTPS
# (a proxy header set) check --deploy reports whichever of them is still off. Always silenced: the SSL
# redirect (kiosks call the API over the LAN directly, a redirect would break them), and HSTS for subdomains
# and the browsers' preload list (a decision about the venue's whole domain, not this server's).
SILENCED_SYSTEM_CHECKS = ["security.W008", "security.W005", "security.W021"] + ([] if SECURE_PROXY_SSL_HEADER else [
    "security.W004",  # HSTS: meaningless without HTTPS
    "security.W012",  # secure session cookie: would never be sent over plain HTTP
    "security.W016",  # secure CSRF cookie: same
])
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# --- Devices and emulators ------------------------------------------------------------------------
# Where `python manage.py emulators` listens, and so where the demo kiosks point.
EMULATOR_HOST = env_str("EMULATOR_HOST", "127.0.0.1")
EMULATOR_PORTS = {
    "atol": env_int("ATOL_EMULATOR_PORT", 16732, minimum=1, maximum=65535),
    "kkm": env_int("KKM_EMULATOR_PORT", 5893, minimum=1, maximum=65535),
    "dualconnector": env_int("DC_EMULATOR_PORT", 9015, minimum=1, maximum=65535),
    "iiko": env_int("IIKO_EMULATOR_PORT", 8765, minimum=1, maximum=65535),
    "marking": env_int("MARKING_EMULATOR_PORT", 8766, minimum=1, maximum=65535),
}
EMULATOR_STATE_DIR = Path(env_str("EMULATOR_STATE_DIR", str(DATA_DIR / "emulators")))

# ATOL Web Server: HTTP timeout of one call, and how long a fiscal task may be polled before its
# outcome is declared unknown (it is then resolved before anything else touches the register).
ATOL_HTTP_TIMEOUT = env_float("ATOL_HTTP_TIMEOUT", 10.0, minimum=0.1)
ATOL_POLL_INTERVAL = env_float("ATOL_POLL_INTERVAL", 0.3, minimum=0.01)
ATOL_MAX_WAIT = env_float("ATOL_MAX_WAIT", 120.0, minimum=1)
# The register's validation of one marking code (begin → status → accept/decline): how long its status is
# polled for an answer of the marking operator, and how often (fiscal/marking.py).
MARKING_VALIDATION_WAIT = env_float("MARKING_VALIDATION_WAIT", 30.0, minimum=0.1)
MARKING_VALIDATION_POLL = env_float("MARKING_VALIDATION_POLL", 0.3, minimum=0.01)
# A device lock is a lease: a holder that died (kill -9, power loss) loses it after this long.
DEVICE_LOCK_LEASE = env_float("DEVICE_LOCK_LEASE", 900.0, minimum=5)

# --- django-q2 ------------------------------------------------------------------------------------
# Two clusters (README, "Architecture"): "default" for short jobs (schedules, recovery, reports) and
# "devices" for device work that may wait minutes for a guest. Its checkouts and automatic closes run on
# threads of its workers (nekassir.device_threads: up to DEVICE_CHECKOUT_THREADS per worker, 0 = two per
# active kiosk + 1), so kiosks never wait for each other with a few worker processes. timeout < retry
# everywhere, so a long job is never delivered twice by the broker; max_attempts=1 because our own state
# machine, not the broker, decides what to resume. A recycled device worker (Q_DEVICE_RECYCLE jobs) waits
# for its threads before it exits.
Q_BROKER = env_choice("Q_BROKER", "orm", {"orm", "redis"})
Q_DEVICE_WORKERS = env_int("Q_DEVICE_WORKERS", 4, minimum=1, maximum=64)
DEVICE_CHECKOUT_THREADS = env_int("DEVICE_CHECKOUT_THREADS", 0, minimum=0, maximum=256)
Q_DEVICE_RECYCLE = env_int("Q_DEVICE_RECYCLE", 500, minimum=1)
DEVICE_JOB_TIMEOUT = env_int("DEVICE_JOB_TIMEOUT", 900, minimum=30)
# Manual device jobs from the panel (nekassir.panel.jobs): how many one account (or one kiosk's PIN screen) may
# start per minute; how long a job whose kiosk is busy is tried again (it waits off a worker) before it fails;
# the first pause before it is tried again (doubling; the recovery schedule picks it up, so about a minute).
PANEL_JOB_RATE = env_int("PANEL_JOB_RATE", 10, minimum=1, maximum=1000)
PANEL_JOB_DEVICE_WAIT = env_int("PANEL_JOB_DEVICE_WAIT", 600, minimum=10)
PANEL_JOB_RETRY = env_float("PANEL_JOB_RETRY", 5.0, minimum=0.1)
Q_CLUSTER = {
    "name": "default",
    "workers": env_int("Q_WORKERS", 2, minimum=1, maximum=32),
    "timeout": 240,
    "retry": 600,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 5000,
    "poll": env_float("Q_POLL", 0.5, minimum=0.05),
    "label": "Задачи",
    "ALT_CLUSTERS": {
        "devices": {
            "workers": Q_DEVICE_WORKERS,
            "recycle": Q_DEVICE_RECYCLE,
            "timeout": DEVICE_JOB_TIMEOUT,
            "retry": DEVICE_JOB_TIMEOUT + 300,
        },
    },
}
if Q_BROKER == "redis":
    Q_CLUSTER["redis"] = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
else:
    Q_CLUSTER["orm"] = "default"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

# --- Card terminals -------------------------------------------------------------------------------
TERMINAL_HTTP_TIMEOUT = env_float("TERMINAL_HTTP_TIMEOUT", 30.0, minimum=0.1)
# How long a card payment may wait for the guest at the PIN pad before the answer counts as lost.
TERMINAL_GUEST_TIMEOUT = env_float("TERMINAL_GUEST_TIMEOUT", 180.0, minimum=1)
TERMINAL_POLL_INTERVAL = env_float("TERMINAL_POLL_INTERVAL", 1.0, minimum=0.01)
TERMINAL_POLL_FOR = env_float("TERMINAL_POLL_FOR", 60.0, minimum=0.1)
SETTLEMENT_ATTEMPTS = env_int("SETTLEMENT_ATTEMPTS", 3, minimum=1, maximum=10)
SETTLEMENT_RETRY_DELAY = env_float("SETTLEMENT_RETRY_DELAY", 5.0, minimum=0)
# An unknown card operation is asked about again after this backoff (doubling from the base up to the max):
# the terminal stays blocked meanwhile, and each attempt may add a reversal to its journal.
TERMINAL_RESOLVE_RETRY_BASE = env_float("TERMINAL_RESOLVE_RETRY_BASE", 30.0, minimum=1)
TERMINAL_RESOLVE_RETRY_MAX = env_float("TERMINAL_RESOLVE_RETRY_MAX", 900.0, minimum=1)
# A shift close waits this long for a payment in progress on the kiosk before settling without it.
CLOSE_WAIT_FOR_TERMINAL = env_float("CLOSE_WAIT_FOR_TERMINAL", 120.0, minimum=0)

# --- Checkout -------------------------------------------------------------------------------------
SALE_LOCK_WAIT = env_float("SALE_LOCK_WAIT", 30.0, minimum=0)
CHECKOUT_RETRY_BASE = env_float("CHECKOUT_RETRY_BASE", 2.0, minimum=0.1)
CHECKOUT_RETRY_MAX = env_float("CHECKOUT_RETRY_MAX", 60.0, minimum=1)
CHECKOUT_STALE_AFTER = env_float("CHECKOUT_STALE_AFTER", 120.0, minimum=1)
# The guest's window: a card payment is asked for only this many seconds after the order's POST (the guest
# may have walked away after that); a later order is annulled, never charged (DESIGN.md invariants).
CHECKOUT_GUEST_WINDOW = env_float("CHECKOUT_GUEST_WINDOW", 180.0, minimum=10)
# After this many deferrals (a device that does not answer) the order shows "needs attention".
CHECKOUT_ATTENTION_AFTER = env_int("CHECKOUT_ATTENTION_AFTER", 5, minimum=1)
# iiko: attempts (each with its own iiko order id) and the pauses between them, then not_delivered.
IIKO_HTTP_TIMEOUT = env_float("IIKO_HTTP_TIMEOUT", 20.0, minimum=0.1)
IIKO_MAX_ATTEMPTS = env_int("IIKO_MAX_ATTEMPTS", 3, minimum=1, maximum=20)
IIKO_RETRY_DELAYS = [float(x) for x in env_list("IIKO_RETRY_DELAYS", ["2", "5", "15"])]
IIKO_CREATE_WAIT = env_float("IIKO_CREATE_WAIT", 30.0, minimum=1)
IIKO_POLL_INTERVAL = env_float("IIKO_POLL_INTERVAL", 1.0, minimum=0.01)

# --- Shifts ---------------------------------------------------------------------------------------
# A manual close waits this long for a payment in progress on the kiosk, then refuses.
CLOSE_WAIT_FOR_SALE = env_float("CLOSE_WAIT_FOR_SALE", 60.0, minimum=0)
# The automatic close: this long before the register's own expiredTime (an expired shift blocks
# sales), optionally also at a quiet hour (venue time, "HH:MM"), waiting this long for an order.
SHIFT_CLOSE_MARGIN = env_float("SHIFT_CLOSE_MARGIN", 600.0, minimum=0)
SHIFT_CLOSE_AT = env_str("SHIFT_CLOSE_AT", "")
AUTO_CLOSE_WAIT_FOR_ORDER = env_float("AUTO_CLOSE_WAIT_FOR_ORDER", 300.0, minimum=0)
from nekassir.settings_panel import *  # noqa: E402,F403  (the service menu: login throttling, kiosk embed)

# === Alerts to Telegram (nekassir.alerts; issue 7) ===============================================
# Off unless both TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID are set. The token is a secret: it is never
# logged nor shown (nekassir.telegram keeps it out of every message).
TELEGRAM_BOT_TOKEN = env_str("TELEGRAM_BOT_TOKEN", "").strip()
TELEGRAM_CHAT_ID = env_str("TELEGRAM_CHAT_ID", "").strip()
if bool(TELEGRAM_BOT_TOKEN) != bool(TELEGRAM_CHAT_ID):
    _missing = "TELEGRAM_CHAT_ID" if TELEGRAM_BOT_TOKEN else "TELEGRAM_BOT_TOKEN"
    raise ImproperlyConfigured(f"{_missing}: needed too, since the other Telegram variable is set (alerts)")
# The Bot API's address: a local fake in tests, or a relay if the venue reaches Telegram through one.
TELEGRAM_API_URL = env_str("TELEGRAM_API_URL", "https://api.telegram.org")
TELEGRAM_TIMEOUT = env_float("TELEGRAM_TIMEOUT", 10.0, minimum=0.5)
# Orders and shifts older than this are never alerted about (switching alerts on does not replay history).
ALERTS_LOOKBACK_HOURS = env_int("ALERTS_LOOKBACK_HOURS", 48, minimum=1, maximum=24 * 30)
# Documents not sent to the OFD for longer than this are alerted (the FN blocks sales after 30 days).
ALERTS_OFD_HOURS = env_int("ALERTS_OFD_HOURS", 24, minimum=1, maximum=24 * 29)
# Optional: the panel's address as staff open it (e.g. http://192.168.1.10:8000), for links in alerts,
# and the venue's name, for the first line of each message (one chat may serve several venues).
ALERTS_PANEL_URL = env_str("ALERTS_PANEL_URL", "")
ALERTS_VENUE_NAME = env_str("ALERTS_VENUE_NAME", "")
# === end of alerts settings ========================================================================

# === Marked goods (Честный ЗНАК; issue 13, PROTOCOLS.md §4) =======================================
# The marking operator's permissive-mode check service (the cloud, or the venue's local module): off when the
# URL is empty. The key is a secret (X-API-KEY), never shown. `make run` points the URL at the emulator.
MARKING_CHECK_URL = env_str("MARKING_CHECK_URL", "").strip()
MARKING_CHECK_PATH = env_str("MARKING_CHECK_PATH", "/api/v4/true-api/codes/check").strip()
MARKING_CHECK_TOKEN = env_str("MARKING_CHECK_TOKEN", "").strip()
MARKING_CHECK_TIMEOUT = env_float("MARKING_CHECK_TIMEOUT", 5.0, minimum=0.1)
# When the check service or the marking operator cannot be reached: refuse the sale, or sell with the
# register's offline result (as the rules in force allow).
MARKING_OFFLINE_SALE = env_choice("MARKING_OFFLINE_SALE", "refuse", {"refuse", "offline"})
# The permissive-mode requisites of the receipt's industryInfo (tags 1262-1264): the federal body, and the
# date and number of the decree (21.11.2023 No 1944; older clients wrote 26.03.2022 No 477).
MARKING_FOIS = env_str("MARKING_FOIS", "030").strip()
MARKING_DOC_DATE = env_str("MARKING_DOC_DATE", "21.11.2023").strip()
MARKING_DOC_NUMBER = env_str("MARKING_DOC_NUMBER", "1944").strip()
if not re.fullmatch(r"\d{3}", MARKING_FOIS):
    raise ImproperlyConfigured(f"MARKING_FOIS={MARKING_FOIS!r}: expected three digits, e.g. 030")
if not re.fullmatch(r"\d{2}\.\d{2}\.\d{4}", MARKING_DOC_DATE):
    raise ImproperlyConfigured(f"MARKING_DOC_DATE={MARKING_DOC_DATE!r}: expected DD.MM.YYYY, e.g. 21.11.2023")
if not MARKING_DOC_NUMBER:
    raise ImproperlyConfigured("MARKING_DOC_NUMBER: must not be empty (e.g. 1944)")
MARKING_EMULATOR_PORT = EMULATOR_PORTS["marking"]
# === end of marked goods settings ==================================================================
