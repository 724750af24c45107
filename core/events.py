"""Writing the event journal (status changes and manual actions, with who and when)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AnonymousUser, User

from core.models import Event, Kiosk

log = logging.getLogger("core.events")


def record_event(
    action: str, *, kiosk: Kiosk | None = None, user: User | AnonymousUser | None = None, message: str = "",
    data: dict[str, Any] | None = None, object_ref: str = "",
) -> Event:
    """Journal one event. ``action`` is a dotted code such as ``fiscal.shift.closed``."""
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    assert not isinstance(user, AnonymousUser)  # never authenticated: made None just above
    event = Event.objects.create(
        action=action, kiosk=kiosk, user=user, message=message, data=data or {}, object_ref=object_ref
    )
    log.info("%s kiosk=%s %s", action, kiosk.code if kiosk else "-", message)
    return event
