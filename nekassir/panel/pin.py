"""The kiosk embed's PIN throttle: each try is counted and allowed in one atomic step, before its PIN is checked.

Why a row before the check: checking a PIN against its hash takes a noticeable time (PBKDF2), and a throttle
that counts failures only once they are known lets every try that arrives meanwhile see the old count (24
concurrent wrong PINs got 15 tries against a limit of 5). So a try is claimed first — counted and saved in
one transaction, serialised per kiosk (PostgreSQL: the kiosk's row locked; SQLite: IMMEDIATE transactions take
the write lock at BEGIN) — and checked after the transaction, without holding any lock during the hash.

Whom a lockout hits: the client address first (``KIOSK_PIN_ATTEMPTS`` tries per address within
``KIOSK_PIN_WINDOW``), so a stranger on the venue LAN locks out himself and not the kiosk's own browser; the
whole kiosk only past a higher total from all addresses (``KIOSK_PIN_KIOSK_ATTEMPTS``: someone guessing from
many addresses), which is journaled once as an alert.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest
from django.utils import timezone

from core.events import record_event
from core.models import Event, Kiosk
from nekassir.models import PinAttempt

PIN_FAILED = "panel.embed.pin_failed"
KIOSK_LOCKED = "panel.embed.pin_kiosk_locked"


class Refused(Enum):
    ADDRESS = "address"  # too many tries from this address
    KIOSK = "kiosk"  # too many tries on this kiosk from all addresses


def client_address(request: HttpRequest) -> str:
    """The address tries are counted by: the one django-axes counts logins by (same proxy settings)."""
    return get_client_ip_address(request) or "unknown"


def claim(kiosk: Kiosk, address: str) -> PinAttempt | Refused:
    """Count and allow one try in one step: the saved attempt (to be checked, then ``settle``d) or a refusal."""
    with transaction.atomic():
        _serialise(kiosk)
        since = _window_start()
        tries = _tries(kiosk, since)
        if tries.filter(address=address, created_at__gt=_last_right(kiosk, address, since)).count() >= (
                settings.KIOSK_PIN_ATTEMPTS):
            return Refused.ADDRESS
        if tries.count() >= settings.KIOSK_PIN_KIOSK_ATTEMPTS:
            return Refused.KIOSK
        return PinAttempt.objects.create(kiosk=kiosk, address=address)


def settle(attempt: PinAttempt, right: bool) -> None:
    """Record the checked try's outcome; a wrong one is journaled, and the one that locks the kiosk alerts."""
    kiosk = attempt.kiosk
    outcome = PinAttempt.Outcome.RIGHT if right else PinAttempt.Outcome.WRONG
    with transaction.atomic():
        _serialise(kiosk)
        PinAttempt.objects.filter(pk=attempt.pk).update(outcome=outcome)
        if right:
            return
        record_event(PIN_FAILED, kiosk=kiosk, object_ref=f"kiosk:{kiosk.code}", message="Неверный PIN сервисного меню",
                     data={"via": "kiosk_pin", "address": attempt.address})
        _alert_if_kiosk_locked(kiosk)


def _alert_if_kiosk_locked(kiosk: Kiosk) -> None:
    since = _window_start()
    tries = _tries(kiosk, since)
    count = tries.count()
    if count < settings.KIOSK_PIN_KIOSK_ATTEMPTS:
        return
    if Event.objects.filter(kiosk=kiosk, action=KIOSK_LOCKED, created_at__gte=since).exists():
        return  # this lock is already journaled
    addresses = sorted(set(tries.values_list("address", flat=True)))
    minutes = max(1, settings.KIOSK_PIN_WINDOW // 60)
    record_event(
        KIOSK_LOCKED, kiosk=kiosk, object_ref=f"kiosk:{kiosk.code}",
        message=(f"Сервисное меню киоска {kiosk.code} закрыто на {minutes} мин: {count} неверных PIN "
                 f"с {len(addresses)} адрес(ов). Похоже, PIN подбирают; проверьте, кто в сети заведения, "
                 "и смените PIN на более длинный."),
        data={"via": "kiosk_pin", "attempts": count, "addresses": addresses},
    )


def _serialise(kiosk: Kiosk) -> None:
    """One claim or settle of a kiosk at a time (PostgreSQL; SQLite's IMMEDIATE transaction already is)."""
    list(Kiosk.objects.select_for_update().filter(pk=kiosk.pk).values_list("pk", flat=True))


def _window_start() -> datetime:
    return timezone.now() - timedelta(seconds=settings.KIOSK_PIN_WINDOW)


def _tries(kiosk: Kiosk, since: datetime):
    """Tries that count: wrong ones and those still being checked, within the window."""
    return PinAttempt.objects.filter(kiosk=kiosk, created_at__gte=since).exclude(outcome=PinAttempt.Outcome.RIGHT)


def _last_right(kiosk: Kiosk, address: str, since: datetime) -> datetime:
    """A right PIN ends its address's count (a typo after it is not a lockout)."""
    last = (PinAttempt.objects.filter(kiosk=kiosk, address=address, created_at__gte=since,
                                      outcome=PinAttempt.Outcome.RIGHT).aggregate(last=Max("created_at"))["last"])
    return last or since - timedelta(microseconds=1)
