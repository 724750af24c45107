"""Bearer authentication of kiosks by their API token (``KioskToken``)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer

from core.models import Kiosk, KioskToken


class KioskBearer(HttpBearer):
    """``Authorization: Bearer <token>`` -> the kiosk (``request.auth``), or a 401.

    Parses the header itself: ninja's own parser logs a malformed header in DEBUG, and a token
    must never reach a log.
    """

    def __call__(self, request: HttpRequest) -> Kiosk | None:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Kiosk | None:
        return KioskToken.authenticate(token)
