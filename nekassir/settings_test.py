"""Settings for the test suite: its own data folder, database and emulator state, never make run's."""

import os
import tempfile

os.environ.setdefault("NEKASSIR_DATA_DIR", tempfile.mkdtemp(prefix="nekassir-test-"))

from nekassir.settings import *  # noqa: F403
from nekassir.settings import DATA_DIR, DATABASES, Q_CLUSTER, STATIC_ROOT

# {% static %} must work without collectstatic (STACK_NOTES.md).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing folder
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; tests only

# A file, not :memory:, so that a q2 cluster started as a subprocess by a test sees the same data.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

# Jobs run inline unless a test starts a real cluster (those set NEKASSIR_Q_SYNC=0 for it).
# django-q2 reads `sync` once at import, so it lives here, not in override_settings.
Q_CLUSTER = {**Q_CLUSTER, "sync": os.environ.get("NEKASSIR_Q_SYNC", "1") == "1"}

ATOL_POLL_INTERVAL = 0.02
ATOL_MAX_WAIT = 10.0

# A subprocess started by a test (a q2 cluster, a management command) uses the test database.
if os.environ.get("NEKASSIR_USE_TEST_DB") == "1":
    _db = DATABASES["default"]
    _db["NAME"] = _db.get("TEST", {}).get("NAME") or f"test_{_db['NAME']}"

TERMINAL_HTTP_TIMEOUT = 2.0
TERMINAL_GUEST_TIMEOUT = 2.0
TERMINAL_POLL_INTERVAL = 0.02
TERMINAL_POLL_FOR = 1.0
SETTLEMENT_RETRY_DELAY = 0.0
CLOSE_WAIT_FOR_TERMINAL = 1.0
CLOSE_WAIT_FOR_SALE = 1.0
AUTO_CLOSE_WAIT_FOR_ORDER = 1.0
SALE_LOCK_WAIT = 5.0
CHECKOUT_RETRY_BASE = 0.5
IIKO_RETRY_DELAYS = [0.0]
IIKO_CREATE_WAIT = 5.0
IIKO_POLL_INTERVAL = 0.05
IIKO_HTTP_TIMEOUT = 2.0

# client.login() sends no request, which django-axes needs; the lockout test switches it back on.
AXES_ENABLED = False
