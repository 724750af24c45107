"""The kiosks' status poll through a short middleware chain.

Every kiosk asks for its order's status every 250 ms: with 30 kiosks, ~100 of these GETs a second reach the
venue server, the largest share of its web CPU (issue 15). The poll is a bearer-token GET of JSON: sessions,
authentication, messages, CSRF, clickjacking, the Content-Security-Policy, htmx, whitenoise and the login
lockout do nothing for it, yet they took ~0.9 ms of its ~3.5 ms of CPU (in-process, the kiosks30 bench
database). So ``GET /api/v1/orders/<id>`` goes through a second Django handler built with only
``POLL_MIDDLEWARE``; everything else, the API's POST and its OpenAPI pages included, through the full one.
Both handlers send Django's request signals, so database connections are checked and closed as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

# What the poll keeps: HTTPS redirect, HSTS and nosniff; the kiosk's Accept-Language for the guest's messages.
POLL_MIDDLEWARE = ("django.middleware.security.SecurityMiddleware", "django.middleware.locale.LocaleMiddleware")
POLL_PATH = re.compile(r"/api/v1/orders/[^/]+\Z")  # the route of nekassir.api.views.get_order

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class PollHandler(WSGIHandler):
    """Django's WSGI handler with the middleware of ``POLL_MIDDLEWARE`` that ``MIDDLEWARE`` has, in its order."""

    def load_middleware(self, is_async: bool = False) -> None:
        # Django builds the chain from settings.MIDDLEWARE only: it is narrowed for this one call, at startup,
        # before any request thread exists (the WSGI module is imported once per process).
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = [path for path in full if path in POLL_MIDDLEWARE]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def with_poll_handler(application: WSGIApp) -> WSGIApp:
    """``application`` for every request but the status poll, which goes to a ``PollHandler``."""
    poll = PollHandler()

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and POLL_PATH.match(environ.get("PATH_INFO", "")):
            return poll(environ, start_response)
        return application(environ, start_response)

    return dispatch
