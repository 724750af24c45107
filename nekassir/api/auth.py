"""Bearer authentication of kiosks by their API token (``KioskToken``)."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from ninja.security import HttpBearer

from core.models import Kiosk, KioskToken, token_digest


@dataclass(frozen=True)
class TokenClaim:
    """A bearer token not yet checked against the database: the status GET checks it in the same statement
    that reads the order (``nekassir.api.views.get_order``), so a poll costs one statement, not two."""

    digest: str

    def kiosk(self) -> Kiosk | None:
        return KioskToken.authenticate_digest(self.digest)


class KioskBearer(HttpBearer):
    """``Authorization: Bearer <token>`` -> the kiosk (``request.auth``), or a 401.

    ``deferred=True`` (the status GET only): a well-formed token passes as a ``TokenClaim`` and the view
    checks it, answering 401 itself when it is not live.

    Parses the header itself: ninja's own parser logs a malformed header in DEBUG, and a token
    must never reach a log.
    """

    def __init__(self, *, deferred: bool = False) -> None:
        super().__init__()
        self.deferred = deferred

    def __call__(self, request: HttpRequest) -> Kiosk | TokenClaim | None:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Kiosk | TokenClaim | None:
        digest = token_digest(token)
        if digest is None:
            return None
        return TokenClaim(digest) if self.deferred else KioskToken.authenticate_digest(digest)
