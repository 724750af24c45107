"""Settings of the service menu (nekassir.panel): login throttling, template tags, the kiosk embed.

Star-imported on the last line of ``nekassir.settings``, so every base setting is already defined
and is read here from that module; lists are extended by rebinding, never mutated in place.
"""

import copy as _copy
import re as _re
import sys as _sys

from django.core.exceptions import ImproperlyConfigured as _ImproperlyConfigured

from core.env import env_bool as _bool
from core.env import env_float as _float
from core.env import env_int as _int
from core.env import env_list as _list

_base = _sys.modules["nekassir.settings"]

INSTALLED_APPS = [*_base.INSTALLED_APPS, "axes"]

# django-axes 8 (STACK_NOTES.md): its backend first, its middleware last.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
MIDDLEWARE = [*_base.MIDDLEWARE, "axes.middleware.AxesMiddleware"]

# The panel's template tags ({% load panel %}) without making nekassir.panel an app of its own.
TEMPLATES = _copy.deepcopy(_base.TEMPLATES)
TEMPLATES[0]["OPTIONS"].setdefault("libraries", {})["panel"] = "nekassir.panel.templatetags"

# --- login throttling ---------------------------------------------------------------------------
# Lock out one username from one address: a manager's typos on the venue's shared IP do not lock
# out everyone else. Tests disable it (AXES_ENABLED=false) except the test of the lockout itself.
AXES_ENABLED = _bool("AXES_ENABLED", True)
AXES_FAILURE_LIMIT = _int("AXES_FAILURE_LIMIT", 5, minimum=1, maximum=100)
AXES_COOLOFF_TIME = _float("AXES_COOLOFF_MINUTES", 15.0, minimum=0.1) / 60  # hours, as axes wants
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked.html"

# --- the kiosk embed (/kiosk/<code>/service/) ---------------------------------------------------
# Origins allowed to frame the embedded service menu (CSP frame-ancestors on those pages only;
# every other page keeps X-Frame-Options: DENY). Empty: only the panel's own origin ('self').
KIOSK_FRAME_ORIGINS = _list("KIOSK_FRAME_ORIGINS", [])
for _origin in KIOSK_FRAME_ORIGINS:
    if not _re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(:\d{1,5})?", _origin):
        raise _ImproperlyConfigured(f"KIOSK_FRAME_ORIGINS: {_origin!r} is not an origin like http://192.168.1.21:8080")
# How long an unlocked kiosk service menu stays unlocked without a PIN.
KIOSK_UNLOCK_SECONDS = _int("KIOSK_UNLOCK_SECONDS", 600, minimum=30, maximum=86400)
# Wrong PINs allowed per client address and kiosk within the window before the PIN page refuses that address
# for the window (a stranger locks out himself, not the kiosk's own browser); past KIOSK_PIN_KIOSK_ATTEMPTS
# from all addresses the whole kiosk refuses for the window, journaled as an alert (nekassir.panel.pin).
KIOSK_PIN_ATTEMPTS = _int("KIOSK_PIN_ATTEMPTS", 5, minimum=1, maximum=100)
KIOSK_PIN_KIOSK_ATTEMPTS = _int("KIOSK_PIN_KIOSK_ATTEMPTS", 20, minimum=1, maximum=1000)
KIOSK_PIN_WINDOW = _int("KIOSK_PIN_WINDOW", 300, minimum=10, maximum=86400)
if KIOSK_PIN_KIOSK_ATTEMPTS < KIOSK_PIN_ATTEMPTS:
    raise _ImproperlyConfigured(
        f"KIOSK_PIN_KIOSK_ATTEMPTS ({KIOSK_PIN_KIOSK_ATTEMPTS}) is below KIOSK_PIN_ATTEMPTS ({KIOSK_PIN_ATTEMPTS}): "
        "one address could lock the whole kiosk")
# May the kiosk's service menu (PIN holders, no named user) refund orders? Money moves: off unless set.
KIOSK_SERVICE_REFUNDS = _bool("KIOSK_SERVICE_REFUNDS", False)
